"""The stages as functions on a run folder: the Python API behind the CLI.

``extract_stage`` makes a run folder (stimuli, responses, config); each later stage reads what the
earlier ones left there and writes the parts it owns (the README's run-folder table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..analysis.experiments import PROFILES, ManipulationOptions
from ..analysis.selectivity import SelectivityOptions, SelectivityResult
from ..base.problems import InputError
from ..engine.responses import pick_device, prefetch_responses
from ..output.report import write_report
from ..run.config import ExtractOptions
from ..run.folder import RunFolder
from .extract import Extracted, build_network, cache_dir, control_options, extract_stage
from .manipulate import Manipulated, manipulate_all
from .selectivity import selectivity_stage


@dataclass
class Analysis:
    """What ``run_all`` produced: the selectivity result, the manipulations (None if skipped), the report."""

    selectivity: SelectivityResult
    manipulated: Manipulated | None
    report: Path


def run_all(
    options: ExtractOptions,
    out: str | Path,
    selectivity: SelectivityOptions | None = None,
    manipulation: ManipulationOptions | None = None,
    controls: int | None = None,
    progress: bool = True,
) -> Analysis:
    """The whole analysis into one run folder.

    Extract (the trained network and ``controls`` seeded random-init controls in RUN/control,
    RUN/control2, ..., read out at the same site and shown the same pictures), selectivity for all,
    manipulations for the trained network and the first control, claims.csv and report.html.

    Parameters
    ----------
    options : ExtractOptions
        Picture sets, network and how to compute.
    out : path
        The run folder.
    selectivity : SelectivityOptions, optional
        Default: the defaults (every stage is seeded by ``options.seed``).
    manipulation : ManipulationOptions, optional
        None skips the heads and manipulations.
    controls : int, optional
        Random-init controls; None: the profile's (quick 4, paper 10).
    progress : bool
        Show progress bars.

    Returns
    -------
    Analysis
        The selectivity result, the manipulations (or None) and the report's path.
    """
    run = RunFolder(Path(out))
    controls = _control_count(options, manipulation, controls)
    trained = extract_stage(options, run.path, progress)
    with run.lock():  # the rest of the run is one writer's, controls included
        result = _controls_and_selectivity(run, options, trained, controls, selectivity, manipulation, progress)
        manipulated = manipulate_all(run.path, manipulation, progress) if manipulation is not None else None
        return Analysis(result, manipulated, write_report(run.path))


def prepare_run(
    options: ExtractOptions,
    out: str | Path,
    selectivity: SelectivityOptions | None = None,
    manipulation: ManipulationOptions | None = None,
    controls: int | None = None,
    progress: bool = True,
) -> SelectivityResult:
    """:func:`run_all` up to the manipulations (extraction of the network and its controls, then
    selectivity): what a sweep's first job does for a network before its manipulation shards.
    Same parameters as :func:`run_all`; returns the selectivity result."""
    run = RunFolder(Path(out))
    controls = _control_count(options, manipulation, controls)
    trained = extract_stage(options, run.path, progress)
    with run.lock():
        return _controls_and_selectivity(run, options, trained, controls, selectivity, manipulation, progress)


def _control_count(options: ExtractOptions, manipulation: ManipulationOptions | None, controls: int | None) -> int:
    """Random-init controls to extract: ``controls``, or the manipulation profile's (quick 4, paper 10)."""
    if controls is None:
        profile = (manipulation or ManipulationOptions()).profile_for(pick_device(options.device))
        controls = PROFILES[profile]["controls"]
    if controls < 0:
        raise InputError(f"--controls {controls}: must be an integer >= 0")
    return controls


def _controls_and_selectivity(
    run: RunFolder,
    options: ExtractOptions,
    trained: Extracted,
    controls: int,
    selectivity: SelectivityOptions | None,
    manipulation: ManipulationOptions | None,
    progress: bool,
) -> SelectivityResult:
    """After the trained network's extraction: the controls' extractions (one shared picture
    decoding), the run's record of what it will do, and selectivity."""
    plans = [control_options(options, trained.network, k) for k in range(1, controls + 1)]
    networks = [build_network(plan) for plan in plans]
    if networks:  # decode the pictures once for all controls (they share preprocessing)
        prefetch_responses(
            trained.stimuli, networks, cache_dir(options), options.batch_size, options.device, options.workers, progress
        )
    for k, (plan, network) in enumerate(zip(plans, networks), 1):
        extract_stage(plan, run.control(k).path, progress, network)
    run.remove_controls_from(controls + 1)  # controls of an earlier, larger run no longer apply
    run.update_config(run={"controls": controls, "manipulate": manipulation is not None})
    return selectivity_stage(run.path, selectivity, progress)
