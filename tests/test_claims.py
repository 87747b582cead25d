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
    layer_order_test,
    majority_verdict,
    scorecard,
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


def test_layer_order_test_enumerates_every_ordering():
    values = np.array([0.1, 0.3, 0.2, 0.5])
    result = layer_order_test(values)
    rho = scipy_stats.spearmanr(np.arange(4), values).statistic
    null = [
        scipy_stats.spearmanr(np.arange(4), values[list(order)]).statistic for order in itertools.permutations(range(4))
    ]
    assert result["rho"] == pytest.approx(rho)
    assert result["p_rise"] == pytest.approx(np.mean(np.asarray(null) >= rho - 1e-12))
    assert result["min_p"] == pytest.approx(1 / 24)
    assert layer_order_test(np.array([1.0, 2.0]))["min_p"] == 0.5  # two layers can never conclude


def test_versus_controls_rank_and_its_floor():
    one = versus_controls(0.3, [0.1], "c", "t", 0.05)
    assert one["p"] == 0.5 and one["min_p"] == 0.5 and one["verdict"] == INCONCLUSIVE
    many = versus_controls(0.3, list(np.linspace(0, 0.2, 39)), "c", "t", 0.05)
    assert many["p"] == pytest.approx(1 / 40) and many["verdict"] == SUPPORTED
    below = versus_controls(-0.1, list(np.linspace(0, 0.2, 39)), "c", "t", 0.05)
    assert below["verdict"] == CONTRADICTED


def _summary(q_enhance, q_lesion, layers=("a", "b", "c")):
    rows = []
    for emotion in ("pleasant", "neutral", "unpleasant"):
        for i, layer in enumerate(layers):
            rows.append(
                {
                    "train_dataset": "d",
                    "test_dataset": "d",
                    "emotion": emotion,
                    "layer": layer,
                    "enhanced_f1": 0.6,
                    "random_enhanced_f1": 0.5,
                    "lesioned_f1": 0.1 * i,
                    "random_lesioned_f1": 0.5,
                    "q_enhance": q_enhance,
                    "q_enhance_below": 1.0,
                    "q_lesion": q_lesion,
                    "q_lesion_below": 1.0,
                    "min_p_enhance": 0.01,
                    "min_p_lesion": 0.01,
                    "gain_rescales_readout": layer == layers[-1],
                }
            )
    return pd.DataFrame(rows)


def test_scorecard_from_tables():
    trends = pd.DataFrame(
        {
            "network": ["trained", "random init", "trained - random init"],
            "measure": "tuning_quality_excess",
            "rho": [0.9, 0.1, 0.8],
            "p_rise": [0.01, 0.4, 0.02],
            "p_fall": [0.99, 0.6, 0.98],
            "n_null": 199,
        }
    )
    overlap = pd.DataFrame(
        {
            "layer": ["a", "b"] * 3,
            "category": np.repeat(["pleasant", "neutral", "unpleasant"], 2),
            "q_value": [0.01, 0.01, 0.01, 0.5, 0.01, 0.9],
            "p_below": 0.9,
            "jaccard_excess": 0.1,
        }
    )
    card = scorecard(
        trends,
        overlap,
        None,
        _summary(0.01, 0.5),
        [
            {
                "name": "random init",
                "overlap": overlap.assign(q_value=0.9, jaccard_excess=0.0),
                "layers": None,
                "summary": None,
            }
        ],
        0.05,
    )
    by = card.set_index(["claim", "network"])["verdict"]
    assert by[("tuning quality (excess over its label-shuffled null) rises with depth", "trained")] == SUPPORTED
    assert by[("tuning quality (excess over its label-shuffled null) rises with depth", "random init")] == INCONCLUSIVE
    assert by[("units keep their preferred category across datasets more than chance", "trained")] == SUPPORTED
    assert by[("units keep their preferred category across datasets more than chance", "random init")] == INCONCLUSIVE
    assert (
        by[("attention gain on selective units improves the heads more than on random units", "trained")] == SUPPORTED
    )
    assert by[("lesioning selective units hurts the heads more than on random units", "trained")] == INCONCLUSIVE
    assert by[("attention gain on selective units transfers to another dataset's pictures", "trained")] == UNTESTABLE
    deeper = card[card["claim"] == "the lesion effect (selective minus random) is larger in deeper layers"].iloc[0]
    assert deeper["effect"] == pytest.approx(-1.0) and deeper["min_p"] == pytest.approx(1 / 6)
    gain = card[card["claim"].str.startswith("attention gain on selective units improves")].iloc[0]
    assert "3 of 9 cells manipulate a layer the readout follows directly" in gain["note"]
