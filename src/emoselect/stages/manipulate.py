"""The manipulate stage: readout heads, then lesion and attention-gain sweeps of selective vs random
units (readout.csv, heads.npz, manipulation.csv, manipulation_summary.csv, table1.csv, figures).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis.experiments import (
    LayerPlan,
    ManipulationOptions,
    condition_blocks,
    plan_layer,
    score_conditions,
    summarise,
    table_one,
)
from ..analysis.records import Head, ReadoutOptions, read_table
from ..base import manifest
from ..base.files import run_lock, write_csv_atomic
from ..base.options import as_dict
from ..base.problems import InputError
from ..engine.manipulation import ResultCache, evaluate_cached, gain_rescales_readout
from ..engine.network import Network
from ..engine.readout import score_heads, train_heads
from ..engine.responses import load_responses, pick_device, response_key
from ..output import figures
from ..pictures.stimuli import Stimuli, category_names, read_stimuli
from ..run.config import extract_options, update_config
from ..run.folder import (
    _read_heads,
    _read_table,
    _save_heads,
    control_folder,
    control_folders,
    control_name,
    extracted_config,
    is_control,
)
from .claims import claims_stage
from .extract import build_network


def trained_heads(
    run: Path, stimuli: Stimuli, config: dict, options: ReadoutOptions
) -> tuple[list[Head], pd.DataFrame]:
    """The heads on the run's readout features, and their readout.csv table. Trained once and kept
    in ``RUN/cache/heads``, keyed by the features, the pictures' categories and splits and the
    options: every later caller (a rerun, each cluster shard, the merge) gets the same heads, bit
    for bit, wherever it runs — and so the same keys for the manipulation results."""
    site = config["network"]["readout_site"]
    features = {d: load_responses(run, d, [], site).readout for d in stimuli.datasets}
    labels = stimuli.table[["dataset", "sha1", "category", "split"]].to_numpy().astype(str)
    key = ResultCache.key(site, labels.tobytes(), as_dict(options), *[features[d] for d in stimuli.datasets])
    path = run / "cache" / "heads" / f"{key}.npz"
    heads = _read_heads(path)
    if heads is not None:
        return heads, score_heads(stimuli, features, heads, site)
    heads, table = train_heads(stimuli, features, options, site)
    _save_heads(path, heads)
    return heads, table


@dataclass
class Manipulated:
    """What ``manipulate_stage`` produced (the tables it wrote)."""

    readout: pd.DataFrame
    manipulation: pd.DataFrame
    summary: pd.DataFrame
    table1: pd.DataFrame
    layers: list[str]
    seconds_engine: float


def manipulate_stage(run: str | Path, options: ManipulationOptions | None = None, progress: bool = True) -> Manipulated:
    """Readout heads, then lesion and attention-gain sweeps of selective vs random units.

    Writes readout.csv, heads.npz, manipulation.csv, manipulation_summary.csv, table1.csv and
    figures (manifest entry ``manipulate``), and refreshes claims.csv.

    Parameters
    ----------
    run : path
        A run folder whose extract and selectivity stages finished.
    options : ManipulationOptions, optional
        Profile, layers, betas, random sets, heads; default: the profile for the device.
    progress : bool
        Show progress bars.

    Returns
    -------
    Manipulated
        The readout, manipulation, summary and Table 1 tables, the layers and the engine's seconds.
    """
    run = Path(run)
    with run_lock(run):
        manifest.require(run, "extract")
        manifest.require(run, "selectivity")
        manifest.begin(run, "manipulate")
        return _manipulate(run, options, progress)


@dataclass
class ManipulationPlan:
    """Everything the manipulation sweep of one run folder needs: the network (on its device), the
    heads and their readout.csv table, the evaluated (val and test) pictures, one :class:`LayerPlan`
    per layer with its blocks of conditions (row ranges), and each layer's result-cache key."""

    options: ManipulationOptions
    network: Network
    heads: list[Head]
    readout: pd.DataFrame
    evaluated: pd.DataFrame
    plans: dict[str, LayerPlan]
    blocks: dict[str, list[tuple[int, int]]]
    keys: dict[str, str]
    swept_over: dict
    device: torch.device


def plan_manipulations(run: Path, options: ManipulationOptions | None) -> ManipulationPlan:
    """The manipulation sweep of a run folder whose extract and selectivity stages finished (heads
    trained or read from the run's cache; nothing written but that cache)."""
    recorded = extract_options(run)
    options = options or ManipulationOptions(seed=recorded.seed)
    stimuli, config = read_stimuli(run), extracted_config(run)
    device = pick_device(recorded.device)
    layers, betas, repeats, lesion_repeats = options.resolved(list(config["network"]["sites"]), device)
    selective = _read_table(run, "selective.csv", "selectivity")
    tuning = _read_table(run, "units.csv", "selectivity") if options.gain_form == "tuning" else None
    network = build_network(recorded).to(device)
    if network.readout_site != config["network"]["readout_site"]:
        raise InputError(f"the network reads out at {network.readout_site}, the run's responses at "
                         f"{config['network']['readout_site']}: rerun `emoselect extract`")  # fmt: skip
    heads, readout = trained_heads(run, stimuli, config, options.readout)
    names = category_names(stimuli.table)
    plans = {
        layer: plan_layer(
            layer, network.units[layer], selective, betas, repeats, options, lesion_repeats, tuning, names
        )
        for layer in layers
    }
    heads_key = ResultCache.key(*[h.weight for h in heads], *[h.bias for h in heads])
    return ManipulationPlan(
        options,
        network,
        heads,
        readout,
        stimuli.table[stimuli.table["split"].isin(["val", "test"])].reset_index(drop=True),
        plans,
        {layer: condition_blocks(plans[layer].conditions, options.sets_per_shard) for layer in layers},
        {layer: ResultCache.key(response_key(network), heads_key, layer) for layer in layers},
        {"layers": layers, "betas": betas, "repeats": repeats, "lesion_repeats": lesion_repeats},
        device,
    )


def sweep_margins(
    plan: ManipulationPlan,
    run: Path,
    only: dict[str, list[tuple[int, int]]] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Margins of every layer's conditions, or of the ``only`` blocks ({layer: [(start, stop), ...]},
    a cluster job's shards), served from or stored in the run's result cache
    (``RUN/cache/manipulation``); the blocks of a layer share one walk down the network per chunk.

    Returns {layer: float32 [n_conditions (of those blocks, in order), n_evaluated, n_heads]}."""
    return evaluate_cached(
        plan.network,
        list(plan.evaluated["path"]),
        list(plan.evaluated["sha1"]),
        {layer: layer_plan.gains for layer, layer_plan in plan.plans.items()},
        plan.heads,
        ResultCache(run / "cache" / "manipulation"),
        plan.keys,
        plan.blocks if only is None else only,
        plan.options.chunk_images,
        plan.options.batch_samples,
        progress,
    )


def _manipulate(run: Path, options: ManipulationOptions | None, progress: bool) -> Manipulated:
    planned = plan_manipulations(run, options)
    options, network, layers = planned.options, planned.network, list(planned.plans)
    write_csv_atomic(run / "readout.csv", planned.readout)
    _save_heads(run / "heads.npz", planned.heads)
    start = time.time()
    swept = sweep_margins(planned, run, progress=progress)
    seconds = time.time() - start
    tables = [
        score_conditions(planned.plans[layer], swept[layer], planned.heads, planned.evaluated, options.transfer)
        for layer in layers
    ]
    manipulation = pd.concat(tables, ignore_index=True)
    summary = summarise(manipulation, options.alpha)
    summary["gain_rescales_readout"] = summary["layer"].map(
        {layer: gain_rescales_readout(network, layer) for layer in layers}
    )
    table1 = table_one(summary, manipulation)
    written = _write_manipulation_tables(run, network.readout_site, manipulation, summary, table1)
    written += _draw_manipulations(run, manipulation, summary, options.alpha)
    settings = _manipulation_settings(options, planned.device, planned.swept_over, network, seconds)
    update_config(run, manipulation=settings)
    manifest.finish(run, "manipulate", written, inputs=("extract", "selectivity"))
    if (run / "trends.csv").is_file():
        claims_stage(run, options.alpha)
    return Manipulated(planned.readout, manipulation, summary, table1, layers, seconds)


def _manipulation_settings(options, device, swept_over: dict, network: Network, seconds: float) -> dict:
    """config.yaml's manipulation section: the options, what was swept, the readout and the engine."""
    return {
        **as_dict(options),
        "profile": options.profile_for(device),
        **swept_over,
        "readout_site": network.readout_site,
        "engine": network.engine,
        "engine_seconds": round(seconds, 1),
    }


def _write_manipulation_tables(
    run: Path, readout_site: str, manipulation: pd.DataFrame, summary: pd.DataFrame, table1: pd.DataFrame
) -> list[Path]:
    """manipulation.csv, manipulation_summary.csv and table1.csv (each with the readout site); returns
    every file of the stage written so far (with readout.csv and heads.npz)."""
    for name, table in (
        ("manipulation.csv", manipulation),
        ("manipulation_summary.csv", summary),
        ("table1.csv", table1),
    ):
        table["readout_site"] = readout_site
        write_csv_atomic(run / name, table)
    names = ("readout.csv", "heads.npz", "manipulation.csv", "manipulation_summary.csv", "table1.csv")
    return [run / name for name in names]


def _draw_manipulations(run: Path, manipulation: pd.DataFrame, summary: pd.DataFrame, alpha: float) -> list[Path]:
    """The lesion, gain and transfer figures (with the first control's rows where it has them) and the
    gain curves per heads/test pair; returns the figure files."""
    folder = run / "figures"
    shown = summary.assign(network=control_name(1) if is_control(run) else "trained")
    control_summary = control_folder(run, 1) / "manipulation_summary.csv"
    if control_summary.is_file():  # the first control's rows below the trained network's
        shown = pd.concat([shown, read_table(control_summary).assign(network=control_name(1))], ignore_index=True)
    written = [figures.attention_change(shown, folder / "attention_change.png", alpha)]
    pairs = list(dict.fromkeys(zip(manipulation["train_dataset"], manipulation["test_dataset"])))
    for number, (train, test) in enumerate(pairs):
        name = "attention_curves.png" if number == 0 else f"attention_curves_{number + 1}.png"
        written.append(figures.attention_curves(manipulation, folder / name, train, test))
    written.append(figures.lesion(shown, folder / "lesion.png", alpha))
    if (summary["train_dataset"] != summary["test_dataset"]).any():
        written.append(figures.transfer(shown, folder / "transfer.png", alpha))
    return written


def manipulated_runs(run: str | Path) -> list[Path]:
    """The run folders :func:`manipulate_all` manipulates, in its order: the first control (if any), the run."""
    return [*control_folders(run)[:1], Path(run)]


def manipulate_all(run: str | Path, options: ManipulationOptions | None = None, progress: bool = True) -> Manipulated:
    """:func:`manipulate_stage` for the run's first random-init control (heads on its own
    features, the same sweeps), if it has one, then for the trained network.

    Parameters
    ----------
    run, options, progress
        As :func:`manipulate_stage`.

    Returns
    -------
    Manipulated
        The trained network's.
    """
    *controls, trained = manipulated_runs(run)
    for control in controls:
        manipulate_stage(control, options, progress)
    return manipulate_stage(trained, options, progress)
