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

Networks run one after another in this process (``inline``), or through submitit (``local``:
processes on this machine; ``slurm``: job arrays), cut finer: a job per network up to selectivity
(:func:`prepare_network`), then its manipulation shards — one block of conditions each (run folder
x layer x category x chunk of unit sets) — as jobs that only fill content-keyed caches
(:func:`fill_shards`), then the merge in this process (:func:`finish_network`: the tables, claims and
report from the caches; then the sweep's table and page). A sharded sweep's tables equal an inline one's.
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
from .config import Cluster, ExtractOptions
from .experiments import ManipulationOptions, block_label
from .files import write_csv_atomic, write_text_atomic
from .options import as_dict, from_dict
from .pipeline import (
    control_folders,
    manipulate_all,
    manipulated_runs,
    plan_manipulations,
    prepare_run,
    run_all,
    sweep_margins,
)
from .problems import InputError
from .records import read_table
from .report import write_report, write_sweep_page
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
    extract = {**_mapping(data.get("extract"), "extract"), **({"limit": limit} if limit is not None else {})}
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


def run_network(source: str, name: str, out: str, limit: int | None = None, progress: bool = False) -> str:
    """One network of a sweep file into ``out/name``, all in this process: its whole analysis, then
    its ``sweep-entry.json`` (the options' fingerprint that marks it finished). Returns ``name``."""
    sweep = read_sweep(source, limit)
    options, selectivity, manipulation, controls = sweep.networks[name]
    run = Path(out) / name
    (run / "sweep-entry.json").unlink(missing_ok=True)
    run_all(options, run, selectivity, manipulation, controls=controls, progress=progress)
    _stamp(run, sweep, name)
    return name


def _stamp(run: Path, sweep: Sweep, name: str) -> None:
    """Mark a network's run folder finished with its options (``sweep-entry.json``)."""
    record = sweep.record(name)
    write_text_atomic(
        run / "sweep-entry.json", json.dumps({"fingerprint": _fingerprint(record), "options": record}, default=str)
    )


@dataclass(frozen=True)
class Shard:
    """One cluster shard: a block of one layer's manipulation conditions (:func:`emoselect.experiments.
    condition_blocks`) of one run folder of a sweep network, for every evaluated picture. ``run``:
    the folder relative to the sweep folder (``vgg16`` or ``vgg16/control``); ``block``: (start, stop)
    rows of the layer's conditions; ``label``: the block in words."""

    network: str
    run: str
    layer: str
    block: tuple[int, int]
    label: str

    def __str__(self) -> str:
        return f"{self.run} {self.layer} ({self.label})"


def prepare_network(source: str, name: str, out: str, limit: int | None = None) -> list[Shard]:
    """A sharded sweep's first job for a network: extraction of the network and its controls, then
    selectivity, into ``out/name``; the heads of each manipulated run folder trained and kept in its
    cache. Returns the network's manipulation shards (none when the sweep skips manipulations)."""
    sweep = read_sweep(source, limit)
    options, selectivity, manipulation, controls = sweep.networks[name]
    run = Path(out) / name
    (run / "sweep-entry.json").unlink(missing_ok=True)
    prepare_run(options, run, selectivity, manipulation, controls, progress=False)
    shards = []
    for folder in manipulated_runs(run) if manipulation is not None else []:
        plan = plan_manipulations(folder, manipulation)
        for layer, blocks in plan.blocks.items():
            conditions = plan.plans[layer].conditions
            relative = folder.relative_to(out).as_posix()
            shards += [Shard(name, relative, layer, block, block_label(conditions, block)) for block in blocks]
    return shards


def fill_shards(source: str, out: str, limit: int | None, shards: list[Shard]) -> None:
    """A manipulation job: the margins of each shard's block of conditions into its run folder's result
    cache (content-keyed, atomic writes; nothing else is written; entries already there are kept).
    Each run folder's network and plan are built once for all its shards in the job, and its blocks
    share the walk down the network (the numbers are the same as each block alone: see
    :func:`emoselect.manipulation.evaluate`)."""
    sweep = read_sweep(source, limit)
    for folder in dict.fromkeys(shard.run for shard in shards):
        run = Path(out) / folder
        manifest.require(run, "extract")
        manifest.require(run, "selectivity")
        mine = [shard for shard in shards if shard.run == folder]
        plan = plan_manipulations(run, sweep.networks[mine[0].network][2])
        only: dict[str, list[tuple[int, int]]] = {}
        for shard in mine:
            only.setdefault(shard.layer, []).append(shard.block)
        sweep_margins(plan, run, {layer: sorted(blocks) for layer, blocks in only.items()})  # one walk for all


def finish_network(source: str, name: str, out: str, limit: int | None = None, progress: bool = False) -> None:
    """A sharded sweep's merge for one network: its manipulation tables (every block read from the
    caches the shards filled), claims and report, then its ``sweep-entry.json``."""
    sweep = read_sweep(source, limit)
    manipulation = sweep.networks[name][2]
    run = Path(out) / name
    if manipulation is not None:
        manipulate_all(run, manipulation, progress)
    write_report(run)
    _stamp(run, sweep, name)


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


def _job(function, *args) -> tuple[str | None, object]:
    """A submitit job's body: (None, ``function(*args)``), or (the one-line reason, None) when the input
    is at fault (an :class:`InputError`: a missing weight file, too few pictures — no retry can help).
    Anything else (a crash, a lost node, a timeout) fails the job, which is resubmitted."""
    try:
        return None, function(*args)
    except InputError as error:
        return str(error), None


def prepare_job(source: str, name: str, out: str, limit: int | None) -> tuple[str | None, object]:
    """The job of :func:`prepare_network` (see :func:`_job`)."""
    return _job(prepare_network, source, name, out, limit)


def shard_job(source: str, out: str, limit: int | None, shards: list[Shard]) -> tuple[str | None, object]:
    """The job of :func:`fill_shards` (see :func:`_job`)."""
    return _job(fill_shards, source, out, limit, shards)


def _run_jobs(job, calls: dict[str, tuple], folder: Path, cluster: Cluster) -> tuple[dict, dict[str, str]]:
    """``job(*calls[name])`` for every name as submitit jobs (a SLURM array; on this machine
    ``array_parallelism`` processes at a time), a crashed job resubmitted ``cluster.retries`` times.
    Returns ({name: value} of the jobs that finished, {name: why} of those that did not)."""
    executor = _executor(cluster, folder / "jobs")
    width = cluster.array_parallelism if cluster.executor == "local" else max(1, len(calls))
    values, failed = {}, {}
    todo = list(calls)
    for attempt in range(1 + cluster.retries):
        crashed = []
        for start in range(0, len(todo), width):
            wave = todo[start : start + width]
            handles = executor.map_array(job, *zip(*[calls[name] for name in wave]))
            for name, handle in zip(wave, handles):
                try:
                    reason, value = handle.result()
                except Exception as error:  # noqa: BLE001  # submitit re-raises a crashed job's failure, of any kind
                    reason, value = (
                        f"the job crashed ({type(error).__name__}, attempt {attempt + 1}; log: {handle.paths.stderr})",
                        None,
                    )
                    crashed.append(name)
                if reason:
                    failed[name] = reason
                else:
                    failed.pop(name, None)
                    values[name] = value
        todo = crashed
        if not todo:
            break
    return values, failed


def _sharded(sweep: Sweep, todo: list[str], folder: Path, cluster: Cluster) -> dict[str, str]:
    """The networks ``todo`` through submitit: a job per network up to selectivity, then the
    manipulation shards as jobs (:func:`shard_jobs`), then the merge here (tables, claims, report:
    every block read from the caches). Returns {network: why it failed} for those not finished."""
    source, out, limit = str(sweep.source), str(folder), sweep.limit
    prepared, failed = _run_jobs(prepare_job, {n: (source, n, out, limit) for n in todo}, folder, cluster)
    jobs = shard_jobs([shard for name in prepared for shard in prepared[name]], cluster)
    _, lost = _run_jobs(shard_job, {name: (source, out, limit, group) for name, group in jobs.items()}, folder, cluster)
    for name, why in lost.items():
        for network in dict.fromkeys(shard.network for shard in jobs[name]):
            failed.setdefault(network, f"shard {name}: {why}")
    for name in prepared:
        if name not in failed:
            try:
                finish_network(source, name, out, limit)
            except InputError as error:  # the other networks are still merged
                failed[name] = f"merge: {error}"
    return failed


def shard_jobs(shards: list[Shard], cluster: Cluster) -> dict[str, list[Shard]]:
    """The shards packed into jobs, named by their first shard: ``shards_per_job`` each on SLURM; on
    this machine (``local``) spread over ``array_parallelism`` processes, since a process per shard
    would only add start-up time. Consecutive shards go together (the same run folder's, mostly)."""
    per_job = cluster.shards_per_job if cluster.executor == "slurm" else -(-len(shards) // cluster.array_parallelism)
    groups = [shards[start : start + per_job] for start in range(0, len(shards), max(1, per_job))]
    return {str(group[0]) + (f" and {len(group) - 1} more" if len(group) > 1 else ""): group for group in groups}


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
