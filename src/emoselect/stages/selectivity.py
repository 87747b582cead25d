"""The selectivity stage: tuning, selective units, overlap, nulls and trends for a run folder and its
random-init controls (units.csv, selective.csv, layers.csv, overlap.csv, trends.csv, controls.csv,
figures), then claims.csv.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.examples import example_layers
from ..analysis.records import Responses
from ..analysis.selectivity import SelectivityOptions, SelectivityResult, analyse, define_groups
from ..analysis.stats import rank_p_values
from ..analysis.trends import COLUMNS as TREND_COLUMNS
from ..base.files import write_csv_atomic
from ..base.options import as_dict
from ..engine.responses import load_responses
from ..output import figures
from ..pictures.stimuli import Stimuli, read_stimuli
from ..run.folder import RunFolder, StageOutput, control_name
from .claims import claims_stage


def load_run(run: str | Path) -> tuple[Stimuli, dict, dict[str, Responses]]:
    """A run folder's stimuli, config and responses (tuning sites only; readout features on demand)."""
    config = RunFolder(Path(run)).extracted_config()
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
    """trends.csv: the network-level tests of the trained network and of each control (one row per
    network, measure and statistic; the scorecard compares the trained network with the controls)."""
    parts = [result.trends.assign(network="trained")]
    parts += [control.trends.assign(network=control_name(k)) for k, control in enumerate(controls, 1)]
    table = pd.concat(parts, ignore_index=True)[["network", *TREND_COLUMNS]]
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
    """Selectivity tables and figures for a run folder and its random-init controls, then claims.csv.

    Parameters
    ----------
    run : path
        A run folder whose extract stage finished.
    options : SelectivityOptions, optional
        Default: the defaults. Every random stream is seeded by the run's seed (its ``--seed``).
    progress : bool
        Show progress bars.

    Returns
    -------
    SelectivityResult
        The trained network's tables (units, selective, layers, overlap, examples, trends).
    """
    folder = RunFolder(Path(run))
    options = options or SelectivityOptions()
    for network in [folder, *folder.controls]:
        _check_options(network, options)
    with folder.lock():
        with contextlib.ExitStack() as stages:
            folders = [folder, *folder.controls]
            outs = [stages.enter_context(f.stage("selectivity", needs=("extract",))) for f in folders]
            result = _selectivity(folders, outs, options, progress)
        claims_stage(folder.path, options.alpha)
    return result


def _check_options(folder: RunFolder, options: SelectivityOptions) -> None:
    """Check what needs only the stimuli and the site names (--example-layers, --pair, the pictures
    that define tuning, pictures shared by the pair) before any work and before the folder's
    finished results are touched: a typo never invalidates them."""
    config, stimuli = folder.extracted_config(), read_stimuli(folder.path)
    example_layers(list(config["network"]["sites"]), options.example_layers)
    define_groups(stimuli, options, folder.seed)


def _selectivity(
    folders: list[RunFolder], outs: list[StageOutput], options: SelectivityOptions, progress: bool
) -> SelectivityResult:
    """Analyse the run (``folders[0]``) and its controls, each with its own seed; write each one's
    tables into its stage output, then the run's trends, controls table, figures and config."""
    run, out = folders[0], outs[0]
    stimuli, config, responses = load_run(run.path)
    sites = list(config["network"]["sites"])
    depths = config["network"].get("relative_depth")
    result = analyse(stimuli, responses, sites, options, progress, depths, seed=run.seed)
    out.add(*write_selectivity(result, run.path))
    controls = []
    for folder, control_out in zip(folders[1:], outs[1:]):
        c_stimuli, c_config, c_responses = load_run(folder.path)
        c_sites = list(c_config["network"]["sites"])
        control = analyse(c_stimuli, c_responses, c_sites, options, progress, seed=folder.seed)
        control_out.add(*write_selectivity(control, folder.path))
        folder.update_config(selectivity={**as_dict(options), "pair_note": control.pair_note})
        controls.append(control)
    write_trends(result, controls, run.path)
    out.add(run.file("trends.csv"))
    if controls:
        out.write_csv("controls.csv", versus_controls_table(result, controls))
    elif (run / "controls.csv").exists():
        (run / "controls.csv").unlink()
    out.add(*_draw_selectivity(run, result, controls, options.alpha))
    run.update_config(selectivity={**as_dict(options), "pair_note": result.pair_note})
    return result


def _draw_selectivity(
    run: RunFolder, result: SelectivityResult, controls: list[SelectivityResult], alpha: float
) -> list[Path]:
    """The selectivity figures (with the first control's where it has one); returns their paths."""
    first = controls[0] if controls else None
    written = [
        figures.tuning_quality(result.layers, run.file("figures/tuning_quality.png"), [c.layers for c in controls]),
        figures.overlap(result.overlap, run.file("figures/overlap.png"), first.overlap if first else None, alpha),
        figures.selective_fraction(
            result.overlap, run.file("figures/selective_fraction.png"), first.overlap if first else None
        ),
        figures.example_neurons(result.examples, run.file("figures/example_neurons.png")),
        figures.example_valence(
            result.examples, result.top_images, run.file("figures/example_valence.png"), run.extract_options.boundaries
        ),
    ]
    if result.confounds is not None:
        written.append(figures.confounds(result.confounds, run.file("figures/confounds.png")))
    return written
