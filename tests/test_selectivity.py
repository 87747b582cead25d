"""Selectivity statistics against hand computations and planted units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special as scipy_special
from scipy import stats as scipy_stats

from emoselect.analysis.records import Responses
from emoselect.analysis.selectivity import SelectivityOptions, analyse
from emoselect.analysis.stats import (
    benjamini_hochberg,
    decode_crossvalidated,
    intersection_pmf,
    jaccard_null,
    spearman_columns,
)
from emoselect.analysis.trends import TREND, network_tests
from emoselect.analysis.tuning import (
    CATEGORY_ORDER,
    d_prime,
    jaccard,
    label_permutations,
    permutation_p_values,
    preferred_category,
    top_fraction,
    tuning_quality,
    tuning_quality_null,
    tuning_values,
)
from emoselect.pictures.stimuli import Stimuli, assign_half

CATS = np.array(["pleasant", "pleasant", "neutral", "neutral", "neutral", "unpleasant", "unpleasant", "unknown"])
TINY = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 1.0], [0.0, 2.0], [1.0, 3.0], [4.0, 0.5], [6.0, 7.0], [100.0, -50.0]])


def test_tuning_values_equal_a_hand_computation():
    z = tuning_values(TINY, CATS)
    for unit in range(2):
        used = [TINY[i, unit] for i in range(7)]  # the 'unknown' row is not analysed
        mean = sum(used) / 7
        sd = (sum((v - mean) ** 2 for v in used) / 6) ** 0.5
        for k, category in enumerate(CATEGORY_ORDER):
            members = [TINY[i, unit] for i in range(7) if CATS[i] == category]
            assert z[unit, k] == pytest.approx((sum(members) / len(members) - mean) / sd, abs=1e-9)
    assert list(preferred_category(z)) == [2, 0]
    assert tuning_quality(z) == pytest.approx(np.mean([abs(z[0]).max(), abs(z[1]).max()]), abs=1e-12)


def test_d_prime_equals_a_hand_computation():
    d = d_prime(TINY, CATS)
    for unit in range(2):
        for k, category in enumerate(CATEGORY_ORDER):
            inside = [TINY[i, unit] for i in range(7) if CATS[i] == category]
            rest = [TINY[i, unit] for i in range(7) if CATS[i] != category]
            var = lambda v: sum((x - sum(v) / len(v)) ** 2 for x in v) / (len(v) - 1)  # noqa: E731
            expected = (sum(inside) / len(inside) - sum(rest) / len(rest)) / ((var(inside) + var(rest)) / 2) ** 0.5
            assert d[unit, k] == pytest.approx(expected, abs=1e-9)


def test_zero_variance_units_are_nan_not_a_crash():
    data = np.column_stack([TINY[:, 0], np.full(8, 3.0)])
    z = tuning_values(data, CATS)
    assert np.isnan(z[1]).all() and preferred_category(z)[1] == -1
    assert tuning_quality(z) == pytest.approx(np.abs(z[0]).max())
    with pytest.raises(ValueError, match="at least 2 images"):
        tuning_values(TINY[:6], CATS[:6])


def test_top_fraction_and_jaccard():
    values = np.array([0.1, np.nan, 3.0, 2.0, -1.0])
    assert list(top_fraction(values, 0.5)) == [False, False, True, True, False]
    assert list(top_fraction(values, 1.0)) == [True, False, True, True, True]
    a, b = np.array([1, 1, 0, 1, 0], bool), np.array([0, 1, 1, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert np.isnan(jaccard(np.zeros(3, bool), np.zeros(3, bool)))


def test_intersection_pmf_is_hypergeometric_with_one_universe():
    pmf = intersection_pmf(60, 60, 60, 12, 20)
    k = np.arange(13)
    np.testing.assert_allclose(pmf, scipy_stats.hypergeom.pmf(k, 60, 12, 20), atol=1e-14)
    exact = np.sum(pmf * k / (32 - k))
    null = jaccard_null(pmf, 12, 20, 7)
    assert null["mean"] == pytest.approx(exact, rel=1e-12)
    assert null["p_above"] == pytest.approx(scipy_stats.hypergeom.sf(6, 60, 12, 20), rel=1e-10)
    assert null["p_below"] == pytest.approx(scipy_stats.hypergeom.cdf(7, 60, 12, 20), rel=1e-10)


def test_intersection_pmf_with_two_universes_equals_brute_force_enumeration():
    import itertools

    universe_a, universe_b = set(range(0, 7)), set(range(3, 9))  # 4 shared units (3..6)
    counts = np.zeros(4)
    for set_a in itertools.combinations(sorted(universe_a), 3):
        for set_b in itertools.combinations(sorted(universe_b), 2):
            counts[len(set(set_a) & set(set_b))] += 1
    expected = counts / counts.sum()
    pmf = intersection_pmf(4, 7, 6, 3, 2)
    np.testing.assert_allclose(pmf, expected[: len(pmf)], atol=1e-12)
    null = jaccard_null(pmf, 3, 2, 1)
    assert null["p_above"] == pytest.approx(expected[1:].sum())
    j = np.arange(3) / (5 - np.arange(3))
    assert null["mean"] == pytest.approx(np.sum(expected[:3] * j))
    with pytest.raises(ValueError):
        intersection_pmf(5, 4, 9, 2, 2)


def test_overlap_null_draws_from_the_eligible_units_defect_2():
    """Eligibility correlated across datasets (the same 60 of 200 units kept on both sides) with
    independent preferences: p must stay calibrated; a null over all units is anti-conservative."""
    rng = np.random.default_rng(12)
    eligible = np.zeros(200, bool)
    eligible[:60] = True
    fixed, old = [], []
    for _ in range(400):
        a = eligible & (rng.integers(0, 3, 200) == 0)
        b = eligible & (rng.integers(0, 3, 200) == 0)
        both = int((a & b).sum())
        fixed.append(jaccard_null(intersection_pmf(60, 60, 60, a.sum(), b.sum()), a.sum(), b.sum(), both)["p_above"])
        old.append(jaccard_null(intersection_pmf(200, 200, 200, a.sum(), b.sum()), a.sum(), b.sum(), both)["p_above"])
    assert np.mean(np.asarray(old) < 0.05) > 0.5  # the defect: most "significant"
    for x in (0.05, 0.1, 0.25, 0.5):
        assert np.mean(np.asarray(fixed) <= x) <= x + 0.03


def test_overlap_table_uses_eligible_units_with_si_keep():
    stimuli, responses = planted_run(effect=0.0)
    result = analyse(
        stimuli, responses, ["layer1"], SelectivityOptions(si_keep=0.5, null_permutations=0), progress=False
    )
    row = result.overlap.iloc[0]
    assert row["n_eligible_a"] == 20 and row["n_eligible_b"] == 20
    kept = result.units.pivot(index="unit", columns="dataset", values="kept")
    assert row["n_eligible_both"] == int((kept["a"] & kept["b"]).sum())
    expected = jaccard_null(
        intersection_pmf(int(row["n_eligible_both"]), 20, 20, int(row["n_a"]), int(row["n_b"])),
        int(row["n_a"]),
        int(row["n_b"]),
        int(row["n_selective"]),
    )
    assert row["p_independent"] == pytest.approx(expected["p_above"])  # the independent-units reference
    assert row["jaccard_independent_mean"] == pytest.approx(expected["mean"])


def test_benjamini_hochberg_by_hand():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2, np.nan]))
    np.testing.assert_allclose(q[:4], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert np.isnan(q[4])


def test_spearman_matches_scipy_and_ignores_missing_values():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(50, 4))
    values = data[:, 0] + rng.normal(size=50)
    values[3] = np.nan
    rho, p = spearman_columns(data, values)
    keep = np.isfinite(values)
    for j in range(4):
        expected = scipy_stats.spearmanr(data[keep, j], values[keep])
        assert rho[j] == pytest.approx(expected.statistic, abs=1e-12)
        assert p[j] == pytest.approx(expected.pvalue, rel=1e-6)


def test_halves_are_balanced_per_category_and_split():
    categories = np.array(["pleasant"] * 9 + ["neutral"] * 6 + ["unpleasant"] * 4 + ["unknown"] * 2)
    table = pd.DataFrame({"dataset": "d", "category": categories, "split": ["train", "test"] * 10 + ["none"]})
    table.loc[table["category"] == "unknown", "split"] = "none"
    half = assign_half(table, seed=0)
    for (category, _split), rows in table.groupby(["category", "split"]):
        if category != "unknown":
            counts = np.bincount(half[rows.index], minlength=3)[1:]
            assert abs(counts[0] - counts[1]) <= 1 and counts.sum() == len(rows)
    assert list(half[-2:]) == [0, 0]
    assert not np.array_equal(half, assign_half(table, seed=1)) and np.array_equal(half, assign_half(table, seed=0))


# ---------------------------------------------------------------------------------------------
# planted selective units, two datasets


def planted(seed: int, n_per_category: int = 60, effect: float = 2.0):
    """Responses [n, 40]: units 0-9 prefer pleasant, 10-19 neutral, 20-29 unpleasant, 30-39 noise."""
    rng = np.random.default_rng(seed)
    categories = np.repeat(CATEGORY_ORDER, n_per_category)
    data = rng.normal(size=(len(categories), 40))
    for k, category in enumerate(CATEGORY_ORDER):
        data[categories == category, 10 * k : 10 * (k + 1)] += effect
    return categories, data + 5.0


def planted_run(n_per_category=60, effect=2.0, null=False):
    tables, responses = [], {}
    for seed, name in ((1, "a"), (2, "b")):
        categories, data = planted(seed, n_per_category, 0.0 if null else effect)
        n = len(categories)
        tables.append(
            pd.DataFrame(
                {
                    "dataset": name,
                    "image_id": [f"{name}{i}" for i in range(n)],
                    "path": "",
                    "valence": np.where(categories == "pleasant", 7.0, np.where(categories == "neutral", 5.0, 2.0)),
                    "arousal": 5.0,
                    "category": categories,
                    "split": "train",
                    "category_source": "valence",
                    "sha1": "",
                }
            )
        )
        stats = pd.DataFrame(
            np.random.default_rng(seed).normal(size=(n, 4)),
            columns=["luminance", "rms_contrast", "colourfulness", "hsf_energy"],
        )
        responses[name] = Responses(name, {"layer1": data, "layer2": data[:, ::-1].copy()}, "", np.empty((n, 0)), stats)
    stimuli = Stimuli(pd.concat(tables, ignore_index=True), scales={"a": (1.0, 9.0), "b": (1.0, 9.0)})
    return stimuli, responses


def test_planted_selective_units_are_recovered_exactly():
    stimuli, responses = planted_run()
    options = SelectivityOptions(
        permutations=200, require_significant=True, valence_tuning=True, example_layers=["layer1"]
    )
    result = analyse(stimuli, responses, ["layer1", "layer2"], options, progress=False)
    layer1 = result.selective[result.selective["layer"] == "layer1"]
    for k, category in enumerate(CATEGORY_ORDER):
        assert sorted(layer1.loc[layer1["category"] == category, "unit"]) == list(range(10 * k, 10 * (k + 1)))
    layer2 = result.selective[result.selective["layer"] == "layer2"]
    assert sorted(layer2.loc[layer2["category"] == "pleasant", "unit"]) == list(range(30, 40))
    overlap = result.overlap.set_index(["layer", "category"])
    assert overlap.loc[("layer1", "pleasant"), "jaccard"] == 1.0
    row = overlap.loc[("layer1", "pleasant")]  # only significant units are eligible: the planted 30 (+ noise)
    assert row["n_eligible_both"] >= 30 and row["n_a"] == row["n_b"] == 10
    if row["n_eligible_a"] == row["n_eligible_b"] == row["n_eligible_both"]:
        assert row["p_independent"] == pytest.approx(1 / scipy_special.comb(row["n_eligible_both"], 10), rel=1e-6)
    assert row["p_independent"] < 1e-6
    assert row["p_value"] == row["min_p_value"] == 1 / 1000  # no label shuffle comes close (999 by default)
    assert set(result.units["dataset"]) == {"a", "b"}
    assert "rho_valence" in result.units and (result.layers["n_valence_positive"] >= 10).all()
    example = result.examples
    assert set(example["selective_for"]) == set(CATEGORY_ORDER)
    assert example.loc[example["selective_for"] == "pleasant", "unit"].iloc[0] in range(10)


def test_without_significance_noise_units_can_only_add_never_hide_planted_ones():
    stimuli, responses = planted_run()
    result = analyse(stimuli, responses, ["layer1"], SelectivityOptions(), progress=False)
    for k, category in enumerate(CATEGORY_ORDER):
        units = set(result.selective.loc[result.selective["category"] == category, "unit"])
        assert set(range(10 * k, 10 * (k + 1))) <= units
        assert units - set(range(10 * k, 10 * (k + 1))) <= set(range(30, 40))


def test_p_values_are_uniform_on_null_data():
    rng = np.random.default_rng(5)
    categories = np.repeat(CATEGORY_ORDER, 30)
    data = rng.normal(size=(90, 400))
    p = permutation_p_values(data, categories, 199, np.random.default_rng(6))
    assert scipy_stats.kstest(p, "uniform").pvalue > 0.01
    _, p_rho = spearman_columns(data, rng.normal(size=90))
    assert scipy_stats.kstest(p_rho, "uniform").pvalue > 0.01
    overlap_p = []
    for _ in range(300):  # two unrelated 'datasets': overlap p-values of independent preferences
        a, b = rng.integers(0, 3, 200) == 0, rng.integers(0, 3, 200) == 0
        pmf = intersection_pmf(200, 200, 200, a.sum(), b.sum())
        overlap_p.append(jaccard_null(pmf, a.sum(), b.sum(), int((a & b).sum()))["p_above"])
    # discrete p-values are conservative: P(p <= x) <= x (checked with margin at a few points)
    for x in (0.05, 0.1, 0.25, 0.5):
        assert np.mean(np.asarray(overlap_p) <= x) <= x + 0.05


def test_one_dataset_uses_a_split_half_and_says_so():
    stimuli, responses = planted_run()
    stimuli.table = stimuli.table[stimuli.table["dataset"] == "a"].reset_index(drop=True)
    result = analyse(stimuli, {"a": responses["a"]}, ["layer1"], SelectivityOptions(), progress=False)
    assert "split-half" in result.pair_note
    assert set(result.units["dataset"]) == {"a/half1", "a/half2"}
    assert len(result.groups[0].rows) + len(result.groups[1].rows) == 180
    assert not set(result.groups[0].rows) & set(result.groups[1].rows)


def test_define_on_train_uses_only_the_training_split():
    stimuli, responses = planted_run()
    stimuli.table.loc[stimuli.table.index % 2 == 1, "split"] = "test"
    train = analyse(stimuli, responses, ["layer1"], SelectivityOptions(define_on="train"), progress=False)
    everything = analyse(stimuli, responses, ["layer1"], SelectivityOptions(define_on="all"), progress=False)
    assert train.layers["n_images"].tolist() == [90, 90] and everything.layers["n_images"].tolist() == [180, 180]
    a_rows = stimuli.of("a")
    expected = tuning_values(
        responses["a"].sites["layer1"][(a_rows["split"] == "train").to_numpy()],
        a_rows["category"][a_rows["split"] == "train"].to_numpy(),
    )
    got = train.units[(train.units["dataset"] == "a")][["t_pleasant", "t_neutral", "t_unpleasant"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_si_keep_keeps_the_top_fraction_in_each_dataset():
    stimuli, responses = planted_run()
    result = analyse(stimuli, responses, ["layer1"], SelectivityOptions(si_keep=0.5), progress=False)
    assert result.units.groupby("dataset")["kept"].sum().tolist() == [20, 20]
    assert len(result.selective) <= 20


def test_decoding_confound_check_on_planted_statistics():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 80)
    image_stats = rng.normal(size=(240, 4))
    image_stats[:, 0] += 3.0 * labels  # luminance carries the category
    explained = np.column_stack([image_stats[:, 0] * w for w in rng.normal(size=20)]) + 0.1 * rng.normal(size=(240, 20))
    independent = rng.normal(size=(240, 20))
    independent[:, :5] += 2.0 * labels[:, None]  # category carried by something else
    assert decode_crossvalidated(image_stats, labels).mean() > 0.85  # optimum (means 0, 3, 6; SD 1): 0.91
    assert decode_crossvalidated(explained, labels).mean() > 0.8
    assert decode_crossvalidated(explained, labels, covariates=image_stats).mean() < 0.5
    unrelated_stats = rng.normal(size=(240, 4))
    assert decode_crossvalidated(independent, labels, covariates=unrelated_stats).mean() > 0.8
    chance = decode_crossvalidated(rng.normal(size=(240, 20)), labels)
    assert abs(chance.mean() - 1 / 3) < 0.12


def test_confounds_table_from_the_stage():
    stimuli, responses = planted_run()
    result = analyse(stimuli, responses, ["layer1"], SelectivityOptions(confounds=True), progress=False)
    confounds = result.confounds.set_index("dataset")
    assert (confounds["layer_responses"] > 0.9).all()
    assert (confounds["image_statistics"] < 0.5).all()  # random statistics carry nothing
    assert (confounds["share_explained_by_statistics"].abs() < 0.1).all()


def test_vectorised_permutation_test_equals_a_plain_loop():
    rng = np.random.default_rng(8)
    categories = np.repeat(CATEGORY_ORDER, 7)
    data = rng.normal(size=(21, 5))
    data[categories == "pleasant", 0] += 3.0
    fast = permutation_p_values(data, categories, 50, np.random.default_rng(9), chunk=7)
    orders = label_permutations(21, 50, np.random.default_rng(9))
    observed = tuning_values(data, categories).max(axis=1)
    exceed = np.zeros(5)
    quality = []
    for order in orders:
        z = tuning_values(data, categories[order])
        exceed += z.max(axis=1) >= observed - 1e-12
        quality.append(tuning_quality(z))
    np.testing.assert_allclose(fast, (1 + exceed) / 51)
    assert fast[0] < 0.05
    np.testing.assert_allclose(tuning_quality_null(data, categories, orders), quality, rtol=1e-12)


def _layered(rng, effects, n_per_category=30, units=30):
    """Responses of len(effects) layers; in layer l a third of the units carry a planted category effect effects[l]."""
    categories = np.repeat(CATEGORY_ORDER, n_per_category)
    layers = []
    for effect in effects:
        data = rng.normal(size=(len(categories), units))
        data[categories == "pleasant", : units // 3] += effect
        layers.append(data)
    return categories, layers


def _trend_p(rng, effects, permutations=99):
    """The depth-trend row of network_tests for planted layers, from the tuning-quality null."""
    categories, layers = _layered(rng, effects)
    orders = label_permutations(len(categories), permutations, rng)
    null = [tuning_quality_null(d, categories, orders) for d in layers]
    observed = np.array([tuning_quality(tuning_values(d, categories)) for d in layers])
    sites = [f"l{i}" for i in range(len(layers))]
    table = pd.DataFrame({"layer": sites, "tuning_quality_excess": observed - np.mean(null, axis=1)})
    tests = network_tests(table, pd.DataFrame(columns=["layer", "jaccard_excess"]), sites, [null], [])
    row = tests[tests["statistic"] == TREND].iloc[0]
    return {"rho": row["value"], "p_rise": row["p_above"], "p_fall": row["p_below"]}


def test_tuning_quality_null_and_depth_trend_detect_a_planted_rise():
    result = _trend_p(np.random.default_rng(1), [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4])
    assert result["rho"] > 0.8 and result["p_rise"] <= 0.02 and result["p_fall"] > 0.5


def test_depth_trend_is_calibrated_without_selectivity():
    rng = np.random.default_rng(2)
    p = np.array([_trend_p(rng, [0.0] * 5, permutations=39)["p_rise"] for _ in range(150)])
    for x in (0.1, 0.25, 0.5):
        assert np.mean(p <= x) <= x + 0.08
    assert np.mean(p <= 0.5) >= 0.3  # not degenerate


def test_tuning_quality_null_columns_and_trend_in_the_stage():
    stimuli, responses = planted_run()
    result = analyse(stimuli, responses, ["layer1", "layer2"], SelectivityOptions(null_permutations=99), progress=False)
    layers = result.layers
    assert (layers["tuning_quality_excess"] > 0.3).all() and (layers["p_tuning_quality"] == 0.01).all()
    assert (layers["min_p_tuning_quality"] == 0.01).all()
    assert (layers["tuning_quality_null_lo"] <= layers["tuning_quality_null_mean"]).all()
    null = planted_run(null=True)
    flat = analyse(*null, ["layer1", "layer2"], SelectivityOptions(null_permutations=99), progress=False).layers
    assert (flat["tuning_quality_excess"].abs() < 0.1).all()
    assert not (result.trends["statistic"] == TREND).any()  # fewer than 3 layers: no trend


def test_same_seed_same_tables_whatever_else_is_switched_on_defect_5():
    stimuli, responses = planted_run(effect=0.3)
    plain = analyse(stimuli, responses, ["layer1", "layer2"], SelectivityOptions(null_permutations=30), progress=False)
    more = analyse(
        stimuli,
        responses,
        ["layer1", "layer2"],
        SelectivityOptions(null_permutations=30, permutations=40, valence_tuning=True, confounds=True),
        progress=False,
    )
    pd.testing.assert_frame_equal(plain.overlap, more.overlap)
    columns = [c for c in plain.layers.columns]
    pd.testing.assert_frame_equal(plain.layers[columns], more.layers[columns])
    one_layer = analyse(stimuli, responses, ["layer2"], SelectivityOptions(null_permutations=30), progress=False)
    pd.testing.assert_frame_equal(
        one_layer.layers.drop(columns=["layer_index", "relative_depth"]).reset_index(drop=True),
        plain.layers[plain.layers["layer"] == "layer2"]
        .drop(columns=["layer_index", "relative_depth"])
        .reset_index(drop=True),
    )


def test_ledoit_wolf_shrinkage_equals_its_definition():
    from emoselect.analysis.stats import ledoit_wolf_shrinkage

    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6))
    x -= x.mean(axis=0)
    n, p = x.shape
    sample = x.T @ x / n
    target = np.trace(sample) / p * np.eye(p)
    b2 = sum(np.sum((np.outer(row, row) - sample) ** 2) for row in x) / n**2
    d2 = np.sum((sample - target) ** 2)
    assert ledoit_wolf_shrinkage(x) == pytest.approx(min(b2, d2) / d2, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# the label-permutation nulls of the overlap and the network-level tests


def _correlated(rng, n_per_category=40, units=60, loading=1.5, effect=0.0):
    """One 'network' of two datasets whose units share 4 factors (no category information unless
    ``effect``: then units 0-14 prefer pleasant in both)."""
    tables, responses = [], {}
    weights = rng.normal(size=(4, units))  # the network's: the same units cluster in both datasets
    for name in ("a", "b"):
        categories = np.repeat(CATEGORY_ORDER, n_per_category)
        data = loading * rng.normal(size=(len(categories), 4)) @ weights
        data += rng.normal(size=data.shape)
        data[categories == "pleasant", :15] += effect
        tables.append(pd.DataFrame({"dataset": name, "image_id": [f"{name}{i}" for i in range(len(categories))],
                                    "path": "", "valence": 5.0, "arousal": 5.0, "category": categories,
                                    "split": "train", "category_source": "valence", "sha1": ""}))  # fmt: skip
        responses[name] = Responses(name, {"l1": data, "l2": data[:, ::-1] + rng.normal(size=data.shape)}, "",
                                    np.empty((len(categories), 0)), pd.DataFrame())  # fmt: skip
    return Stimuli(pd.concat(tables, ignore_index=True), scales={"a": (1.0, 9.0), "b": (1.0, 9.0)}), responses


def test_permutation_overlap_null_equals_a_plain_loop():
    from emoselect.analysis.selectivity import network_key
    from emoselect.base.randomness import random_stream

    stimuli, responses = _correlated(np.random.default_rng(3), n_per_category=10, units=12)
    result = analyse(stimuli, responses, ["l1", "l2"], SelectivityOptions(null_permutations=25), progress=False, seed=4)
    key = network_key(responses)
    draws = {}
    for side, name in enumerate(("a", "b")):
        categories = stimuli.of(name)["category"].to_numpy()
        orders = label_permutations(len(categories), 25, random_stream(4, "label-null", key, side))
        data = np.asarray(responses[name].sites["l2"])
        draws[name] = [preferred_category(tuning_values(data, categories[order])) for order in orders]

    def excess(a, b):  # J minus J at the chance intersection |A| |B| / n of 12 units (all eligible)
        expected = a.sum() * b.sum() / 12
        return jaccard(a, b) - expected / (a.sum() + b.sum() - expected)

    for k, category in enumerate(CATEGORY_ORDER):
        null = np.array([excess(a == k, b == k) for a, b in zip(draws["a"], draws["b"])])
        null = null[np.isfinite(null)]
        row = result.overlap[(result.overlap["layer"] == "l2") & (result.overlap["category"] == category)].iloc[0]
        assert row["jaccard_null_mean"] == pytest.approx(row["jaccard_chance"] + null.mean(), abs=1e-12)
        assert row["jaccard_excess"] == pytest.approx(row["jaccard"] - row["jaccard_chance"], abs=1e-12)
        assert row["p_value"] == pytest.approx((1 + np.sum(null >= row["jaccard_excess"] - 1e-12)) / (1 + len(null)))


def test_permutation_overlap_is_calibrated_with_correlated_units_where_the_exact_null_is_not():
    rng = np.random.default_rng(8)
    permutation, exact, level = [], [], []
    for _ in range(60):
        stimuli, responses = _correlated(rng)
        result = analyse(stimuli, responses, ["l1"], SelectivityOptions(null_permutations=99), progress=False,
                         seed=int(rng.integers(1000)))  # fmt: skip
        permutation += list(result.overlap["p_value"])
        exact += list(result.overlap["p_independent"])
        level.append(result.trends.loc[result.trends["measure"] == "overlap_excess", "p_above"].iloc[0])
    permutation, exact = np.asarray(permutation), np.asarray(exact)
    assert np.mean(permutation < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(permutation))
    assert np.mean(exact < 0.05) > 0.12  # the independent-units reference: overdispersed, both tails
    assert np.mean(np.asarray(level) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(level))


def test_planted_overlap_is_found_by_the_permutation_test():
    """Three planted groups of units (one per category): under a shuffle each group lands in some
    category on each side by chance, all three matching is rare, so the observed agreement stands out.
    (One planted group alone keeps its preference across sides in about one shuffle in three: the
    permutation test is exact, and that is all the evidence one co-active group carries.)"""
    stimuli, responses = planted_run()
    result = analyse(stimuli, responses, ["layer1", "layer2"], SelectivityOptions(null_permutations=199),
                     progress=False)  # fmt: skip
    layer1 = result.overlap[result.overlap["layer"] == "layer1"]
    assert (layer1["jaccard_excess"] > 0.3).all() and (layer1["p_value"] < 0.05).all()
    level = result.trends[(result.trends["measure"] == "overlap_excess") & (result.trends["statistic"] != TREND)]
    assert level["p_above"].iloc[0] < 0.01 and level["z"].iloc[0] > 2.5  # (at most 2.81 with 199 shuffles)


def test_networks_never_share_null_draws_and_a_subset_of_layers_keeps_its_shuffles():
    stimuli, responses = _correlated(np.random.default_rng(10))
    nudged = {d: Responses(d, {s: np.asarray(m) + 1e-3 for s, m in r.sites.items()}, "", r.readout, r.image_stats)
              for d, r in responses.items()}  # fmt: skip  # another network, nearly the same responses
    options = SelectivityOptions(null_permutations=99)
    one = analyse(stimuli, responses, ["l1", "l2"], options, progress=False)
    other = analyse(stimuli, nudged, ["l1", "l2"], options, progress=False)
    assert (one.overlap["jaccard"] == other.overlap["jaccard"]).all()  # same observed sets...
    assert not np.allclose(one.overlap["jaccard_null_mean"], other.overlap["jaccard_null_mean"])  # ...own shuffles
    again = analyse(stimuli, responses, ["l2"], options, progress=False)
    pd.testing.assert_frame_equal(
        again.overlap.drop(columns=["q_value", "significant"]).reset_index(drop=True),
        one.overlap[one.overlap["layer"] == "l2"].drop(columns=["q_value", "significant"]).reset_index(drop=True),
    )


def test_overlap_of_significant_units_is_tested_beside_all_units():
    stimuli, responses = planted_run()
    options = SelectivityOptions(null_permutations=99, permutations=99)
    result = analyse(stimuli, responses, ["layer1", "layer2"], options, progress=False)
    row = result.trends[result.trends["measure"] == "overlap_excess_significant"].iloc[0]
    assert row["p_above"] == 0.01 and row["n_null"] == 99
    per_layer = []  # by hand, from units.csv: J among units significant on each side minus its chance value
    for layer in ("layer1", "layer2"):
        units = result.units[result.units["layer"] == layer]
        a, b = (units[units["dataset"] == d].set_index("unit") for d in ("a", "b"))
        eligible_a, eligible_b = a["significant"].to_numpy(bool), b["significant"].to_numpy(bool)
        excess = []
        for category in CATEGORY_ORDER:
            in_a = eligible_a & (a["preferred"] == category).to_numpy()
            in_b = eligible_b & (b["preferred"] == category).to_numpy()
            expected = in_a.sum() * in_b.sum() * (eligible_a & eligible_b).sum() / (eligible_a.sum() * eligible_b.sum())
            chance = expected / (in_a.sum() + in_b.sum() - expected)
            excess.append(jaccard(in_a, in_b) - chance)
        per_layer.append(np.mean(excess))
    assert row["value"] == pytest.approx(np.mean(per_layer), abs=1e-12) and row["value"] > 0.3
    assert "overlap_excess_significant" not in set(
        analyse(stimuli, responses, ["layer1"], SelectivityOptions(null_permutations=9), progress=False).trends[
            "measure"
        ]
    )


def test_a_config_of_an_older_version_reads_tuning_null_as_null_permutations():
    from emoselect.base.options import from_dict

    assert from_dict(SelectivityOptions, {"tuning_null": 7}, "selectivity").null_permutations == 7
