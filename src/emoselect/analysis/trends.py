"""Depth trends of the selectivity measures: the trend test's nulls (tuning-quality excess from the shared
label permutations, overlap excess from the exact per-layer nulls) and the trained-minus-controls
comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..base.randomness import random_stream
from .stats import (
    exceedance_p_value,
    rank_correlation,
    trend_test,
)

if TYPE_CHECKING:  # annotations only: the selectivity module imports this one
    from .selectivity import SelectivityOptions


def _overlap_trend_null(
    pmfs: list[list[tuple[np.ndarray, int, int, float]]], draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Null draws of each layer's mean Jaccard excess over categories: [n_layers, draws].

    ``pmfs[layer]`` holds (intersection pmf, size_a, size_b, null mean of J) per category;
    categories with two empty sets are left out, as in the observed mean.
    """
    out = np.full((len(pmfs), draws), np.nan)
    for layer, cells in enumerate(pmfs):
        excess = []
        for pmf, size_a, size_b, null_mean in cells:
            if size_a + size_b == 0:
                continue
            k = rng.choice(len(pmf), size=draws, p=pmf)
            excess.append(k / (size_a + size_b - k) - null_mean)
        if excess:
            out[layer] = np.mean(excess, axis=0)
    return out


def _trends(
    layers: pd.DataFrame,
    overlap: pd.DataFrame,
    sites: list[str],
    tuning_nulls: list[list[np.ndarray]],
    pmfs: list,
    options: SelectivityOptions,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """Depth-trend tests of the tuning-quality excess and of the overlap excess (see :func:`trend_test`)."""
    rows, nulls = [], {}
    if options.tuning_null and len(sites) >= 3:
        excess = layers.groupby("layer", sort=False)["tuning_quality_excess"].mean().reindex(sites).to_numpy()
        null = np.mean(
            [np.stack(per_group) - np.stack(per_group).mean(axis=1, keepdims=True) for per_group in tuning_nulls],
            axis=0,
        )  # [L, P], sides averaged
        nulls["tuning_quality_excess"] = (excess, null)
    if len(sites) >= 3:
        excess = overlap.groupby("layer", sort=False)["jaccard_excess"].mean().reindex(sites).to_numpy()
        nulls["overlap_excess"] = (
            excess,
            _overlap_trend_null(pmfs, 1000, random_stream(seed, "overlap-trend")),
        )
    for measure, (observed, null) in nulls.items():
        rows.append({"measure": measure, **trend_test(observed, null)})
    return pd.DataFrame(rows, columns=["measure", "rho", "p_rise", "p_fall", "n_null"]), nulls


def trend_difference(trained: dict, controls: list[dict]) -> pd.DataFrame:
    """Does a measure rise more steeply with depth in the trained network than in the controls?

    ``trained`` and each of ``controls``: ``SelectivityResult.trend_nulls`` (same pictures, same seed,
    so the tuning-quality nulls use the same label permutations draw by draw). Statistic:
    rho(trained) - mean over controls of rho(control); null: the same per null draw. One row per measure.
    """
    rows = []
    for measure, (obs_t, null_t) in trained.items():
        mine = [c[measure] for c in controls if measure in c]
        if not mine:
            continue
        depth = np.arange(len(obs_t))
        draws = min([null_t.shape[1]] + [null.shape[1] for _, null in mine])
        observed = rank_correlation(depth, obs_t) - np.mean([rank_correlation(depth, obs) for obs, _ in mine])
        null = rank_correlation(depth, null_t[:, :draws]) - np.mean(
            [rank_correlation(depth, null[:, :draws]) for _, null in mine], axis=0
        )
        null = null[np.isfinite(null)]
        rows.append(
            {
                "measure": measure,
                "rho": observed,
                "p_rise": exceedance_p_value(observed, null),
                "p_fall": exceedance_p_value(-observed, -null),
                "n_null": len(null),
            }
        )
    return pd.DataFrame(rows, columns=["measure", "rho", "p_rise", "p_fall", "n_null"])
