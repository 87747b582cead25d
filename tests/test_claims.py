"""The scorecard's rules and its depth-order test against hand computations."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from emoselect.analysis.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    UNTESTABLE,
    majority_verdict,
    scorecard,
    stratified_order_test,
    verdict,
    versus_controls,
)


def test_directional_rule():
    assert verdict(0.01, 0.99, 0.05) == SUPPORTED
    assert verdict(0.99, 0.01, 0.05) == CONTRADICTED
    assert verdict(0.2, 0.8, 0.05) == INCONCLUSIVE
    assert verdict(0.01, 0.99, 0.05, min_p=0.5) == INCONCLUSIVE  # a test that cannot conclude never does
    assert verdict(np.nan, 0.01, 0.05) == INCONCLUSIVE


def test_majority_rule():
    assert majority_verdict([True, True, False, False], [False] * 4) == SUPPORTED
    assert majority_verdict([True, False, False], [False, True, True]) == CONTRADICTED
    assert majority_verdict([True, False, False], [False, True, False]) == INCONCLUSIVE
    assert majority_verdict([], []) == UNTESTABLE


def test_stratified_order_test_enumerates_every_ordering_within_each_stratum():
    values = np.array([0.1, 0.3, 0.2, 0.5])
    result = stratified_order_test(values)  # one stratum: Spearman rho against all 24 orderings
    rho = scipy_stats.spearmanr(np.arange(4), values).statistic
    null = [
        scipy_stats.spearmanr(np.arange(4), values[list(order)]).statistic for order in itertools.permutations(range(4))
    ]
    assert result["rho"] == pytest.approx(rho)
    assert result["p_rise"] == pytest.approx(np.mean(np.asarray(null) >= rho - 1e-12))
    assert result["min_p"] == pytest.approx(1 / 24)
    assert stratified_order_test(np.array([1.0, 2.0]))["min_p"] == 0.5  # two layers can never conclude
    # two strata (one with a missing layer): the mean rho against every pair of orderings, by hand
    grid = np.array([[0.1, 0.3, 0.2, 0.5], [0.4, np.nan, 0.1, 0.6]])
    second = grid[1, [0, 2, 3]]
    rho2 = [scipy_stats.spearmanr([0, 2, 3], second[list(o)]).statistic for o in itertools.permutations(range(3))]
    pairs = np.add.outer(null, rho2).ravel() / 2
    observed = (rho + scipy_stats.spearmanr([0, 2, 3], second).statistic) / 2
    both = stratified_order_test(grid)
    assert both["rho"] == pytest.approx(observed) and both["min_p"] == pytest.approx(1 / 144)
    assert both["p_rise"] == pytest.approx(np.mean(pairs >= observed - 1e-12))
    assert both["p_fall"] == pytest.approx(np.mean(pairs <= observed + 1e-12))
    # too many combinations: random orderings, seeded, the observed one counted
    many = np.arange(13, dtype=float)[None, :].repeat(2, axis=0)
    drawn = stratified_order_test(many, seed=1, draws=999)
    assert drawn["min_p"] == pytest.approx(1 / 1000) and drawn["p_rise"] == pytest.approx(1 / 1000)
    assert drawn == stratified_order_test(many, seed=1, draws=999)
    assert np.isnan(stratified_order_test(np.full((3, 4), np.nan))["rho"])


def test_versus_controls_crawford_howell_and_the_rank_from_20():
    assert versus_controls(0.3, [0.1], "c", "t", 0.05)["verdict"] == UNTESTABLE  # one control has no spread
    controls = [0.0, 0.1, -0.1, 0.05, -0.05]
    row = versus_controls(0.5, controls, "c", "t", 0.05)
    expected = scipy_stats.ttest_ind([0.5], controls, alternative="greater")  # the same t with one case
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-10) and row["verdict"] == SUPPORTED
    assert row["effect"] == pytest.approx(0.5) and "Crawford-Howell" in row["test"]
    assert versus_controls(-0.5, controls, "c", "t", 0.05)["verdict"] == CONTRADICTED
    many = versus_controls(0.3, list(np.linspace(0, 0.2, 39)), "c", "t", 0.05)
    assert many["p"] == pytest.approx(1 / 40) and many["min_p"] == pytest.approx(1 / 40) and "rank" in many["test"]


def test_crawford_howell_by_hand_calibrated_and_powered():
    from emoselect.analysis.stats import crawford_howell, crawford_howell_p_at

    controls = np.array([1.0, 2.0, 4.0])
    sd = np.std(controls, ddof=1)
    t = (6.0 - controls.mean()) / (sd * np.sqrt(4 / 3))
    result = crawford_howell(6.0, controls)
    assert result["t"] == pytest.approx(t) and result["p_above"] == pytest.approx(scipy_stats.t.sf(t, 2))
    assert result["p_above"] + result["p_below"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    null = [crawford_howell(rng.normal(), rng.normal(size=5))["p_above"] for _ in range(4000)]
    assert np.mean(np.asarray(null) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)  # normal controls: alpha
    assert np.mean(np.asarray(null) < 0.05) >= 0.05 - 3 * np.sqrt(0.05 * 0.95 / 4000)  # and not conservative
    exact_controls = scipy_stats.norm.ppf((np.arange(5) + 0.5) / 5)
    exact_controls = (exact_controls - exact_controls.mean()) / exact_controls.std(ddof=1)
    assert crawford_howell(3.0, exact_controls)["p_above"] == pytest.approx(crawford_howell_p_at(3.0, 5))
    assert crawford_howell_p_at(3.0, 5) < 0.05  # a planted 3-SD difference with K = 5
    planted = [crawford_howell(3.0 + rng.normal(), rng.normal(size=5))["p_above"] < 0.05 for _ in range(2000)]
    assert np.mean(planted) > 0.5


def test_holm_by_hand():
    from emoselect.analysis.stats import holm

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.5
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])


def _summary(q_enhance, q_lesion, layers=("a", "b"), applicable=True):
    rows = []
    for emotion in ("pleasant", "neutral", "unpleasant"):
        for i, layer in enumerate(layers):
            rows.append(
                {
                    "train_dataset": "d",
                    "test_dataset": "d",
                    "emotion": emotion,
                    "layer": layer,
                    "applicable": applicable,
                    "enhance_excess": 0.1,
                    "lesion_excess": -0.1 * i,
                    "ablation_excess": 0.0,
                    "q_enhance": q_enhance,
                    "q_enhance_below": 1.0,
                    "q_lesion": q_lesion,
                    "q_lesion_below": 1.0,
                    "q_ablate": 1.0,
                    "q_ablate_below": 1.0,
                    "min_p_enhance": 0.01,
                    "min_p_lesion": 0.01,
                    "gain_rescales_readout": layer == layers[-1],
                }
            )
    return pd.DataFrame(rows)


def _trends_rows(network, values):
    """trends.csv rows of one network: {(measure, statistic): (value, p_above, p_below)}."""
    return [
        {
            "network": network,
            "measure": m,
            "statistic": st,
            "value": v,
            "z": scipy_stats.norm.isf(pa - 0.5 / 1000),
            "p_above": pa,
            "p_below": pb,
            "n_null": 999,
            "min_p": 0.001,
        }  # fmt: skip
        for (m, st), (v, pa, pb) in values.items()
    ]


def test_scorecard_from_tables():
    level, trend = "mean over layers", "Spearman rho with depth"
    trained = {("overlap_excess", level): (0.1, 0.001, 0.999), ("overlap_excess", trend): (0.9, 0.03, 0.97),
               ("tuning_quality_excess", level): (0.2, 0.001, 0.999),
               ("tuning_quality_excess", trend): (0.9, 0.03, 0.97)}  # fmt: skip
    control = {("overlap_excess", level): (-0.1, 0.999, 0.002), ("overlap_excess", trend): (-0.9, 0.998, 0.002),
               ("tuning_quality_excess", level): (0.0, 0.5, 0.5),
               ("tuning_quality_excess", trend): (0.1, 0.4, 0.6)}  # fmt: skip
    trends = pd.DataFrame(_trends_rows("trained", trained) + _trends_rows("random init", control))
    overlap = pd.DataFrame(
        {
            "layer": ["a", "b"] * 3,
            "category": np.repeat(["pleasant", "neutral", "unpleasant"], 2),
            "dataset_a": "d1",
            "p_value": [0.01, 0.01, 0.01, 0.5, 0.01, 0.9],
            "p_independent": 0.001,
            "jaccard_excess": 0.1,
        }
    )
    card = scorecard(
        trends,
        overlap,
        _summary(0.01, 0.5),
        [{"name": "random init", "overlap": overlap.assign(p_value=0.9, jaccard_excess=0.0), "summary": None}],
        0.05,
    )
    by = card.set_index(["claim", "network"])["verdict"]
    rise = "tuning quality (excess over its label-shuffled null) rises with depth"
    # p = 0.03 alone, twice, in a family of 3 (the 3 depth trends of the manipulations, smallest
    # attainable p 1/8 with 2 layers in 3 emotions, are left out): Holm 0.03 x 2 = 0.06 > alpha
    assert by[(rise, "trained")] == INCONCLUSIVE
    assert card.set_index(["claim", "network"]).loc[(rise, "trained"), "p_holm"] == pytest.approx(0.06)
    assert by[(rise, "random init")] == INCONCLUSIVE
    assert by[("cross-dataset overlap (excess over chance) rises with depth", "trained")] == INCONCLUSIVE
    assert by[("cross-dataset overlap (excess over chance) rises with depth", "random init")] == CONTRADICTED
    assert by[("units keep their preferred category across datasets more than chance", "trained")] == SUPPORTED
    # below-chance overlap is no evidence against the claim: never contradicted
    assert by[("units keep their preferred category across datasets more than chance", "random init")] == INCONCLUSIVE
    assert by[("cross-dataset overlap is above the random-init controls'", "trained vs 1 random-init control")] == (
        UNTESTABLE
    )
    note = card.set_index(["claim", "network"]).loc[
        ("units keep their preferred category across datasets more than chance", "trained"), "note"
    ]
    assert "4 of 6 layer x category cells" in note and "6 under the independent-units reference" in note
    enhance = "enhancing selective units (gain above 1) raises the heads' AUC more than on random units"
    assert by[(enhance, "trained")] == SUPPORTED
    assert by[("lesioning selective units lowers the heads' AUC more than on random units", "trained")] == INCONCLUSIVE
    assert by[("enhancing selective units transfers to another dataset's pictures", "trained")] == UNTESTABLE
    deeper = card[card["claim"].str.startswith("the lesion effect")].iloc[0]
    assert deeper["effect"] == pytest.approx(-1.0) and deeper["min_p"] == pytest.approx(1 / 8)
    gain = card[card["claim"] == enhance].iloc[0]
    assert "3 of 6 cells manipulate a layer the readout follows directly" in gain["note"]
    # heads at chance: every manipulation claim is not testable, and says why
    chance = scorecard(trends, overlap, _summary(0.01, 0.01, applicable=False), [], 0.05)
    manipulation = chance[chance["claim"].str.contains("selective units|effect")]
    assert len(manipulation) == 7 and (manipulation["verdict"].isin([UNTESTABLE, INCONCLUSIVE])).all()
    assert (manipulation.loc[manipulation["claim"] == enhance, "verdict"] == UNTESTABLE).all()
    own = manipulation[~manipulation["claim"].str.contains("transfers")]
    assert own["note"].str.contains("not applicable").all()
