"""A sweep on a cluster through submitit: a job per network up to selectivity, manipulation shards as
jobs that only fill content-keyed caches, then the merge in this process (see :mod:`.sweep`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.experiments import block_label
from ..base import manifest
from ..base.problems import InputError
from ..output.report import write_report
from ..run.config import Cluster
from .manipulate import manipulate_all, manipulated_runs, plan_manipulations, sweep_margins
from .run import prepare_run
from .sweep_file import Sweep, _stamp, read_sweep

if TYPE_CHECKING:  # an optional dependency (emoselect[cluster]), imported by _executor when used
    import submitit


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
    entry = sweep.networks[name]
    run = Path(out) / name
    (run / "sweep-entry.json").unlink(missing_ok=True)
    prepare_run(entry.extract, run, entry.selectivity, entry.manipulation, entry.controls, progress=False)
    shards = []
    for folder in manipulated_runs(run) if entry.manipulation is not None else []:
        plan = plan_manipulations(folder, entry.manipulation)
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
        plan = plan_manipulations(run, sweep.networks[mine[0].network].manipulation)
        only: dict[str, list[tuple[int, int]]] = {}
        for shard in mine:
            only.setdefault(shard.layer, []).append(shard.block)
        sweep_margins(plan, run, {layer: sorted(blocks) for layer, blocks in only.items()})  # one walk for all


def finish_network(source: str, name: str, out: str, limit: int | None = None, progress: bool = False) -> None:
    """A sharded sweep's merge for one network: its manipulation tables (every block read from the
    caches the shards filled), claims and report, then its ``sweep-entry.json``."""
    sweep = read_sweep(source, limit)
    manipulation = sweep.networks[name].manipulation
    run = Path(out) / name
    if manipulation is not None:
        manipulate_all(run, manipulation, progress)
    write_report(run)
    _stamp(run, sweep, name)


def _executor(cluster: Cluster, folder: Path) -> submitit.Executor:
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
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as error:  # no srun/sbatch here
        raise InputError(
            f"--executor slurm: SLURM is not available on this machine ({error}); run the sweep from the "
            f"cluster's login node, or use --executor local or inline"
        ) from error
    executor.update_parameters(
        timeout_min=cluster.time_limit,
        gpus_per_node=cluster.gpus_per_job,
        slurm_array_parallelism=cluster.array_parallelism,
        **({"slurm_partition": cluster.partition} if cluster.partition else {}),
    )
    return executor


def _job(function: Callable[..., object], *args: Any) -> tuple[str | None, object]:
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


def _run_jobs(
    job: Callable[..., tuple[str | None, object]], calls: dict[str, tuple], folder: Path, cluster: Cluster
) -> tuple[dict, dict[str, str]]:
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
