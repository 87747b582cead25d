"""The paper's claims as a scorecard: each claim, the one statistic that decides it, its p, a
family-wise correction and a verdict.

Pure pandas/numpy on the tables the stages wrote (nothing is recomputed from responses). The rules
are fixed here and in docs/science.md ("The scorecard"), never tuned to a data set:

* each selectivity claim has **one pre-specified statistic** with a label-permutation null
  (trends.csv, :mod:`emoselect.analysis.trends`); the trained network's comparison with its
  random-init controls uses the controls' spread as the null (Crawford-Howell for K < 20 controls,
  the rank among them from K = 20);
* the p-values of one network's claims (and, separately, of the trained-vs-controls claims) are
  **Holm-adjusted**; a claim is *supported* when its adjusted p in the claimed direction is below
  alpha, *contradicted* when its adjusted p in the opposite direction is (an overlap claim is tested
  in the upper tail only and is never contradicted), else *inconclusive*;
* a test whose smallest attainable p is not below alpha is *inconclusive* whatever the data, and
  says so;
* the manipulation claims over many cells (layers x emotions, each with its own BH-corrected test)
  still use the majority rule: *supported* when at least half of the cells are significant in the
  claimed direction, *contradicted* when at least half are in the opposite one.
"""

from __future__ import annotations

from itertools import permutations
from math import factorial

import numpy as np
import pandas as pd

from ..base.randomness import random_stream
from .stats import crawford_howell, crawford_howell_p_at, holm, normality_p, rank_correlation, rank_p_values
from .trends import LEVEL, TREND

SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "supported", "contradicted", "inconclusive", "not testable"
COLUMNS = ["claim", "network", "test", "effect", "p", "p_opposite", "p_holm", "p_opposite_holm", "min_p", "verdict",
           "note"]  # fmt: skip
RANK_FROM = 20  # from this many controls, the rank among them replaces the Crawford-Howell t-test
LARGE = 3.0  # the effect size (control SDs) at which the notes say what the comparison can reach


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


SINGULAR = {"halves": "half", "datasets": "dataset"}


def _pair_word(overlap: pd.DataFrame | None) -> str:
    """'halves' when the pair is a split-half of one dataset (what is tested is then agreement across
    halves of one picture set, not across picture sets), else 'datasets'."""
    if overlap is not None and len(overlap) and str(overlap["dataset_a"].iloc[0]).endswith("/half1"):
        return "halves"
    return "datasets"


def _texts(pair: str) -> dict[tuple[str, str], str]:
    """The selectivity claims of one network, by (trends.csv measure, statistic)."""
    one = SINGULAR[pair]
    return {
        ("overlap_excess", LEVEL): f"units keep their preferred category across {pair} more than chance",
        ("overlap_excess_significant", LEVEL): (
            f"units significant in both {pair} keep their preferred category more than chance"
        ),
        ("overlap_excess", TREND): f"cross-{one} overlap (excess over chance) rises with depth",
        ("tuning_quality_excess", TREND): "tuning quality (excess over its label-shuffled null) rises with depth",
    }


def _versus_texts(pair: str) -> dict[tuple[str, str], str]:
    """The trained-vs-controls claims, by (trends.csv measure, statistic)."""
    one = SINGULAR[pair]
    return {
        ("overlap_excess", LEVEL): f"cross-{one} overlap is above the random-init controls'",
        ("tuning_quality_excess", LEVEL): "tuning quality is above the random-init controls'",
        ("overlap_excess", TREND): f"cross-{one} overlap rises more steeply than in the random-init controls",
        ("tuning_quality_excess", TREND): "tuning quality rises more steeply than in the random-init controls",
    }


def _cell_counts(overlap: pd.DataFrame | None, alpha: float) -> str:
    """Descriptive: how many layer x category cells pass alpha under the label shuffles and under the
    independent-units reference."""
    if overlap is None or "p_independent" not in overlap:
        return ""
    shuffled = int((overlap["p_value"] < alpha).sum())
    independent = int((overlap["p_independent"] < alpha).sum())
    return (
        f"descriptive: {shuffled} of {len(overlap)} layer x category cells p < {alpha} under the label shuffles, "
        f"{independent} under the independent-units reference"
    )


def selectivity_claims(trends: pd.DataFrame, overlaps: dict[str, pd.DataFrame | None], alpha: float) -> list[dict]:
    """Each network's selectivity claims from its trends.csv rows (``overlaps``: each network's
    overlap.csv, for the pair's wording and the descriptive cell counts)."""
    rows = []
    for network in dict.fromkeys(trends["network"]):
        mine = trends[trends["network"] == network]
        overlap = overlaps.get(network)
        for (measure, statistic), claim in _texts(_pair_word(overlap)).items():
            found = mine[(mine["measure"] == measure) & (mine["statistic"] == statistic)]
            if found.empty:
                continue
            test = found.iloc[0]
            level = statistic == LEVEL
            what = f"mean {measure} over layers and categories" if level else f"{TREND} of each layer's {measure}"
            rows.append(
                _row(
                    claim,
                    network,
                    f"{what}; label-permutation null ({int(test['n_null'])} shuffles of all units and layers at once)",
                    float(test["value"]),
                    (float(test["p_above"]), np.nan if level else float(test["p_below"]), float(test["min_p"])),
                    alpha,
                    _cell_counts(overlap, alpha) if measure == "overlap_excess" and level else "",
                )
            )
    return rows


def versus_controls(trained: float, controls: list[float], claim: str, test: str, alpha: float) -> dict:
    """Is the trained network's value above the population its K random-init controls come from?
    Crawford-Howell t (K - 1 df; normal controls assumed, Shapiro-Wilk p in the note) for K < 20,
    the rank among the controls from K = 20 (smallest attainable p 1 / (K + 1))."""
    finite = np.asarray([c for c in controls if np.isfinite(c)], float)
    k = len(finite)
    network = f"trained vs {k} random-init control{'s' if k != 1 else ''}"
    if not np.isfinite(trained) or k < 2:
        note = "needs at least 2 random-init controls (`--controls K`)"
        return {**_row(claim, network, test, np.nan, (np.nan, np.nan, 1.0), alpha, note), "verdict": UNTESTABLE}
    effect = trained - float(np.mean(finite))
    if k >= RANK_FROM:
        min_p = 1.0 / (k + 1)
        note = f"rank among {k} controls; smallest attainable p = {min_p:.3g}"
        return _row(claim, network, f"{test}; rank among the controls", effect, (*rank_p_values(trained, finite), min_p),
                    alpha, note)  # fmt: skip
    ch = crawford_howell(trained, finite)
    normal = normality_p(finite)
    note = (
        f"{ch['z']:.2f} control SDs from the controls' mean (t = {ch['t']:.2f}, {k - 1} df); with {k} controls "
        f"an effect of {LARGE:g} SDs gives p = {crawford_howell_p_at(LARGE, k):.3g}"
        + (f"; controls' normality (Shapiro-Wilk) p = {normal:.2g}" if np.isfinite(normal) else "")
    )
    return _row(claim, network, f"{test}; Crawford-Howell t against the controls", effect,
                (ch["p_above"], ch["p_below"], 0.0), alpha, note)  # fmt: skip


def comparison_claims(trends: pd.DataFrame, pair: str, alpha: float) -> list[dict]:
    """The trained network (trends.csv rows ``trained``) against its controls (every other network),
    each network's statistic as the normal score of its own permutation p (``z``: standard normal
    under the null whatever the shape of a network's null, so a network whose units are more
    correlated, with a wider null, is not favoured by chance, and Crawford-Howell's normality holds)."""
    rows = []
    trained = trends[trends["network"] == "trained"]
    controls = trends[trends["network"] != "trained"]
    for (measure, statistic), claim in _versus_texts(pair).items():
        mine = trained[(trained["measure"] == measure) & (trained["statistic"] == statistic)]
        theirs = controls[(controls["measure"] == measure) & (controls["statistic"] == statistic)]
        if mine.empty or theirs.empty:
            continue
        what = f"{measure}, {statistic}, as the normal score of each network's own permutation p (z)"
        rows.append(versus_controls(float(mine["z"].iloc[0]), list(theirs["z"]), claim, what, alpha))
    return rows


def with_holm(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm-adjust the p-values of each network's claims (each direction on its own) and decide the
    verdicts from the adjusted ones; claims without a single p (the majority rule) keep theirs, and
    claims whose smallest attainable p is not below alpha are left out of the family (they can never
    conclude, so counting them would only cost the others power)."""
    table = table.copy()
    table["p_holm"], table["p_opposite_holm"] = np.nan, np.nan
    can_conclude = ~(table["min_p"].astype(float) >= alpha)  # (Tarone) a test that cannot reach alpha costs no power
    for _, rows in table[can_conclude].groupby("network", sort=False):
        index = rows.index
        table.loc[index, "p_holm"] = holm(rows["p"].to_numpy(float))
        table.loc[index, "p_opposite_holm"] = holm(rows["p_opposite"].to_numpy(float))
    single = table["p"].notna() & (table["verdict"] != UNTESTABLE)
    table.loc[single, "verdict"] = [
        verdict(r.p_holm, r.p_opposite_holm, alpha, r.min_p) for r in table[single].itertuples(index=False)
    ]
    return table


def stratified_order_test(values: np.ndarray, seed: int = 0, draws: int = 9999, network: str = "") -> dict:
    """Do ``values`` [S, L] (one row per stratum, e.g. emotion; one column per layer in forward order;
    NaN = no value) rise with depth within the strata? The mean over strata of Spearman's rho with
    depth against the layers permuted within each stratum independently: every combination where
    there are at most 100,000 (the product of each stratum's L!; 4 layers and 3 emotions: 13,824),
    else ``draws`` random ones plus the observed one (stream keyed by ``network``). Strata with fewer
    than 2 values are left out. Returns rho (the mean), p for a rise, p for a fall and the smallest
    attainable p."""
    strata = []
    for row in np.atleast_2d(np.asarray(values, float)):
        keep = np.isfinite(row)
        if keep.sum() >= 2:
            strata.append((np.arange(len(row))[keep], row[keep]))
    if not strata:
        return {"rho": np.nan, "p_rise": np.nan, "p_fall": np.nan, "min_p": 1.0}
    observed = float(np.mean([rank_correlation(depth, row) for depth, row in strata]))
    sizes = [len(row) for _, row in strata]
    if max(sizes) <= 8 and np.prod([float(factorial(n)) for n in sizes]) <= 100_000:
        null = np.zeros(1)
        for depth, row in strata:  # every ordering of this stratum, added to every combination so far
            orders = np.array(list(permutations(range(len(row)))))
            rho = np.nan_to_num(rank_correlation(depth, row[orders].T))
            null = (null[:, None] + rho[None, :]).ravel()
        null, min_p = null / len(strata), 1.0 / len(null)
    else:
        rng = random_stream(seed, "layer-order", network)
        total = np.zeros(draws)
        for depth, row in strata:
            orders = np.stack([rng.permutation(len(row)) for _ in range(draws)])
            total += np.nan_to_num(rank_correlation(depth, row[orders].T))
        null, min_p = np.concatenate([[observed], total / len(strata)]), 1.0 / (draws + 1)
    return {
        "rho": observed,
        "p_rise": float(np.mean(null >= observed - 1e-12)),
        "p_fall": float(np.mean(null <= observed + 1e-12)),
        "min_p": min_p,
    }


# the manipulation claims: (kind, p and opposite q columns, smallest p, excess column, what is claimed)
MANIPULATIONS = (
    ("enhancement", "q_enhance", "q_enhance_below", "min_p_enhance", "enhance_excess",
     "enhancing selective units (gain above 1) raises the heads' AUC more"),
    ("lesion", "q_lesion", "q_lesion_below", "min_p_lesion", "lesion_excess",
     "lesioning selective units lowers the heads' AUC more"),
    ("mean-ablation", "q_ablate", "q_ablate_below", "min_p_lesion", "ablation_excess",
     "mean-ablating selective units lowers the heads' AUC more"),
)  # fmt: skip
NOT_APPLICABLE = (
    "not applicable: no head recognises its emotion above chance on its test pictures (AUC against "
    "999 label permutations)"
)


def manipulation_claims(summary: pd.DataFrame, network: str, alpha: float, seed: int = 0) -> list[dict]:
    """Enhancement, lesion and mean-ablation of selective vs random units on the heads' AUC (own
    dataset; cells whose intact head is above chance), their depth trends, and transfer."""
    rows = []
    own = summary[summary["train_dataset"] == summary["test_dataset"]]
    applicable = own["applicable"].fillna(False).astype(bool) if "applicable" in own else pd.Series(True, own.index)
    tested = own[applicable.to_numpy()]
    rescaled = int(
        tested.get("gain_rescales_readout", pd.Series(False, index=tested.index)).fillna(False).astype(bool).sum()
    )
    rescaled_note = (
        f"; {rescaled} of {len(tested)} cells manipulate a layer the readout follows directly "
        f"(gain = rescaled head inputs)"
        if rescaled
        else ""
    )
    cells = f"{len(tested)} of {len(own)} cells have a head above chance"
    for kind, p, below, min_p, excess, claim in MANIPULATIONS:
        attainable = float(tested[min_p].max()) if len(tested) else np.nan
        claimed = (tested[p] < alpha).to_numpy()
        test = (
            "AUC change, rank among random unit sets of the same size per layer and emotion (test split; "
            "sequential Monte Carlo p), BH across layers; majority of the cells with a head above chance"
        )
        if tested.empty:
            row = _cells_row(
                f"{claim} than on random units", network, test, claimed, claimed, np.nan, alpha, NOT_APPLICABLE
            )
        else:
            note = f"{int(claimed.sum())} of {len(tested)} tested cells q < {alpha}; {cells}; smallest attainable p per cell {attainable:.3g}{rescaled_note}"
            row = _cells_row(
                f"{claim} than on random units",
                network,
                test,
                claimed,
                (tested[below] < alpha).to_numpy(),
                attainable,
                alpha,
                note,
            )
        rows.append(row)
        layers = list(dict.fromkeys(own["layer"]))
        rows.append(_trend_row(kind, tested, excess, layers, network, alpha, seed, cells))
    rows.append(transfer_claim(summary[summary["train_dataset"] != summary["test_dataset"]], network, alpha))
    return rows


def _trend_row(
    kind: str, tested: pd.DataFrame, excess: str, layers: list[str], network: str, alpha: float, seed: int, cells: str
) -> dict:
    """The depth-trend claim of one manipulation ``kind``: Spearman rho of the ``excess`` column (the
    selective set's effect minus the size-matched random sets', per emotion and layer of the
    ``tested`` cells) with depth over ``layers``, against layer-order permutations within each
    emotion."""
    grid = tested.pivot_table(index="emotion", columns="layer", values=excess, aggfunc="mean", sort=False)
    grid = grid.reindex(columns=layers)
    trend = stratified_order_test(grid.to_numpy(), seed, network=network)
    test = (
        f"Spearman rho with depth of the excess over size-matched random sets, {grid.shape[1]} layers, mean over "
        f"{grid.shape[0]} emotions; layer orders permuted within each emotion (all orders where at most 100,000)"
    )
    note = NOT_APPLICABLE if tested.empty else f"per-unit excess in manipulation_summary.csv; {cells}"
    claim = f"the {kind} effect (selective minus random sets of the same size) is larger in deeper layers"
    return _row(claim, network, test, trend["rho"], (trend["p_rise"], trend["p_fall"], trend["min_p"]), alpha, note)


def transfer_claim(transfer: pd.DataFrame, network: str, alpha: float) -> dict:
    """Attention gain on selective units helps heads tested on another dataset's pictures (``transfer``:
    the summary rows whose train and test datasets differ; not testable without them)."""
    claim = "enhancing selective units transfers to another dataset's pictures"
    if transfer.empty:
        test = "as for the gain, heads tested on the other dataset"
        row = _row(claim, network, test, np.nan, (np.nan, np.nan, np.nan), alpha, "needs two datasets")
        return {**row, "verdict": UNTESTABLE}
    if "applicable" in transfer:
        transfer = transfer[transfer["applicable"].fillna(False).astype(bool).to_numpy()]
    test = "AUC change as for the enhancement, heads tested on the other dataset; majority of cells"
    claimed = (transfer["q_enhance"] < alpha).to_numpy()
    if transfer.empty:
        return _cells_row(claim, network, test, claimed, claimed, np.nan, alpha, NOT_APPLICABLE)
    return _cells_row(
        claim,
        network,
        test,
        claimed,
        (transfer["q_enhance_below"] < alpha).to_numpy(),
        float(transfer["min_p_enhance"].max()),
        alpha,
        f"{int(claimed.sum())} of {len(transfer)} cells with a head above chance q < {alpha}",
    )


def scorecard(
    trends: pd.DataFrame | None,
    overlap: pd.DataFrame | None,
    summary: pd.DataFrame | None,
    controls: list[dict],
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper's claims tested on a run's tables (claims.csv).

    Parameters
    ----------
    trends : DataFrame or None
        The run's trends.csv: the network-level tests of the trained network (``network`` =
        ``trained``) and of each control (None: selectivity not run).
    overlap, summary : DataFrame or None
        The run's overlap.csv (wording, descriptive counts) and manipulation_summary.csv (None: not run).
    controls : list[dict]
        One dict per random-init control: ``name`` and its ``overlap`` and ``summary`` tables (any
        may be None).
    alpha : float
        Family-wise error rate of each network's claims (Holm).
    seed : int
        Seeds the layer-order permutations of more than 8 layers.

    Returns
    -------
    DataFrame
        One row per claim and network: claim, network, test, effect, p (both directions), their
        Holm-adjusted values, smallest attainable p, verdict (supported, contradicted,
        inconclusive, not testable), note.
    """
    rows = []
    if trends is not None and not trends.empty:
        overlaps = {"trained": overlap, **{c["name"]: c.get("overlap") for c in controls}}
        rows += selectivity_claims(trends, overlaps, alpha)
        if controls:
            rows += comparison_claims(trends, _pair_word(overlap), alpha)
    if summary is not None and not summary.empty:
        rows += manipulation_claims(summary, "trained", alpha, seed)
        for control in controls:
            if control.get("summary") is not None and not control["summary"].empty:
                rows += manipulation_claims(control["summary"], control["name"], alpha, seed)
    table = with_holm(pd.DataFrame(rows, columns=[c for c in COLUMNS if "holm" not in c]), alpha)[COLUMNS]
    order = {claim: i for i, claim in enumerate(dict.fromkeys(table["claim"]))}
    return table.sort_values("claim", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
