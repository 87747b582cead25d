"""Network-level tests of the selectivity measures, each against the same statistic recomputed under
every label shuffle (one shuffle relabels all units of all layers, so the units' correlations and the
layers' dependence are kept): the mean overlap excess over layers, and the depth trends (Spearman rho
with depth) of the per-layer overlap excess and tuning-quality excess. trends.csv holds one row per
network, measure and statistic; the scorecard (:mod:`emoselect.analysis.claims`) reads it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .stats import exceedance_p_value, rank_correlation

LEVEL, TREND = "mean over layers", "Spearman rho with depth"
COLUMNS = ["measure", "statistic", "value", "z", "p_above", "p_below", "n_null", "min_p"]


def normal_score(p_above: float, n_null: int) -> float:
    """A permutation p as a normal score: the probit of its mid-p, Phi^-1(1 - (p - 0.5 / (n + 1))).
    Under the null the observed statistic's rank among the draws is uniform whatever the null's
    shape, so this score is standard normal for every network (what the trained network and its
    controls are compared on); it is at most Phi^-1(1 - 0.5 / (n + 1)) (3.29 with 999 shuffles)."""
    if not np.isfinite(p_above) or n_null < 1:
        return float("nan")
    return float(stats.norm.isf(p_above - 0.5 / (n_null + 1)))


def _row(measure: str, statistic: str, value: float, draws: np.ndarray) -> dict:
    draws = draws[np.isfinite(draws)]
    p_above = exceedance_p_value(value, draws)
    return {
        "measure": measure,
        "statistic": statistic,
        "value": value,
        "z": normal_score(p_above, len(draws)),
        "p_above": p_above,
        "p_below": exceedance_p_value(-value, -draws),
        "n_null": len(draws),
        "min_p": 1.0 / (len(draws) + 1),
    }


def _level_row(measure: str, observed: np.ndarray, null: np.ndarray) -> dict:
    """The mean of a per-layer measure ``observed`` [L] against its label-shuffle draws ``null`` [L, P]."""
    value = float(np.nanmean(observed)) if np.isfinite(observed).any() else np.nan
    with warnings.catch_warnings():  # a draw where every layer is NaN stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        draws = np.nanmean(null, axis=0) if null.size else np.empty(0)
    return _row(measure, LEVEL, value, draws)


def _trend_row(measure: str, observed: np.ndarray, null: np.ndarray) -> dict:
    """The Spearman rho of a per-layer measure with depth against its label-shuffle draws."""
    depth = np.arange(len(observed))
    return _row(measure, TREND, float(rank_correlation(depth, observed)), rank_correlation(depth, null))


def network_tests(
    layers: pd.DataFrame,
    overlap: pd.DataFrame,
    sites: list[str],
    tuning_nulls: list[list[np.ndarray]],
    overlap_nulls: list[np.ndarray],
    significant: list[tuple[float, np.ndarray] | None] | None = None,
) -> pd.DataFrame:
    """trends.csv's rows of one network.

    Parameters
    ----------
    layers, overlap : DataFrame
        The network's layers.csv and overlap.csv (``tuning_quality_excess``, ``jaccard_excess``).
    sites : list[str]
        The layers in forward order (their position is the depth).
    tuning_nulls : list[list[ndarray]]
        Per side, per layer, the tuning quality under each label shuffle [P] (the same shuffles for
        every layer).
    overlap_nulls : list[ndarray]
        Per layer, the mean Jaccard excess over categories under each shuffle [P].
    significant : list, optional
        Per layer, (observed, draws [P]) of the mean overlap excess among units significant on both
        sides, or None where not computed (adds the level row ``overlap_excess_significant``).

    Returns
    -------
    DataFrame
        Columns ``measure`` (overlap_excess, tuning_quality_excess, overlap_excess_significant),
        ``statistic`` (mean over
        layers; Spearman rho with depth, from 3 layers), ``value``, ``z`` (the permutation p as a normal
        score, :func:`normal_score`), one-sided permutation p-values ``p_above`` and ``p_below`` ((1 + #{draw
        >= value}) / (1 + n_null)), ``n_null`` (shuffles) and ``min_p`` (1 / (n_null + 1)).
    """
    per_layer = {}
    if overlap_nulls and all(len(null) for null in overlap_nulls):
        observed = overlap.groupby("layer", sort=False)["jaccard_excess"].mean().reindex(sites).to_numpy()
        per_layer["overlap_excess"] = (observed, np.stack(overlap_nulls))
    if tuning_nulls and all(len(side) == len(sites) for side in tuning_nulls) and "tuning_quality_excess" in layers:
        observed = layers.groupby("layer", sort=False)["tuning_quality_excess"].mean().reindex(sites).to_numpy()
        centred = [np.stack(side) - np.stack(side).mean(axis=1, keepdims=True) for side in tuning_nulls]
        per_layer["tuning_quality_excess"] = (observed, np.mean(centred, axis=0))  # [L, P], sides averaged
    rows = []
    for measure, (observed, null) in per_layer.items():
        rows.append(_level_row(measure, observed, null))
        if len(sites) >= 3:
            rows.append(_trend_row(measure, observed, null))
    if significant and all(s is not None and len(s[1]) for s in significant):
        observed = np.array([s[0] for s in significant if s is not None])
        null = np.stack([s[1] for s in significant if s is not None])
        rows.append(_level_row("overlap_excess_significant", observed, null))
    return pd.DataFrame(rows, columns=COLUMNS)
