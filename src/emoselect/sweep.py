"""Sweeps: the whole analysis for several networks on the same pictures, compared in one table and page.

A sweep file (YAML) names the picture sets, the networks and the options::

    datasets: {oasis: ../shared/data/oasis}          # paths relative to the sweep file
    networks:
      vgg16: {model: vgg16, weights: ../shared/weights/vgg16_imagenet_features.pth}
      vgg16-random: {model: vgg16, weights: random}
    extract: {limit: 40}                             # any `emoselect extract` option (config.yaml names)
    selectivity: {tuning_null: 200}                  # any `emoselect selectivity` option
    manipulation: {profile: quick}                   # any `emoselect manipulate` option; false: skip
    controls: 2                                      # random-init controls per network

Each network gets its own run folder ``SWEEP/<name>/`` (the same pictures and splits: the same
datasets and seed); a network whose folder finished with the same options is reused, so rerunning a
sweep computes only what changed or was added. Then ``SWEEP/sweep.csv`` (one row per network, layer
and measure, and one per claim) and ``SWEEP/sweep.html`` (measures against relative depth, one line
per network, its random-init controls as a band; the claims side by side).

Networks run one after another in this process, or as jobs through submitit (``local``: one
process each on this machine; ``slurm``: a job array), one job per network; every job fills its own
run folder and the shared caches with atomic writes, and this process then writes the table and page.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from . import figures, manifest
from .config import ExtractOptions
from .experiments import ManipulationOptions
from .files import write_csv_atomic, write_text_atomic
from .options import as_dict, from_dict
from .pipeline import control_folders, run_all
from .problems import InputError
from .records import read_table
from .report import write_sweep_page
from .selectivity import SelectivityOptions
from .stimuli import check_dataset_name

SWEEP_KEYS = ("datasets", "networks", "extract", "selectivity", "manipulation", "controls")


@dataclass
class Sweep:
    """A parsed sweep file: one options record set per network (``networks`` name -> (extract,
    selectivity, manipulation or None, controls))."""

    source: Path
    networks: dict[str, tuple[ExtractOptions, SelectivityOptions, ManipulationOptions | None, int]]
    limit: int | None = None

    def record(self, name: str) -> dict:
        """A network's options as plain data (written beside its run; their fingerprint marks it finished)."""
        options, selectivity, manipulation, controls = self.networks[name]
        return {
            "extract": as_dict(options),
            "selectivity": as_dict(selectivity),
            "manipulation": as_dict(manipulation) if manipulation else None,
            "controls": controls,
        }


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping of name: value")
    return dict(value)


def _resolved(path: str, base: Path) -> str:
    """A path of the sweep file, relative to the file's folder; names like random/imagenet as given."""
    if path in ("imagenet", "pretrained", "random") or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def read_sweep(path: str | Path, limit: int | None = None) -> Sweep:
    """Parse and check a sweep file (see the module docstring); ``limit`` overrides ``extract.limit``.

    Parameters
    ----------
    path : path
        The YAML sweep file.
    limit : int, optional
        A seeded, stratified sample of this many pictures per set (a quick look).

    Returns
    -------
    Sweep
        Every network's options, checked (an unknown key or a bad value is an error naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({error})") from error
    unknown = [key for key in _mapping(data, str(path)) if key not in SWEEP_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (a sweep file has {', '.join(SWEEP_KEYS)})")
    base = path.parent
    datasets = {
        check_dataset_name(n): _resolved(str(p), base) for n, p in _mapping(data.get("datasets"), "datasets").items()
    }
    networks = _mapping(data.get("networks"), "networks")
    if not datasets or not networks:
        raise InputError(f"{path}: a sweep needs `datasets` and `networks`")
    extract = {**_mapping(data.get("extract"), "extract"), **({"limit": limit} if limit else {})}
    manipulation = data.get("manipulation", {})
    controls = data.get("controls", 2)
    if not isinstance(controls, int) or controls < 0:
        raise InputError(f"{path}: controls must be a whole number >= 0, got {controls!r}")
    sweep = Sweep(path.resolve(), {}, limit=limit)
    for name, entry in networks.items():
        check_dataset_name(name)  # names a folder of the sweep
        entry = _mapping(entry, f"networks.{name}")
        if "weights" in entry:
            entry["weights"] = _resolved(str(entry["weights"]), base)
        options = from_dict(ExtractOptions, {**extract, **entry, "datasets": datasets}, f"networks.{name}")
        seeded = {"seed": options.seed}
        selectivity = from_dict(
            SelectivityOptions, {**seeded, **_mapping(data.get("selectivity"), "selectivity")}, "selectivity"
        )
        manipulate = (
            None
            if manipulation is False
            else from_dict(ManipulationOptions, {**seeded, **_mapping(manipulation, "manipulation")}, "manipulation")
        )
        sweep.networks[name] = (options, selectivity, manipulate, controls)
    return sweep


def _fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _finished(run: Path, record: dict) -> bool:
    """Whether a network's run folder finished with these options (its stages' files unchanged)."""
    stamp = run / "sweep-entry.json"
    if not stamp.is_file() or not (run / "report.html").is_file():
        return False
    try:
        if json.loads(stamp.read_text()).get("fingerprint") != _fingerprint(record):
            return False
        manifest.check_finished(run)
    except (InputError, ValueError, OSError):
        return False
    return True


@dataclass
class SweepResult:
    """What a sweep did: per network ``computed`` or ``reused`` and its seconds; the tables and page."""

    folder: Path
    status: dict[str, tuple[str, float]]
    table: pd.DataFrame
    page: Path


@dataclass
class Cluster:
    """Where a sweep's networks run. ``executor``: ``inline`` (one after another in this process),
    ``local`` (one process per network on this machine) or ``slurm`` (a SLURM job array), the last two
    through submitit (extra ``emoselect[cluster]``). Per job: ``partition``, ``gpus_per_job``,
    ``time_limit`` (minutes); ``array_parallelism``: jobs running at once; ``retries``: resubmissions
    of a failed job before it is reported."""

    executor: str = "inline"
    partition: str | None = None
    gpus_per_job: int = 0
    time_limit: int = 240
    array_parallelism: int = 16
    retries: int = 1


def run_network(source: str, name: str, out: str, limit: int | None = None, progress: bool = False) -> str:
    """One network of a sweep file into ``out/name`` (the unit of work of a job): its whole analysis,
    then its ``sweep-entry.json`` (the options' fingerprint that marks it finished). Returns ``name``."""
    sweep = read_sweep(source, limit)
    options, selectivity, manipulation, controls = sweep.networks[name]
    run = Path(out) / name
    (run / "sweep-entry.json").unlink(missing_ok=True)
    run_all(options, run, selectivity, manipulation, controls=controls, progress=progress)
    record = sweep.record(name)
    write_text_atomic(
        run / "sweep-entry.json", json.dumps({"fingerprint": _fingerprint(record), "options": record}, default=str)
    )
    return name


def _executor(cluster: Cluster, folder: Path):
    """A submitit executor for ``local`` or ``slurm``, its logs in ``folder``."""
    try:
        import submitit
    except ImportError as error:
        raise InputError(
            f"--executor {cluster.executor} needs submitit: pip install 'emoselect[cluster]' ({error})"
        ) from error
    if cluster.executor == "local":
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=cluster.time_limit)
        return local
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        timeout_min=cluster.time_limit,
        gpus_per_node=cluster.gpus_per_job,
        slurm_array_parallelism=cluster.array_parallelism,
        **({"slurm_partition": cluster.partition} if cluster.partition else {}),
    )
    return executor


def network_job(source: str, name: str, out: str, limit: int | None = None) -> str | None:
    """A submitit job: :func:`run_network`; returns None when it finished, or the one-line reason
    when the network's own input is at fault (a missing weight file, too few pictures: no retry can
    help). Anything else (a crash, a lost node, a timeout) fails the job, which is resubmitted."""
    try:
        run_network(source, name, out, limit)
    except InputError as error:
        return str(error)
    return None


def _submit(sweep: Sweep, names: list[str], folder: Path, cluster: Cluster) -> dict[str, str]:
    """Run ``names`` as a job array (a crashed job resubmitted ``cluster.retries`` times); returns
    {name: why it failed} for those that did not finish."""
    executor = _executor(cluster, folder / "jobs")
    failed: dict[str, str] = {}
    todo = list(names)
    for attempt in range(1 + cluster.retries):
        jobs = executor.map_array(
            network_job, [str(sweep.source)] * len(todo), todo, [str(folder)] * len(todo), [sweep.limit] * len(todo)
        )
        crashed = []
        for name, job in zip(todo, jobs):
            try:
                reason = job.result()
            except Exception as error:  # noqa: BLE001  # submitit re-raises a crashed job's failure, of any kind
                reason = f"the job crashed ({type(error).__name__}, attempt {attempt + 1}; log: {job.paths.stderr})"
                crashed.append(name)
            if reason:
                failed[name] = reason
            else:
                failed.pop(name, None)
        todo = crashed
        if not todo:
            break
    return failed


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
        failed = _submit(sweep, todo, folder, cluster)
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
    (significant: p < alpha, not corrected); overlap_excess: Jaccard minus its exact null, mean over
    categories (significant: BH q < alpha); gain_change_pct / lesion_change_pct: % change of test F1
    with the best gain / the lesion of the selective units (or, with ``--gain-form tuning``, the tuning
    gains), mean over emotions and own-dataset heads (significant: q < alpha)."""

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

    out = {}
    layers = read_table(run / "layers.csv")
    if "tuning_quality_excess" in layers:
        p = layers.get("p_tuning_quality", pd.Series(float("nan"), index=layers.index))
        out["tuning_quality_excess"] = per_layer(layers, "tuning_quality_excess", p < alpha, None)
    overlap = read_table(run / "overlap.csv")
    out["overlap_excess"] = per_layer(overlap, "jaccard_excess", overlap["q_value"] < alpha, overlap["q_value"])
    if (run / "manipulation_summary.csv").is_file():
        summary = read_table(run / "manipulation_summary.csv")
        chosen = summary["units"].isin(["selective", "tuning"])  # the channels form, or the tuning form
        own = summary[(summary["train_dataset"] == summary["test_dataset"]) & chosen]
        for measure, value, q in (("gain_change_pct", "enhanced_change_pct", "q_enhance"),
                                  ("lesion_change_pct", "lesioned_change_pct", "q_lesion")):  # fmt: skip
            out[measure] = per_layer(own, value, own[q] < alpha, own[q])
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
        depth = read_table(run / "layers.csv").drop_duplicates("layer").set_index("layer")["relative_depth"]
        own = _layer_measures(run, alpha)
        controls = [_layer_measures(control, alpha) for control in control_folders(run)]
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
