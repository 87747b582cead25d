"""The selectivity stage: tuning, selective units, overlap, nulls and trends for a run folder and its
random-init controls (units.csv, selective.csv, layers.csv, overlap.csv, trends.csv, controls.csv,
figures), then claims.csv.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.records import Responses
from ..analysis.selectivity import SelectivityOptions, SelectivityResult, analyse, trend_difference
from ..analysis.stats import rank_p_values
from ..base import manifest
from ..base.files import run_lock, write_csv_atomic
from ..base.options import as_dict
from ..engine.responses import load_responses
from ..output import figures
from ..pictures.stimuli import Stimuli, read_stimuli
from ..run.config import extract_options, update_config
from ..run.folder import control_folders, control_name, extracted_config
from .claims import claims_stage


def load_run(run: str | Path) -> tuple[Stimuli, dict, dict[str, Responses]]:
    """A run folder's stimuli, config and responses (tuning sites only; readout features on demand)."""
    config = extracted_config(run)
    stimuli = read_stimuli(run)
    sites = list(config["network"]["sites"])
    responses = {d: load_responses(run, d, sites) for d in stimuli.datasets}
    return stimuli, config, responses


def write_selectivity(result: SelectivityResult, run: Path) -> list[Path]:
    """units.csv, selective.csv, layers.csv, overlap.csv, examples.csv (and confounds.csv); returns
    the paths written."""
    tables = {
        "units.csv": result.units,
        "selective.csv": result.selective,
        "layers.csv": result.layers,
        "overlap.csv": result.overlap,
        "examples.csv": result.examples,
        "confounds.csv": result.confounds,
    }
    written = []
    for name, table in tables.items():
        if table is not None:
            write_csv_atomic(run / name, table)
            written.append(run / name)
        elif (run / name).exists():  # from an earlier analysis with other options
            (run / name).unlink()
    return written


def write_trends(result: SelectivityResult, controls: list[SelectivityResult], run: Path) -> pd.DataFrame:
    """trends.csv: depth-trend tests of the trained network, each control, and trained minus controls."""
    parts = [result.trends.assign(network="trained")]
    parts += [control.trends.assign(network=control_name(k)) for k, control in enumerate(controls, 1)]
    if controls:
        name = "trained - random init" + (f" (mean of {len(controls)})" if len(controls) > 1 else "")
        parts.append(trend_difference(result.trend_nulls, [c.trend_nulls for c in controls]).assign(network=name))
    table = pd.concat(parts, ignore_index=True)[["network", "measure", "rho", "p_rise", "p_fall", "n_null"]]
    write_csv_atomic(run / "trends.csv", table)
    return table


def versus_controls_table(result: SelectivityResult, controls: list[SelectivityResult]) -> pd.DataFrame:
    """controls.csv: per layer, the trained network's tuning-quality and overlap excess beside the
    controls' range (min, mean, max over the K controls) and whether it lies above all of them."""

    def per_layer(r: SelectivityResult) -> pd.DataFrame:
        out = pd.DataFrame({"overlap_excess": r.overlap.groupby("layer", sort=False)["jaccard_excess"].mean()})
        if "tuning_quality_excess" in r.layers:
            out["tuning_quality_excess"] = r.layers.groupby("layer", sort=False)["tuning_quality_excess"].mean()
        return out

    trained = per_layer(result)
    rows = []
    for measure in trained.columns:
        values = np.column_stack([per_layer(c)[measure].reindex(trained.index) for c in controls])
        for layer, value, row in zip(trained.index, trained[measure], values):
            rows.append(
                {
                    "layer": layer,
                    "measure": measure,
                    "trained": value,
                    "controls_min": np.nanmin(row),
                    "controls_mean": np.nanmean(row),
                    "controls_max": np.nanmax(row),
                    "n_controls": len(controls),
                    "above_all_controls": bool(value > np.nanmax(row)),
                    "p_rank": rank_p_values(value, row)[0],
                    "min_p_rank": 1.0 / (1 + len(controls)),
                }
            )
    return pd.DataFrame(rows)


def selectivity_stage(
    run: str | Path, options: SelectivityOptions | None = None, progress: bool = True
) -> SelectivityResult:
    """Selectivity tables and figures for a run folder and its random-init controls.

    Parameters
    ----------
    run : path
        A run folder whose extract stage finished.
    options : SelectivityOptions, optional
        Default: the defaults, seeded with the run's extract seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    SelectivityResult
        The trained network's tables (units, selective, layers, overlap, examples, trends).
    """
    run = Path(run)
    options = options or SelectivityOptions(seed=extract_options(run).seed)
    with contextlib.ExitStack() as locks:
        folders = [run, *control_folders(run)]
        for folder in folders:
            locks.enter_context(run_lock(folder))
            manifest.require(folder, "extract")
            manifest.begin(folder, "selectivity")
        return _selectivity(run, folders[1:], options, progress)


def _selectivity(run: Path, control_runs: list[Path], options: SelectivityOptions, progress: bool) -> SelectivityResult:
    stimuli, config, responses = load_run(run)
    sites = list(config["network"]["sites"])
    result = analyse(stimuli, responses, sites, options, progress, config["network"].get("relative_depth"))
    written = write_selectivity(result, run)
    controls = []
    for folder in control_runs:
        c_stimuli, c_config, c_responses = load_run(folder)
        control = analyse(c_stimuli, c_responses, list(c_config["network"]["sites"]), options, progress)
        manifest.finish(folder, "selectivity", write_selectivity(control, folder), inputs=("extract",))
        update_config(folder, selectivity={**as_dict(options), "pair_note": control.pair_note})
        controls.append(control)
    write_trends(result, controls, run)
    written.append(run / "trends.csv")
    if controls:
        write_csv_atomic(run / "controls.csv", versus_controls_table(result, controls))
        written.append(run / "controls.csv")
    elif (run / "controls.csv").exists():
        (run / "controls.csv").unlink()
    folder = run / "figures"
    first = controls[0] if controls else None
    written += [
        figures.tuning_quality(result.layers, folder / "tuning_quality.png", [c.layers for c in controls]),
        figures.overlap(result.overlap, folder / "overlap.png", first.overlap if first else None, options.alpha),
        figures.selective_fraction(result.overlap, folder / "selective_fraction.png", first.overlap if first else None),
        figures.example_neurons(result.examples, folder / "example_neurons.png"),
        figures.example_valence(
            result.examples, result.top_images, folder / "example_valence.png", extract_options(run).boundaries
        ),
    ]
    if result.confounds is not None:
        written.append(figures.confounds(result.confounds, folder / "confounds.png"))
    update_config(run, selectivity={**as_dict(options), "pair_note": result.pair_note})
    manifest.finish(run, "selectivity", written, inputs=("extract",))
    claims_stage(run, options.alpha)
    return result
