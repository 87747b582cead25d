"""The paper's claims as a scorecard: each claim, the test that decides it, the effect, p and a verdict.

Pure pandas/numpy on the tables the stages wrote (nothing is recomputed from responses). The rules
that turn numbers into verdicts are fixed here and in docs/science.md ("The scorecard"), never tuned
to a data set:

* a **directional test** (one p for the claimed direction, one for the opposite) is *supported* when
  its p for the claimed direction is below alpha, *contradicted* when its p for the opposite
  direction is, else *inconclusive*;
* a **claim over many cells** (layers x categories or layers x emotions, each with its own
  BH-corrected test) is *supported* when at least half of the cells are significant in the claimed
  direction, *contradicted* when at least half are significant in the opposite one, else
  *inconclusive*;
* a test whose smallest attainable p is not below alpha is *inconclusive* whatever the data, and
  says so.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pandas as pd

from ..base.randomness import random_stream
from .stats import benjamini_hochberg, rank_correlation, rank_p_values

SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "supported", "contradicted", "inconclusive", "not testable"
COLUMNS = ["claim", "network", "test", "effect", "p", "p_opposite", "min_p", "verdict", "note"]


def verdict(p_claimed: float, p_opposite: float, alpha: float, min_p: float = 0.0) -> str:
    """The directional rule: supported / contradicted / inconclusive (see the module docstring)."""
    if not np.isfinite(p_claimed) or min_p >= alpha:
        return INCONCLUSIVE
    if p_claimed < alpha:
        return SUPPORTED
    if np.isfinite(p_opposite) and p_opposite < alpha:
        return CONTRADICTED
    return INCONCLUSIVE


def majority_verdict(claimed: np.ndarray, opposite: np.ndarray) -> str:
    """The many-cells rule on boolean arrays of cells significant in each direction."""
    claimed, opposite = np.asarray(claimed, bool), np.asarray(opposite, bool)
    if len(claimed) == 0:
        return UNTESTABLE
    if claimed.mean() >= 0.5:
        return SUPPORTED
    if opposite.mean() >= 0.5:
        return CONTRADICTED
    return INCONCLUSIVE


def layer_order_test(values: np.ndarray, seed: int = 0, draws: int = 9999) -> dict:
    """Does ``values`` [L] (one per layer, in forward order) rise with depth? Spearman rho with depth
    against every ordering of the layers (all L! when L <= 8, else ``draws`` random orderings plus
    the observed one). Returns rho, p for a rise, p for a fall, and the smallest attainable p."""
    values = np.asarray(values, float)
    keep = np.isfinite(values)
    values, depth = values[keep], np.arange(len(values))[keep]
    if len(values) < 2:
        return {"rho": np.nan, "p_rise": np.nan, "p_fall": np.nan, "min_p": 1.0}
    rho = rank_correlation(depth, values)
    if len(values) <= 8:
        orders = np.array(list(permutations(range(len(values)))))
    else:
        rng = random_stream(seed, "layer-order")
        orders = np.vstack([np.arange(len(values))] + [rng.permutation(len(values)) for _ in range(draws)])
    null = rank_correlation(depth, values[orders].T)
    null = np.where(np.isfinite(null), null, 0.0)
    return {
        "rho": rho,
        "p_rise": float(np.mean(null >= rho - 1e-12)),
        "p_fall": float(np.mean(null <= rho + 1e-12)),
        "min_p": 1.0 / len(orders) if len(values) <= 8 else 1.0 / (draws + 1),
    }


def _row(
    claim: str,
    network: str,
    test: str,
    effect: float,
    p_values: tuple[float, float, float],
    alpha: float,
    note: str = "",
) -> dict:
    """One scorecard row; ``p_values``: (p for the claimed direction, p for the opposite one, the
    smallest attainable p), decided by :func:`verdict`."""
    p, p_opposite, min_p = p_values
    return {
        "claim": claim,
        "network": network,
        "test": test,
        "effect": effect,
        "p": p,
        "p_opposite": p_opposite,
        "min_p": min_p,
        "verdict": verdict(p, p_opposite, alpha, min_p),
        "note": note,
    }


def _cells_row(
    claim: str,
    network: str,
    test: str,
    claimed: np.ndarray,
    opposite: np.ndarray,
    min_p: float,
    alpha: float,
    note: str,
) -> dict:
    """A claim over many cells (each with its own BH-corrected test): the majority rule, and
    inconclusive whatever the data when a cell's smallest attainable p is not below alpha."""
    claimed, opposite = np.asarray(claimed, bool), np.asarray(opposite, bool)
    row = _row(
        claim, network, test, float(claimed.mean()) if len(claimed) else np.nan, (np.nan, np.nan, min_p), alpha, note
    )
    row["verdict"] = INCONCLUSIVE if np.isfinite(min_p) and min_p >= alpha else majority_verdict(claimed, opposite)
    return row


def trend_claims(trends: pd.DataFrame, alpha: float) -> list[dict]:
    """Tuning quality and overlap rise with depth, per network, and more in the trained network."""
    texts = {
        "tuning_quality_excess": "tuning quality (excess over its label-shuffled null) rises with depth",
        "overlap_excess": "cross-dataset overlap (excess over chance) rises with depth",
    }
    rows = []
    for record in trends.itertuples(index=False):
        if record.measure not in texts:
            continue
        claim = texts[record.measure]
        if record.network.startswith("trained - "):
            claim = claim.replace("rises with depth", "rises more steeply than in the random-init controls")
        null = (
            "label permutations applied to every layer"
            if record.measure == "tuning_quality_excess"
            else "exact per-layer overlap nulls"
        )
        rows.append(
            _row(
                claim,
                record.network,
                f"Spearman rho with depth; p from {int(record.n_null)} draws of {null}",
                record.rho,
                (record.p_rise, record.p_fall, 1.0 / (record.n_null + 1)),
                alpha,
            )
        )
    return rows


def overlap_claims(overlap: pd.DataFrame, network: str, alpha: float) -> dict:
    """Cross-dataset overlap above chance in the majority of layer x category cells."""
    below = np.zeros(len(overlap), bool)
    for category in dict.fromkeys(overlap["category"]):
        rows = (overlap["category"] == category).to_numpy()
        below[rows] = benjamini_hochberg(overlap.loc[rows, "p_below"].to_numpy()) < alpha
    above = (overlap["q_value"] < alpha).to_numpy()
    return _cells_row(
        "units keep their preferred category across datasets more than chance",
        network,
        "exact overlap null per layer and category, BH across layers; majority of cells",
        above,
        below,
        np.nan,
        alpha,
        f"{int(above.sum())} of {len(above)} cells above chance, {int(below.sum())} below (q < {alpha})",
    )


def versus_controls(trained: float, controls: list[float], claim: str, test: str, alpha: float) -> dict:
    """Is the trained network's value above every random-init control's? Rank among the K controls."""
    finite = np.asarray([c for c in controls if np.isfinite(c)], float)
    network = f"trained vs {len(finite)} random-init control{'s' if len(finite) != 1 else ''}"
    if not np.isfinite(trained) or len(finite) == 0:
        return {**_row(claim, network, test, np.nan, (np.nan, np.nan, 1.0), alpha), "verdict": UNTESTABLE}
    min_p = 1.0 / (len(finite) + 1)
    note = f"smallest attainable p with {len(finite)} control(s) = {min_p:.3g}"
    return _row(
        claim, network, test, trained - float(np.mean(finite)), (*rank_p_values(trained, finite), min_p), alpha, note
    )


def manipulation_claims(summary: pd.DataFrame, network: str, alpha: float, seed: int = 0) -> list[dict]:
    """Gain and lesion of selective vs random units (own dataset and transfer), and their depth trends."""
    rows = []
    own = summary[summary["train_dataset"] == summary["test_dataset"]]
    rescaled = int(own.get("gain_rescales_readout", pd.Series(False, index=own.index)).fillna(False).astype(bool).sum())
    rescaled_note = (
        f"; {rescaled} of {len(own)} cells manipulate a layer the readout follows directly "
        f"(gain = rescaled head inputs)"
        if rescaled
        else ""
    )
    for kind, p, below, min_p, effect in (
        ("gain", "q_enhance", "q_enhance_below", "min_p_enhance", own["enhanced_f1"] - own["random_enhanced_f1"]),
        ("lesion", "q_lesion", "q_lesion_below", "min_p_lesion", own["random_lesioned_f1"] - own["lesioned_f1"]),
    ):
        verb = (
            "attention gain on selective units improves the heads more"
            if kind == "gain"
            else "lesioning selective units hurts the heads more"
        )
        attainable = float(own[min_p].max()) if len(own) else np.nan
        note = f"smallest attainable p per cell {attainable:.3g}{rescaled_note}"
        claimed = (own[p] < alpha).to_numpy()
        rows.append(
            _cells_row(
                f"{verb} than on random units",
                network,
                "rank among random unit sets per layer and emotion (test split), BH across layers; majority of cells",
                claimed,
                (own[below] < alpha).to_numpy(),
                attainable,
                alpha,
                f"{int(claimed.sum())} of {len(own)} cells q < {alpha}; {note}",
            )
        )
        per_layer = effect.groupby(own["layer"], sort=False).mean()
        trend = layer_order_test(per_layer.to_numpy(), seed)
        rows.append(
            _row(
                f"the {kind} effect (selective minus random) is larger in deeper layers",
                network,
                f"Spearman rho with depth over {len(per_layer)} layers; exact layer-order permutation",
                trend["rho"],
                (trend["p_rise"], trend["p_fall"], trend["min_p"]),
                alpha,
            )
        )
    rows.append(transfer_claim(summary[summary["train_dataset"] != summary["test_dataset"]], network, alpha))
    return rows


def transfer_claim(transfer: pd.DataFrame, network: str, alpha: float) -> dict:
    """Attention gain on selective units helps heads tested on another dataset's pictures (``transfer``:
    the summary rows whose train and test datasets differ; not testable without them)."""
    claim = "attention gain on selective units transfers to another dataset's pictures"
    if transfer.empty:
        test = "as for the gain, heads tested on the other dataset"
        row = _row(claim, network, test, np.nan, (np.nan, np.nan, np.nan), alpha, "needs two datasets")
        return {**row, "verdict": UNTESTABLE}
    claimed = (transfer["q_enhance"] < alpha).to_numpy()
    return _cells_row(
        claim,
        network,
        "rank among random unit sets, heads tested on the other dataset; majority of cells",
        claimed,
        (transfer["q_enhance_below"] < alpha).to_numpy(),
        float(transfer["min_p_enhance"].max()),
        alpha,
        f"{int(claimed.sum())} of {len(transfer)} cells q < {alpha}",
    )


def scorecard(
    trends: pd.DataFrame | None,
    overlap: pd.DataFrame | None,
    layers: pd.DataFrame | None,
    summary: pd.DataFrame | None,
    controls: list[dict],
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper's claims tested on a run's tables (claims.csv).

    Parameters
    ----------
    trends, overlap, layers, summary : DataFrame or None
        The run's trends.csv, overlap.csv, layers.csv and manipulation_summary.csv (None: not run).
    controls : list[dict]
        One dict per random-init control: ``name`` and its ``overlap``, ``layers`` and ``summary``
        tables (any may be None).
    alpha : float
        False discovery rate of every test.
    seed : int
        Seeds the exact layer-order permutations.

    Returns
    -------
    DataFrame
        One row per claim and network: claim, network, test, effect, p (both directions), smallest
        attainable p, verdict (supported, contradicted, inconclusive, not testable), note.
    """
    rows = trend_claims(trends, alpha) if trends is not None else []
    if overlap is not None:
        rows.append(overlap_claims(overlap, "trained", alpha))
        rows += [overlap_claims(c["overlap"], c["name"], alpha) for c in controls if c.get("overlap") is not None]
        mean_excess = [c["overlap"]["jaccard_excess"].mean() for c in controls if c.get("overlap") is not None]
        rows.append(
            versus_controls(
                overlap["jaccard_excess"].mean(),
                mean_excess,
                "cross-dataset overlap is above the random-init controls'",
                "mean Jaccard excess over chance (layers x categories), rank among the controls",
                alpha,
            )
        )
    if layers is not None and "tuning_quality_excess" in layers:
        excess = [
            c["layers"]["tuning_quality_excess"].mean()
            for c in controls
            if c.get("layers") is not None and "tuning_quality_excess" in c["layers"]
        ]
        rows.append(
            versus_controls(
                layers["tuning_quality_excess"].mean(),
                excess,
                "tuning quality is above the random-init controls'",
                "mean tuning-quality excess over its null (layers x sides), rank among the controls",
                alpha,
            )
        )
    if summary is not None and not summary.empty:
        rows += manipulation_claims(summary, "trained", alpha, seed)
        for control in controls:
            if control.get("summary") is not None and not control["summary"].empty:
                rows += manipulation_claims(control["summary"], control["name"], alpha, seed)
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {claim: i for i, claim in enumerate(dict.fromkeys(table["claim"]))}
    return table.sort_values("claim", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
