"""Sweeps: the whole analysis for several networks on the same pictures, compared in one table and page.

A sweep file (YAML) names the picture sets, the networks and the options::

    datasets: {oasis: ../shared/data/oasis}          # paths relative to the sweep file
    networks:
      vgg16: {model: vgg16, weights: ../shared/weights/vgg16_imagenet_features.pth}
      vgg16-random: {model: vgg16, weights: random}
    extract: {limit: 40}                             # any `emoselect extract` option (config.yaml names)
    selectivity: {null_permutations: 999}                  # any `emoselect selectivity` option
    manipulation: {profile: quick}                   # any `emoselect manipulate` option; false: skip
    controls: 2                                      # random-init controls per network

Each network gets its own run folder ``SWEEP/<name>/`` (the same pictures and splits: the same
datasets and seed); a network whose folder finished with the same options is reused, so rerunning a
sweep computes only what changed or was added. Then ``SWEEP/sweep.csv`` (one row per network, layer
and measure, and one per claim) and ``SWEEP/sweep.html`` (measures against relative depth, one line
per network, its random-init controls as a band; the claims side by side).

Networks run one after another in this process (``inline``), or through submitit (``local``:
processes on this machine; ``slurm``: job arrays), cut finer: a job per network up to selectivity
(:func:`prepare_network`), then its manipulation shards — one block of conditions each (run folder
x layer x category x chunk of unit sets) — as jobs that only fill content-keyed caches
(:func:`fill_shards`), then the merge in this process (:func:`finish_network`: the tables, claims and
report from the caches; then the sweep's table and page). A sharded sweep's tables equal an inline one's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..analysis.experiments import CHOSEN
from ..analysis.records import read_table
from ..base.files import write_csv_atomic
from ..base.problems import InputError
from ..output import figures
from ..output.report import write_sweep_page
from ..run.config import Cluster
from ..run.folder import RunFolder
from .cluster import _sharded
from .run import run_all
from .sweep_file import Sweep, _finished, _stamp, read_sweep


@dataclass
class SweepResult:
    """What a sweep did: per network ``computed`` or ``reused`` and its seconds; the tables and page."""

    folder: Path
    status: dict[str, tuple[str, float]]
    table: pd.DataFrame
    page: Path


def run_network(source: str, name: str, out: str, limit: int | None = None, progress: bool = False) -> str:
    """One network of a sweep file into ``out/name``, all in this process: its whole analysis, then
    its ``sweep-entry.json`` (the options' fingerprint that marks it finished). Returns ``name``."""
    sweep = read_sweep(source, limit)
    entry = sweep.networks[name]
    run = Path(out) / name
    (run / "sweep-entry.json").unlink(missing_ok=True)
    run_all(entry.extract, run, entry.selectivity, entry.manipulation, controls=entry.controls, progress=progress)
    _stamp(run, sweep, name)
    return name


def run_sweep(sweep: Sweep, out: str | Path, progress: bool = True, cluster: Cluster | None = None) -> SweepResult:
    """Run (or reuse) every network of a sweep, then write sweep.csv, the figure and sweep.html.

    Parameters
    ----------
    sweep : Sweep
        From :func:`read_sweep`.
    out : path
        The sweep folder (one run folder per network inside).
    progress : bool
        Show progress bars (inline only).
    cluster : Cluster, optional
        Where the networks run (default: inline, one after another in this process).

    Returns
    -------
    SweepResult
        Status per network, the sweep table and the page's path. Networks that failed (after the
        retries) are an :class:`InputError` naming each with its log, raised after the finished ones'
        table and page are written.
    """
    folder, cluster = Path(out), cluster or Cluster()
    status: dict[str, tuple[str, float]] = {}
    todo = [name for name in sweep.networks if not _finished(folder / name, sweep.record(name))]
    status.update({name: ("reused", 0.0) for name in sweep.networks if name not in todo})
    start, failed = time.time(), {}
    if cluster.executor == "inline":
        for name in todo:
            run_network(str(sweep.source), name, str(folder), sweep.limit, progress)
            status[name] = ("computed", time.time() - start)
            start = time.time()
    elif todo:
        failed = _sharded(sweep, todo, folder, cluster)
        status.update({name: ("computed", time.time() - start) for name in todo if name not in failed})
    done = [name for name in sweep.networks if name in status]
    table = sweep_table(folder, done)
    write_csv_atomic(folder / "sweep.csv", table)
    figures.sweep(table, folder / "figures" / "sweep.png")
    page = write_sweep_page(folder, table, status)
    if failed:
        raise InputError("; ".join(f"network {name} failed: {why}" for name, why in failed.items()))
    return SweepResult(folder, status, table, page)


def _layer_measures(run: Path, alpha: float = 0.05) -> dict[str, pd.DataFrame]:
    """{measure: one row per layer} of one run folder (a network or a control), each table read once:
    ``value`` and the cells behind it (``n_cells``, ``n_significant``, ``q_min``).

    tuning_quality_excess: tuning quality minus its label-shuffled null, mean of the two sides
    (significant: p < alpha, not corrected); overlap_excess: Jaccard minus its chance value at the sets' sizes, mean over
    categories (significant: permutation p, BH q < alpha); enhance_excess / lesion_excess: how much more the
    best enhancement raises / the lesion lowers the test AUC with the selective units (or, with
    ``--gain-form tuning``, the tuning gains) than with random sets of their size, mean over emotions
    and own-dataset heads (descriptive; significant: a head above chance and q < alpha)."""

    def per_layer(rows: pd.DataFrame, value: str, significant: pd.Series, q: pd.Series | None) -> pd.DataFrame:
        frame = rows.assign(value=rows[value], significant=significant, q=q if q is not None else float("nan"))
        grouped = frame.groupby("layer", sort=False)
        return pd.DataFrame(
            {
                "value": grouped["value"].mean(),
                "n_cells": grouped.size(),
                "n_significant": grouped["significant"].sum().astype(int),
                "q_min": grouped["q"].min(),
            }
        )

    out, folder = {}, RunFolder(run)
    layers = folder.table("layers.csv")
    if "tuning_quality_excess" in layers:
        p = layers.get("p_tuning_quality", pd.Series(float("nan"), index=layers.index))
        out["tuning_quality_excess"] = per_layer(layers, "tuning_quality_excess", p < alpha, None)
    overlap = folder.table("overlap.csv")
    out["overlap_excess"] = per_layer(overlap, "jaccard_excess", overlap["q_value"] < alpha, overlap["q_value"])
    summary = folder.optional_table("manipulation_summary.csv")
    if summary is not None:
        chosen = summary["units"].isin(CHOSEN)  # the channels form, or the tuning form
        own = summary[(summary["train_dataset"] == summary["test_dataset"]) & chosen]
        tested = own["applicable"].fillna(False).astype(bool) if "applicable" in own else True
        for measure, value, q in (("enhance_excess", "enhance_excess", "q_enhance"),
                                  ("lesion_excess", "lesion_excess", "q_lesion")):  # fmt: skip
            out[measure] = per_layer(own, value, tested & (own[q] < alpha), own[q])
    return out


def sweep_table(folder: str | Path, names: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """sweep.csv: one row per network, layer and measure (relative depth, value, cells, significant
    cells, smallest q, the random-init controls' min/mean/max), then one row per claim.

    Parameters
    ----------
    folder : path
        The sweep folder.
    names : list[str]
        The networks (run folders inside ``folder``), in order.
    alpha : float
        Significance level for counting cells.

    Returns
    -------
    DataFrame
        Columns: network, model, weights, layer, relative_depth, measure, value, n_cells,
        n_significant, q_min, control_min, control_mean, control_max, claim, verdict, p.
    """
    rows = []
    for name in names:
        run = Path(folder) / name
        network = yaml.safe_load((run / "config.yaml").read_text())["network"]
        depth = RunFolder(run).table("layers.csv").drop_duplicates("layer").set_index("layer")["relative_depth"]
        own = _layer_measures(run, alpha)
        controls = [_layer_measures(control.path, alpha) for control in RunFolder(run).controls]
        for measure, table in own.items():
            for layer, cells in table.iterrows():
                others = pd.Series([c[measure]["value"].get(layer) for c in controls if measure in c], dtype=float)
                others = others.dropna()
                rows.append({
                    "network": name, "model": network["model"], "weights": network["weights"], "layer": layer,
                    "relative_depth": depth.get(layer), "measure": measure, "value": cells["value"],
                    "n_cells": int(cells["n_cells"]), "n_significant": int(cells["n_significant"]),
                    "q_min": cells["q_min"],
                    "control_min": others.min() if len(others) else None,
                    "control_mean": others.mean() if len(others) else None,
                    "control_max": others.max() if len(others) else None,
                })  # fmt: skip
        claims_path = run / "claims.csv"
        for claim in read_table(claims_path).itertuples() if claims_path.is_file() else []:
            rows.append({
                "network": name, "model": network["model"], "weights": network["weights"], "measure": "claim",
                "value": claim.effect, "claim": f"{claim.network}: {claim.claim}", "verdict": claim.verdict,
                "p": claim.p,
            })  # fmt: skip
    columns = ["network", "model", "weights", "layer", "relative_depth", "measure", "value", "n_cells", "n_significant",
               "q_min", "control_min", "control_mean", "control_max", "claim", "verdict", "p"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
