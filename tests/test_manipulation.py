"""The manipulation engine against the plain way, and the experiments' known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import make_image
from emoselect.analysis.experiments import (
    ManipulationOptions,
    Sequential,
    Swept,
    best_beta,
    block_label,
    condition_blocks,
    plan_layer,
    score_conditions,
    summarise,
    table_one,
)
from emoselect.analysis.records import Head, ReadoutOptions
from emoselect.analysis.stats import binary_metrics
from emoselect.engine.forward import record
from emoselect.engine.manipulation import Execution, ResultCache, evaluate, evaluate_naive, load_pictures
from emoselect.engine.probe import load_network, probe_model
from emoselect.engine.readout import head_scores, train_head
from emoselect.pictures.images import Preprocessing


def random_heads(network, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Head(
            "d",
            f"e{i}",
            rng.normal(size=(2, network.readout_dim)).astype(np.float32) / np.sqrt(network.readout_dim),
            rng.normal(size=2).astype(np.float32),
            1,
        )
        for i in range(n)
    ]


def random_plan(network, sites, conditions=3, seed=0):
    rng = np.random.default_rng(seed)
    plan = {}
    for site in sites:
        gains = rng.uniform(0, 5, size=(conditions, network.units[site])).astype(np.float32)
        gains[0, rng.random(network.units[site]) < 0.5] = 0.0  # a partial lesion
        plan[site] = gains
    return plan


def assert_same(engine, naive):
    for site in naive:
        scale = np.abs(naive[site]).max()
        assert np.abs(engine[site] - naive[site]).max() <= 1e-5 * scale, site


def test_engine_equals_full_forward_on_vgg16(vgg_weights):
    network = load_network("vgg16", str(vgg_weights))
    pictures = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    plan = random_plan(network, ["conv1_2", "conv3_3", "conv4_3", "conv5_3"])
    heads = random_heads(network)
    engine = evaluate(network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=4, progress=False))
    assert_same(engine, evaluate_naive(network, pictures, plan, heads))
    assert engine["conv5_3"].shape == (3, 3, 3)


@pytest.mark.parametrize(
    "name, sites",
    [
        ("mobilenet_v2", ["features.2.conv.0.2", "features.16.conv.1.2", "features.18.2"]),
        ("resnet18", ["relu", "layer2.1", "layer4.1"]),
    ],
)
def test_engine_equals_full_forward_for_nested_sites(name, sites):
    network = load_network(name, "random", seed=1)
    assert network.stages is not None
    pictures = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    plan = random_plan(network, sites, conditions=2, seed=2)
    heads = random_heads(network, n=2)
    assert_same(
        evaluate(network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=3, progress=False)),
        evaluate_naive(network, pictures, plan, heads),
    )


def mean_ablation_offsets(plan, seed=0, negative=False):
    """Offsets of a mean-ablation on every other condition: the units lesioned there (gain 0) get a
    positive offset (or a negative one, which no fast path may take)."""
    rng = np.random.default_rng(seed)
    offsets = {}
    for site, gains in plan.items():
        shift = np.zeros_like(gains)
        for c in range(0, len(gains), 2):
            lesioned = rng.random(gains.shape[1]) < 0.3
            gains[c, lesioned] = 0.0
            shift[c, lesioned] = rng.uniform(0.1, 2.0, lesioned.sum()) * (-1 if negative else 1)
        offsets[site] = shift
    return offsets


@pytest.mark.parametrize("negative", [False, True])
def test_mean_ablation_offsets_equal_the_full_forward_on_vgg16(vgg_weights, negative):
    network = load_network("vgg16", str(vgg_weights))
    pictures = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    plan = random_plan(network, ["conv3_3", "conv4_3", "conv5_2", "conv5_3"], conditions=4, seed=4)
    offsets = mean_ablation_offsets(plan, seed=1, negative=negative)
    heads = random_heads(network)
    engine = evaluate(
        network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=4, progress=False), offsets=offsets
    )
    naive = evaluate_naive(network, pictures, plan, heads, offsets=offsets)
    assert_same(engine, naive)
    plain = evaluate_naive(network, pictures, plan, heads)  # the offsets change the margins
    assert np.abs(naive["conv5_3"][0] - plain["conv5_3"][0]).max() > 1e-3


@pytest.mark.parametrize("name, sites", [("mobilenet_v2", ["features.2.conv.0.2", "features.18.2"]),
                                         ("resnet18", ["layer2.1", "layer4.1"])])  # fmt: skip
def test_mean_ablation_offsets_equal_the_full_forward_for_nested_sites(name, sites):
    network = load_network(name, "random", seed=1)
    pictures = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    plan = random_plan(network, sites, conditions=2, seed=2)
    offsets = mean_ablation_offsets(plan)
    heads = random_heads(network, n=2)
    assert_same(
        evaluate(
            network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=3, progress=False), offsets=offsets
        ),
        evaluate_naive(network, pictures, plan, heads, offsets=offsets),
    )


def test_network_without_a_chain_falls_back_to_the_plain_way():
    network = load_network("densenet121", "random")
    assert network.stages is None
    pictures = torch.randn(1, 3, 224, 224)
    site = list(network.sites)[-1]
    plan = {site: np.ones((1, network.units[site]), np.float32)}
    heads = random_heads(network, n=1)
    out = evaluate(network, pictures, plan, heads, Execution(progress=False))
    _, features = record(network, pictures)
    np.testing.assert_allclose(out[site][0, :, 0], head_scores(heads, features.numpy())[:, 0], rtol=1e-4, atol=1e-5)


def test_all_ones_equals_the_intact_network_and_all_zeros_gives_chance(vgg_weights):
    network = load_network("vgg16", str(vgg_weights))
    pictures = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    heads = random_heads(network, n=1)
    plan = {"conv4_1": np.stack([np.ones(512, np.float32), np.zeros(512, np.float32)])}
    out = evaluate(network, pictures, plan, heads, Execution(progress=False))["conv4_1"]
    _, features = record(network, pictures)
    intact = head_scores(heads, features.numpy().astype(np.float64))[:, 0]
    np.testing.assert_allclose(out[0, :, 0], intact, rtol=1e-5, atol=1e-5 * np.abs(intact).max())
    lesioned = out[1, :, 0]  # every picture looks the same to the head
    assert (
        np.ptp(lesioned) <= 1e-4 * np.abs(lesioned).max()
    )  # (up to float rounding: the shortcut cancels intact - term)
    assert len(set(lesioned > 0)) == 1
    truth = np.array([True, False, True, False])
    assert binary_metrics(truth, out[1, :, 0] > 0)["balanced_accuracy"] == 0.5


class Planted(nn.Module):
    """Channel 0 of the first site carries R (and so the label); channels 1-2 carry G and B; 3 is silent."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 10)
        with torch.no_grad():
            first = self.features[0]
            first.weight.zero_()
            first.bias.zero_()
            first.weight[0, 0, 0, 0] = 1.0
            first.weight[1, 1, 0, 0] = 1.0
            first.weight[2, 2, 0, 0] = 1.0
            first.bias[0] = 3.0
            self.features[2].weight.copy_(torch.eye(4)[:, :, None, None])
            self.features[2].bias.zero_()

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_lesioning_the_one_informative_channel_is_the_only_lesion_that_hurts():
    network = probe_model(Planted(), "planted", prep=Preprocessing(resize=32, crop=32))
    assert list(network.sites) == ["features.1", "features.3"] and network.stages is not None
    rng = np.random.default_rng(0)
    n = 600
    label = np.arange(n) % 2 == 0
    colour = rng.normal(size=(n, 3)).astype(np.float32)
    colour[:, 0] += np.where(label, 1.5, -1.5)  # red carries the label
    pictures = torch.from_numpy(colour)[:, :, None, None].expand(n, 3, 32, 32).contiguous()
    pictures += 0.05 * torch.randn(pictures.shape, generator=torch.Generator().manual_seed(0))
    _, features = record(network, pictures)
    features = features.numpy()
    head = train_head(
        features[:400],
        label[:400].astype(int),
        features[400:500],
        label[400:500].astype(int),
        ReadoutOptions(epochs=50, lr=0.01),
    )
    gains = np.ones((5, 4), np.float32)
    for channel in range(4):
        gains[channel + 1, channel] = 0.0
    out = evaluate(network, pictures[500:], {"features.1": gains}, [head], Execution(progress=False))["features.1"]
    accuracy = [binary_metrics(label[500:], out[c, :, 0] > 0)["balanced_accuracy"] for c in range(5)]
    assert accuracy[0] > 0.8  # intact
    assert accuracy[1] <= 0.6  # channel 0 lesioned: near chance
    assert max(abs(a - accuracy[0]) for a in accuracy[2:]) <= 0.05


# ---------------------------------------------------------------------------------------------
# experiment bookkeeping


SELECTIVE = pd.DataFrame(
    {"layer": ["L"] * 5, "unit": [0, 1, 2, 7, 8], "category": ["pleasant"] * 3 + ["unpleasant"] * 2}
)


def swept(betas: list[float], repeats: int, lesion_repeats: int | None = None) -> Swept:
    """What a sweep of layer L covers (the profile's defaults applied)."""
    return Swept(layers=["L"], betas=betas, repeats=repeats, lesion_repeats=lesion_repeats)


def test_plan_has_one_intact_row_and_random_sets_of_the_same_size():
    options = ManipulationOptions()
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 1.0, 2.0], 4, 6), options, seed=3)
    assert plan.conditions.iloc[0]["units"] == "intact" and np.all(plan.gains[0] == 1)
    assert not (plan.conditions["beta"].iloc[1:] == 1.0).any()
    selective = plan.conditions[(plan.conditions["units"] == "selective") & (plan.conditions["emotion"] == "pleasant")]
    assert list(selective["beta"]) == [0.0, 2.0]
    assert np.array_equal(np.flatnonzero(plan.gains[selective.index[0]] == 0), [0, 1, 2])
    randoms = plan.conditions[(plan.conditions["units"] == "random") & (plan.conditions["emotion"] == "unpleasant")]
    assert len(randoms) == 4 * 2 + 2 and (randoms["n_units"] == 2).all()  # 4 swept sets, 2 lesion-only sets
    assert (
        list(randoms.loc[randoms["repeat"] > 4, "beta"]) == [0.0, 0.0]
        and not randoms.loc[randoms["repeat"] > 4, "swept"].any()
    )
    for index in randoms.index:
        assert (plan.gains[index] != 1).sum() == 2
    assert not (plan.conditions["emotion"] == "neutral").any()  # no neutral units: no conditions
    again = plan_layer("L", 20, SELECTIVE, swept([0.0, 1.0, 2.0], 4, 6), options, seed=3)
    assert np.array_equal(plan.gains, again.gains)
    only = plan_layer("L", 20, SELECTIVE, swept([0.0], 4), ManipulationOptions(random_from="nonselective"))
    for index in only.conditions.index[only.conditions["units"] == "random"]:
        assert not set(np.flatnonzero(only.gains[index] == 0)) & {0, 1, 2, 7, 8}


def test_tuning_form_gains():
    units = pd.DataFrame(
        {
            "layer": "L",
            "unit": [0, 1, 2, 3] * 2,
            "dataset": ["a"] * 4 + ["b"] * 4,
            "t_pleasant": [2.0, -1.0, 0.0, 1.0, 2.0, -3.0, 0.0, 1.0],
            "t_neutral": 0.0,
            "t_unpleasant": 0.0,
        }
    )
    plan = plan_layer("L", 4, units, swept([0.5, 1.0], 1), ManipulationOptions(gain_form="tuning"))
    row = plan.conditions.index[(plan.conditions["units"] == "tuning") & (plan.conditions["emotion"] == "pleasant")][0]
    f = np.array([2.0, -2.0, 0.0, 1.0]) / 2.0  # mean over datasets / max |.|
    np.testing.assert_allclose(plan.gains[row], np.maximum(0, 1 + 0.5 * f))


def test_scoring_best_beta_on_val_and_rank_p_values():
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 0.5, 2.0], 2), ManipulationOptions())
    n = 8
    evaluated = pd.DataFrame(
        {"dataset": "d", "category": ["pleasant", "neutral"] * 4, "split": ["val"] * 4 + ["test"] * 4}
    )
    margins = np.full((len(plan.gains), n, 1), -1.0)  # intact: always "not pleasant"
    selective = plan.conditions.index[
        (plan.conditions["units"] == "selective") & (plan.conditions["emotion"] == "pleasant")
    ]
    for index in selective:
        if plan.conditions.loc[index, "beta"] == 2.0:
            margins[index, :, 0] = [1, -1] * 4  # gain 2 on selective units: perfect
        if plan.conditions.loc[index, "beta"] == 0.5:
            margins[index, :, 0] = [1, -1] * 4  # an attenuation that helps is no enhancement
    manipulation = score_conditions(
        plan, margins, [Head("d", "pleasant", np.zeros((2, 1)), np.zeros(2), 1)], evaluated, True
    )
    assert manipulation.loc[manipulation["kind"] == "intact", "auc"].eq(0.5).all()  # constant margins: chance
    intact = manipulation[(manipulation["kind"] == "intact") & (manipulation["split"] == "test")]
    beta_one = manipulation[
        (manipulation["kind"] == "gain") & (manipulation["beta"] == 1.0) & (manipulation["split"] == "test")
    ]
    assert (beta_one["f1"] == intact["f1"].iloc[0]).all() and len(beta_one) == 3
    summary = summarise(manipulation).iloc[0]
    assert summary["original_f1"] == 0.0 and summary["original_auc"] == 0.5
    assert summary["enhanced_beta"] == 2.0 and summary["enhanced_auc"] == 1.0 and summary["enhanced_f1"] == 1.0
    assert summary["attenuated_beta"] == 0.5 and summary["attenuated_auc"] == 1.0
    assert (
        summary["p_enhance"] == pytest.approx(1 / 3)
        and summary["n_random_enhance"] == 2
        and summary["min_p_enhance"] == pytest.approx(1 / 3)
    )
    assert summary["test_chosen_beta"] == 2.0 and summary["test_chosen_f1"] == 1.0
    assert summary["lesion_excess"] == 0.0 and summary["applicable"]  # no heads table: every cell tested
    lesion = manipulation[manipulation["kind"] == "lesion"]
    assert set(lesion["beta"]) == {0.0} and set(lesion["units"]) == {"selective", "random"}


def test_profiles_resolve_by_device_and_explicit_values_win():
    sites = [f"s{i}" for i in range(13)]
    quick = ManipulationOptions().resolved(sites, torch.device("cpu"))
    assert quick == Swept(layers=sites[-4:], betas=[0.0, 0.5, 1.0, 2.0, 4.0], repeats=49, lesion_repeats=99)
    paper = ManipulationOptions().resolved(sites, torch.device("cuda"))
    assert paper.layers == sites and len(paper.betas) == 11 and paper.betas[-1] == 5.0
    assert paper.repeats == paper.lesion_repeats == 99
    assert ManipulationOptions(profile="paper", layers=["s3"], betas=[3], repeats=5, lesion_repeats=7).resolved(
        sites
    ) == Swept(layers=["s3"], betas=[0.0, 1.0, 3.0], repeats=5, lesion_repeats=7)
    assert ManipulationOptions(repeats=5).resolved(sites).lesion_repeats == 99  # the profile's, above 5
    from emoselect.base.problems import InputError

    # issue 20 item 15: fewer lesioned than swept sets was raised without a word; a contradiction is an error
    with pytest.raises(InputError, match=r"^--lesion-repeats 2 is below the 5 random sets .*\(--repeats 5\)"):
        ManipulationOptions(repeats=5, lesion_repeats=2).resolved(sites)
    with pytest.raises(InputError, match=r"^--lesion-repeats 10 is below the 49 random sets .*\(the quick profile\)"):
        ManipulationOptions(lesion_repeats=10).resolved(sites)

    with pytest.raises(InputError, match="is not a probe site"):
        ManipulationOptions(layers=["x"]).resolved(sites)
    with pytest.raises(InputError, match=">= 0"):
        ManipulationOptions(betas=[-1]).resolved(sites)
    with pytest.raises(InputError, match="alpha"):
        ManipulationOptions(alpha=2).resolved(sites)


def test_validation_ties_go_to_beta_one_defect_1():
    assert best_beta([0.0, 0.5, 1.0, 2.0], [0.4, 0.5, 0.5, 0.5]) == 1.0
    assert best_beta([0.0, 0.5, 2.0], [0.5, 0.5, 0.5]) == 0.5  # no 1 on the grid: the closest to it
    assert best_beta([0.0, 0.5, 1.0, 2.0], [0.4, 0.6, 0.5, 0.5]) == 0.5
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 0.5, 2.0], 2), ManipulationOptions())
    evaluated = pd.DataFrame(
        {"dataset": "d", "category": ["pleasant", "neutral"] * 4, "split": ["val"] * 4 + ["test"] * 4}
    )
    margins = np.tile(np.array([1.0, -1.0] * 4)[None, :, None], (len(plan.gains), 1, 1))  # every condition perfect
    manipulation = score_conditions(
        plan, margins, [Head("d", "pleasant", np.zeros((2, 1)), np.zeros(2), 1)], evaluated, True
    )
    summary = summarise(manipulation)
    assert (summary["enhanced_beta"] == 1.0).all() and (summary["test_chosen_beta"] == 1.0).all()
    assert (summary["attenuated_beta"] == 1.0).all()


def test_tuning_form_has_no_lesion_rows_defect_3():
    units = pd.DataFrame(
        {
            "layer": "L",
            "unit": [0, 1, 2, 3],
            "dataset": "a",
            "t_pleasant": [2.0, -1.0, 0.0, 1.0],
            "t_neutral": 0.0,
            "t_unpleasant": 0.0,
        }
    )
    plan = plan_layer("L", 4, units, swept([0.0, 2.0], 2), ManipulationOptions(gain_form="tuning"))
    beta_zero = plan.conditions.index[plan.conditions["beta"] == 0.0]
    assert len(beta_zero) and np.all(plan.gains[beta_zero] == 1.0)  # the tuning form's gain at beta = 0 is 1
    evaluated = pd.DataFrame(
        {"dataset": "d", "category": ["pleasant", "neutral"] * 2, "split": ["val", "val", "test", "test"]}
    )
    manipulation = score_conditions(
        plan,
        np.zeros((len(plan.gains), 4, 1)),
        [Head("d", "pleasant", np.zeros((2, 1)), np.zeros(2), 1)],
        evaluated,
        True,
    )
    assert not (manipulation["kind"] == "lesion").any()
    assert summarise(manipulation)["lesioned_auc"].isna().all()


def test_small_nonselective_pool_is_an_error_not_smaller_sets_defect_4():
    from emoselect.base.problems import InputError

    crowded = pd.DataFrame({"layer": "L", "unit": range(8), "category": ["pleasant"] * 5 + ["neutral"] * 3})
    with pytest.raises(InputError, match="too few"):
        plan_layer("L", 10, crowded, swept([0.0], 3), ManipulationOptions(random_from="nonselective"))
    fits = pd.DataFrame({"layer": "L", "unit": [0], "category": ["pleasant"]})
    plan = plan_layer("L", 10, fits, swept([0.0], 3), ManipulationOptions(random_from="nonselective"))
    sizes = plan.conditions.loc[plan.conditions["units"] == "random", "n_units"]
    assert (sizes == 1).all()


def _rank_p_values(rng, effect: float, sets: int = 99, trials: int = 400, hits: int = 0) -> np.ndarray:
    """p_lesion of a selective set against ``sets`` random sets, when the selective set's AUC loss is
    the random sets' distribution shifted by ``effect`` (0 = no difference); ``hits`` as Sequential."""
    out = []
    for _ in range(trials):
        losses = rng.normal(0.1, 0.05, sets + 1)
        losses[0] += effect
        rows = [
            {
                "train_dataset": "d",
                "test_dataset": "d",
                "emotion": "pleasant",
                "layer": "L",
                "split": "test",
                "kind": "intact",
                "units": "intact",
                "repeat": 0,
                "beta": 1.0,
                "f1": 0.7,
                "auc": 0.7,
            }
        ]
        for r, loss in enumerate(losses):
            name = "selective" if r == 0 else "random"
            for split in ("val", "test"):
                rows.append(
                    {
                        "train_dataset": "d",
                        "test_dataset": "d",
                        "emotion": "pleasant",
                        "layer": "L",
                        "split": split,
                        "kind": "gain",
                        "units": name,
                        "repeat": r,
                        "beta": 0.0,
                        "n_units": 3,
                        "f1": 0.7 - loss,
                        "auc": 0.7 - loss,
                    }
                )
            rows.append({**rows[-1], "kind": "lesion"})
        design = Sequential(hits=hits, gain_sets=sets, lesion_sets=sets)
        out.append(summarise(pd.DataFrame(rows), sequential=design).iloc[0]["p_lesion"])
    return np.asarray(out)


def test_lesion_rank_test_is_calibrated_and_has_power():
    rng = np.random.default_rng(7)
    null = _rank_p_values(rng, 0.0, trials=300)
    for x in (0.05, 0.1, 0.25, 0.5):
        assert abs(np.mean(null <= x) - x) <= 0.06
    planted = _rank_p_values(rng, 0.2, trials=50)  # 4 SD stronger than random sets
    assert np.mean(planted <= 0.01) >= 0.9 and planted.min() == pytest.approx(0.01)


def test_sequential_p_is_valid_and_equals_the_full_one_below_h_over_cap():
    rng = np.random.default_rng(8)
    sequential = _rank_p_values(np.random.default_rng(3), 0.0, trials=300, hits=10)
    full = _rank_p_values(np.random.default_rng(3), 0.0, trials=300, hits=0)  # the same draws
    for x in (0.05, 0.1, 0.2, 0.5):  # valid: P(p <= x) <= x (+ 3 Monte Carlo errors)
        assert np.mean(sequential <= x) <= x + 3 * np.sqrt(x * (1 - x) / 300)
    small = full < 10 / 100
    assert small.any() and np.array_equal(sequential[small], full[small])
    assert (sequential[~small] >= 10 / 100 - 1e-12).all()
    planted_seq = _rank_p_values(np.random.default_rng(4), 0.2, trials=30, hits=10)
    planted_full = _rank_p_values(np.random.default_rng(4), 0.2, trials=30, hits=0)
    assert np.array_equal(planted_seq, planted_full)  # a real effect is never stopped early
    # by hand: draws [3, 1, 5, 2, 4] against observed 2.5 with h = 2: exceedances at draws 1 and 3
    from emoselect.analysis.stats import sequential_p

    assert sequential_p(2.5, np.array([3, 1, 5, 2, 4.0]), 2, 99) == (2 / 3, 3, True)
    assert sequential_p(9.0, np.array([3, 1, 5.0]), 2, 3) == (1 / 4, 3, True)  # the cap: (1 + 0) / (1 + 3)
    p, used, done = sequential_p(9.0, np.array([3, 1.0]), 2, 99)
    assert np.isnan(p) and used == 2 and not done  # more draws needed
    del rng


def test_heads_first_chance_heads_are_not_tested():
    from emoselect.analysis.experiments import head_tests

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"dataset": "d", "category": ["pleasant", "neutral"] * 60, "split": "test"})
    truth = (table["category"] == "pleasant").to_numpy()
    heads = [
        Head("d", "pleasant", np.zeros((2, 1)), np.zeros(2), 1),
        Head("d", "neutral", np.zeros((2, 1)), np.zeros(2), 1),
    ]
    margins = {"d": np.stack([truth + rng.normal(0, 0.5, 120), rng.normal(size=120)], axis=1)}
    tests = head_tests(margins, table, heads, True, seed=1, key="k", shuffles=199)
    assert tests.loc[0, "p_head"] == pytest.approx(1 / 200) and tests.loc[0, "auc"] > 0.8
    assert tests.loc[1, "p_head"] > 0.05
    assert tests.equals(head_tests(margins, table, heads, True, seed=1, key="k", shuffles=199))
    null = [head_tests({"d": rng.normal(size=(120, 2))}, table, heads, True, s, "k", 99)["p_head"] for s in range(200)]
    assert np.mean(np.concatenate(null) < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)
    # a cell whose head is at chance: descriptive values, no p, and complete (no random sets needed)
    rows = []
    for kind, units, repeat, beta, value in [("intact", "intact", 0, 1.0, 0.5), ("gain", "selective", 0, 2.0, 0.9),
                                             ("gain", "random", 1, 2.0, 0.5)]:  # fmt: skip
        for split in ("val", "test"):
            rows.append({"train_dataset": "d", "test_dataset": "d", "emotion": "pleasant", "layer": "L", "split": split,
                         "kind": kind, "units": units, "repeat": repeat, "beta": beta, "n_units": 2, "f1": value,
                         "auc": value})  # fmt: skip
    chance = pd.DataFrame({"train_dataset": ["d"], "test_dataset": ["d"], "emotion": ["pleasant"], "auc": [0.5],
                           "p_head": [0.4], "n_null": [999]})  # fmt: skip
    summary = summarise(pd.DataFrame(rows), heads=chance).iloc[0]
    assert not summary["applicable"] and np.isnan(summary["p_enhance"]) and summary["complete"]
    assert summary["enhanced_auc"] == 0.9 and summary["p_head"] == 0.4
    tested = summarise(pd.DataFrame(rows), heads=chance.assign(p_head=0.01)).iloc[0]
    assert tested["applicable"] and tested["p_enhance"] == pytest.approx(0.5) and tested["complete"]
    capped = summarise(pd.DataFrame(rows), heads=chance.assign(p_head=0.01), sequential=Sequential()).iloc[0]
    assert np.isnan(capped["p_enhance"]) and not capped["complete"]  # 1 random set of up to 49: draw more


def test_mean_ablation_conditions_set_units_to_their_means():
    means = 1 + np.arange(20, dtype=np.float32) / 10
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 2.0], 2, 3), ManipulationOptions(), means=means)
    rows = plan.conditions.index[plan.conditions["form"] == "mean"]
    assert len(rows) == 2 * 4  # pleasant and unpleasant: the selective set and 3 lesioned random sets
    for row in rows:
        units = np.flatnonzero(plan.gains[row] == 0)
        assert len(units) == plan.conditions.loc[row, "n_units"]
        np.testing.assert_array_equal(plan.offsets[row, units], means[units])
        assert np.count_nonzero(plan.offsets[row]) == len(units)
    assert not plan.offsets[plan.conditions["form"] == "scale"].any()
    assert plan_layer("L", 20, SELECTIVE, swept([0.0, 2.0], 2), ManipulationOptions()).offsets is None


def test_table_one_reports_the_test_chosen_gain_beside_the_honest_one():
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 2.0], 2), ManipulationOptions())
    evaluated = pd.DataFrame(
        {"dataset": "d", "category": ["pleasant", "neutral"] * 4, "split": ["val"] * 4 + ["test"] * 4}
    )
    margins = np.full((len(plan.gains), 8, 1), -1.0)
    for index in plan.conditions.index[(plan.conditions["units"] == "selective") & (plan.conditions["beta"] == 2.0)]:
        margins[index, 4:, 0] = [1, -1, 1, -1]  # helps on test only: val cannot see it
    manipulation = score_conditions(
        plan, margins, [Head("d", "pleasant", np.zeros((2, 1)), np.zeros(2), 1)], evaluated, True
    )
    summary = summarise(manipulation)
    table = table_one(summary).iloc[0]
    assert table["enhanced_beta"] == 1.0 and table["enhanced_f1"] == 0.0  # honest: val saw no gain
    assert table["test_chosen_beta"] == 2.0 and table["test_chosen_f1"] == 1.0
    assert table["random_test_chosen_f1"] == 0.0
    from emoselect.analysis.experiments import SUMMARY_COLUMNS, TABLE1_COLUMNS

    # the column lists that empty tables get are the columns of real ones (they cannot drift apart)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(table_one(summary).columns) == TABLE1_COLUMNS
    assert list(summarise(manipulation.iloc[:0]).columns) == SUMMARY_COLUMNS
    assert list(table_one(summarise(manipulation.iloc[:0])).columns) == TABLE1_COLUMNS


def _gain_p_values(rng, effect: float, sets: int = 99, trials: int = 200) -> np.ndarray:
    """p_enhance when every unit set's AUC curve over beta is noise around the same shape on val and
    test (selection of the best val beta included), the selective curve raised by ``effect`` at beta 2."""
    betas = [0.0, 0.5, 2.0, 4.0]
    cell = {"train_dataset": "d", "test_dataset": "d", "emotion": "pleasant", "layer": "L"}
    out = []
    for _ in range(trials):
        intact = {"kind": "intact", "units": "intact", "repeat": 0, "beta": 1.0, "n_units": 0, "auc": 0.55, "f1": 0.5}
        rows = [{**cell, "split": split, **intact} for split in ("val", "test")]
        for r in range(sets + 1):
            shift = rng.normal(0, 0.02)  # a set's own effect, shared by val and test
            unit_set = {"kind": "gain", "units": "selective" if r == 0 else "random", "repeat": r, "n_units": 3}
            for beta in betas:
                for split in ("val", "test"):
                    area = 0.55 + shift + rng.normal(0, 0.03) + (effect if r == 0 and beta == 2.0 else 0.0)
                    rows.append({**cell, "split": split, **unit_set, "beta": beta, "auc": area, "f1": 0.5})
            rows += [
                {**cell, "split": split, **unit_set, "beta": 1.0, "auc": 0.55, "f1": 0.5} for split in ("val", "test")
            ]
        design = Sequential(hits=0, gain_sets=sets, lesion_sets=sets)
        out.append(summarise(pd.DataFrame(rows), sequential=design).iloc[0]["p_enhance"])
    return np.asarray(out)


def test_gain_rank_test_is_calibrated_and_has_power():
    rng = np.random.default_rng(11)
    null = _gain_p_values(rng, 0.0)
    for x in (0.05, 0.1, 0.25, 0.5):
        assert np.mean(null <= x) <= x + 0.07
    assert np.mean(null <= 0.5) >= 0.35
    planted = _gain_p_values(rng, 0.25, trials=40)
    assert np.mean(planted <= 0.02) >= 0.9


# blocks of conditions: the unit of the result cache and of a cluster shard


def test_condition_blocks_cut_each_category_into_runs_of_whole_unit_sets():
    plan = plan_layer("L", 20, SELECTIVE, swept([0.0, 1.0, 2.0], 4, 6), ManipulationOptions())
    blocks = condition_blocks(plan.conditions, 3)
    # pleasant: selective + 6 random sets = 7 sets -> 3, 3, 1; unpleasant the same; intact alone
    sets = [plan.conditions.iloc[a:b].drop_duplicates(["emotion", "units", "repeat"]) for a, b in blocks]
    assert blocks[0] == (0, 1) and [len(s) for s in sets] == [1, 3, 3, 1, 3, 3, 1]
    assert [s["emotion"].unique().tolist() for s in sets[1:]] == [["pleasant"]] * 3 + [["unpleasant"]] * 3
    assert [a for a, _ in blocks[1:]] == [b for _, b in blocks[:-1]] and blocks[-1][1] == len(plan.conditions)
    assert block_label(plan.conditions, blocks[2]) == "pleasant, random 3 to random 5"
    assert condition_blocks(plan.conditions, 100) == [
        (0, 1),
        blocks[1][:1] + blocks[3][1:],
        blocks[4][:1] + blocks[6][1:],
    ]


@pytest.mark.parametrize(
    "name, sites", [("vgg11", ["conv3_2", "conv4_2", "conv5_2"]), ("resnet18", ["relu", "layer2.1", "layer4.1"])]
)
def test_a_block_of_conditions_gives_the_same_numbers_alone_or_among_others(name, sites):
    network = load_network(name, "random", seed=1)
    pictures = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    plan = random_plan(network, sites, conditions=7, seed=4)
    plan[sites[0]][4:] = plan[sites[0]][4]  # one unit set scaled (a direction: the linear shortcut)
    plan[sites[0]][4:] = 1 + (plan[sites[0]][4:] - 1) * np.array([[0.0], [0.5], [2.0]], np.float32)
    heads = random_heads(network, n=2)
    blocks = {site: [(0, 1), (1, 4), (4, 7)] for site in sites}
    how = Execution(chunk_images=3, batch_samples=6, progress=False)
    whole = evaluate(network, pictures, plan, heads, how, blocks=blocks)
    assert_same(whole, evaluate_naive(network, pictures, plan, heads))
    for site in sites:
        for a, b in blocks[site]:
            alone = evaluate(network, pictures, {site: plan[site][a:b]}, heads, how)
            assert np.array_equal(alone[site], whole[site][a:b]), (site, a, b)
    with pytest.raises(ValueError, match="cover"):
        evaluate(network, pictures, plan, heads, how, blocks={sites[0]: [(0, 2), (3, 7)]})


def test_replay_engine_blocks_alone_or_among_others():
    from test_transformers import TINY, tiny_vit

    network = probe_model(tiny_vit(), "vit_tiny_test", prep=TINY)
    pictures = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plan = random_plan(network, ["block2", "block3_mlp"], conditions=5, seed=3)
    heads = random_heads(network, n=2)
    blocks = {site: [(0, 2), (2, 5)] for site in plan}
    how = Execution(chunk_images=3, batch_samples=6, progress=False)
    whole = evaluate(network, pictures, plan, heads, how, blocks=blocks)
    for site in plan:
        for a, b in blocks[site]:
            alone = evaluate(network, pictures, {site: plan[site][a:b]}, heads, how)
            assert np.array_equal(alone[site], whole[site][a:b]), (site, a, b)


def test_a_shard_fills_the_cache_and_the_merge_computes_only_the_rest(tmp_path, monkeypatch):
    import emoselect.engine.manipulation as manipulation

    network = load_network("vgg11", "random", seed=2)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    sha1s = [f"sha{i}" for i in range(5)]
    plan = random_plan(network, ["conv5_1"], conditions=6, seed=5)
    heads = random_heads(network, n=2)
    blocks = {"conv5_1": [(0, 1), (1, 3), (3, 6)]}
    cache = ResultCache(tmp_path / "cache", {"conv5_1": "key"})
    pictures, quiet = list(zip(paths, sha1s)), Execution(chunk_images=2, progress=False)
    shard = manipulation.evaluate_cached(
        network, pictures, {"conv5_1": plan["conv5_1"][1:3]}, heads, cache, {"conv5_1": [(0, 2)]}, quiet
    )
    evaluated: list[int] = []
    real = manipulation.evaluate
    monkeypatch.setattr(
        manipulation,
        "evaluate",
        lambda n, p, pl, *a, **k: evaluated.append(len(pl["conv5_1"])) or real(n, p, pl, *a, **k),
    )
    merged = manipulation.evaluate_cached(network, pictures, plan, heads, cache, blocks, quiet)
    assert evaluated == [4, 4, 4]  # per chunk of pictures, the intact row and the 3 conditions of the last block
    assert np.array_equal(merged["conv5_1"][1:3], shard["conv5_1"])
    plain = real(network, load_pictures(paths, network), plan, heads, quiet, blocks)
    assert np.array_equal(merged["conv5_1"], plain["conv5_1"])
    again = manipulation.evaluate_cached(network, pictures, plan, heads, cache, blocks, quiet)
    assert evaluated == [4, 4, 4] and np.array_equal(again["conv5_1"], merged["conv5_1"])


def test_the_cache_serves_a_subset_of_blocks_and_refuses_overlapping_ones(tmp_path):
    import emoselect.engine.manipulation as manipulation

    network = load_network("vgg11", "random", seed=2)
    pictures = [str(make_image(tmp_path / f"p{i}.png", seed=i)) for i in range(3)]
    plan = random_plan(network, ["conv5_1"], conditions=6, seed=5)
    heads = random_heads(network, n=2)
    cache = ResultCache(tmp_path / "cache", {"conv5_1": "key"})
    pairs, quiet = list(zip(pictures, ["a", "b", "c"])), Execution(chunk_images=2, progress=False)
    some = manipulation.evaluate_cached(network, pairs, plan, heads, cache, {"conv5_1": [(3, 6)]}, quiet)
    full = manipulation.evaluate_cached(network, pairs, plan, heads, cache, {"conv5_1": [(0, 3), (3, 6)]}, quiet)
    assert some["conv5_1"].shape[0] == 3 and np.array_equal(some["conv5_1"], full["conv5_1"][3:6])
    with pytest.raises(ValueError, match="ordered, disjoint"):
        manipulation.evaluate_cached(network, pairs, plan, heads, cache, {"conv5_1": [(0, 4), (3, 6)]}, quiet)
