"""The manipulate stage: readout heads, then lesion and attention-gain sweeps of selective vs random
units (readout.csv, heads.npz, manipulation.csv, manipulation_summary.csv, table1.csv, figures).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis.experiments import (
    LayerPlan,
    ManipulationOptions,
    Sequential,
    Swept,
    condition_blocks,
    head_tests,
    plan_layer,
    score_conditions,
    summarise,
    table_one,
)
from ..analysis.records import Head, ReadoutOptions
from ..base.options import as_dict
from ..base.problems import InputError
from ..engine.manipulation import Execution, ResultCache, evaluate_cached, gain_rescales_readout
from ..engine.network import Network
from ..engine.readout import head_scores, score_heads, train_heads
from ..engine.responses import load_responses, pick_device, response_key
from ..output import figures
from ..pictures.stimuli import Stimuli, category_names, read_stimuli
from ..run.folder import RunFolder, StageOutput, control_name, read_heads, save_heads
from .claims import claims_stage
from .extract import build_network


def trained_heads(
    run: RunFolder, stimuli: Stimuli, config: dict, options: ReadoutOptions
) -> tuple[list[Head], pd.DataFrame]:
    """The heads on the run's readout features, and their readout.csv table. Trained once (seeded by
    the run's seed) and kept in ``RUN/cache/heads``, keyed by the features, the pictures' categories
    and splits, the options and the seed: every later caller (a rerun, each cluster shard, the
    merge) gets the same heads, bit for bit, wherever it runs — and so the same keys for the
    manipulation results."""
    site = config["network"]["readout_site"]
    features = {d: load_responses(run.path, d, [], site).readout for d in stimuli.datasets}
    labels = stimuli.table[["dataset", "sha1", "category", "split"]].to_numpy().astype(str)
    seeded = {**as_dict(options), "seed": run.seed}
    key = ResultCache.key(site, labels.tobytes(), seeded, *[features[d] for d in stimuli.datasets])
    path = run.heads_cache(key)
    heads = read_heads(path)
    if heads is not None:
        return heads, score_heads(stimuli, features, heads, site)
    heads, table = train_heads(stimuli, features, options, site, seed=run.seed)
    save_heads(path, heads)
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
        Profile, layers, betas, random sets, heads; default: the profile for the device. Random unit
        sets and heads are seeded by the run's seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    Manipulated
        The readout, manipulation, summary and Table 1 tables, the layers and the engine's seconds.
    """
    folder = RunFolder(Path(run))
    options = options or ManipulationOptions()
    sites = list(folder.extracted_config()["network"]["sites"])
    options.resolved(sites, pick_device(folder.extract_options.device))  # --layers etc.: before the folder is touched
    with folder.lock():
        with folder.stage("manipulate", needs=("extract", "selectivity")) as out:
            manipulated, alpha = _manipulate(folder, out, options, progress)
        if (folder / "trends.csv").is_file():
            claims_stage(folder.path, alpha)
    return manipulated


@dataclass(frozen=True, kw_only=True)
class ManipulationPlan:
    """Everything the manipulation sweep of one run folder needs: the network (on its device), the
    heads and their readout.csv table, the evaluated (val and test) pictures, the heads' chance tests
    (:func:`emoselect.analysis.experiments.head_tests`), one :class:`LayerPlan`
    per layer with its blocks of conditions (row ranges), each layer's result-cache key, and what
    the sweep covers (``swept``)."""

    options: ManipulationOptions
    network: Network
    heads: list[Head]
    readout: pd.DataFrame
    evaluated: pd.DataFrame
    chance: pd.DataFrame
    plans: dict[str, LayerPlan]
    blocks: dict[str, list[tuple[int, int]]]
    keys: dict[str, str]
    swept: Swept
    device: torch.device


def plan_manipulations(run: str | Path | RunFolder, options: ManipulationOptions | None) -> ManipulationPlan:
    """The manipulation sweep of a run folder whose extract and selectivity stages finished (heads
    trained or read from the run's cache; nothing written but that cache)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    recorded = folder.extract_options
    options = options or ManipulationOptions()
    stimuli, config = read_stimuli(folder.path), folder.extracted_config()
    device = pick_device(recorded.device)
    swept = options.resolved(list(config["network"]["sites"]), device)
    units = folder.table("units.csv" if options.gain_form == "tuning" else "selective.csv")
    network = build_network(recorded).to(device)
    if network.readout_site != config["network"]["readout_site"]:
        raise InputError(f"the network reads out at {network.readout_site}, the run's responses at "
                         f"{config['network']['readout_site']}: rerun `emoselect extract`")  # fmt: skip
    heads, readout = trained_heads(folder, stimuli, config, options.readout)
    names = category_names(stimuli.table)
    means = training_means(folder, stimuli, swept.layers)
    plans = {
        layer: plan_layer(
            layer,
            network.units[layer],
            units,
            swept,
            options,
            seed=folder.seed,
            categories=names,
            means=means[layer],
        )
        for layer in swept.layers
    }
    heads_key = ResultCache.key(*[h.weight for h in heads], *[h.bias for h in heads])
    site = config["network"]["readout_site"]
    intact = {d: head_scores(heads, load_responses(folder.path, d, [], site).readout) for d in stimuli.datasets}
    chance = head_tests(intact, stimuli.table, heads, options.transfer, folder.seed, heads_key)
    return ManipulationPlan(
        options=options,
        network=network,
        heads=heads,
        readout=readout,
        evaluated=stimuli.table[stimuli.table["split"].isin(["val", "test"])].reset_index(drop=True),
        chance=chance,
        plans=plans,
        blocks={layer: condition_blocks(plans[layer].conditions, options.sets_per_shard) for layer in swept.layers},
        keys={layer: ResultCache.key(response_key(network), heads_key, layer) for layer in swept.layers},
        swept=swept,
        device=device,
    )


def training_means(run: RunFolder, stimuli: Stimuli, layers: list[str]) -> dict[str, np.ndarray]:
    """Per layer, each unit's mean response (spatial mean, as extracted) over the heads' training
    pictures of every dataset: float32 [n_units], what mean-ablation sets a unit to."""
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for dataset in stimuli.datasets:
        train = (stimuli.of(dataset)["split"] == "train").to_numpy()
        responses = load_responses(run.path, dataset, layers)
        for layer in layers:
            parts[layer].append(np.asarray(responses.sites[layer], np.float64)[train])
    return {layer: np.concatenate(chunks).mean(axis=0).astype(np.float32) for layer, chunks in parts.items()}


def sweep_margins(
    plan: ManipulationPlan,
    run: str | Path | RunFolder,
    only: dict[str, list[tuple[int, int]]] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Margins of every layer's conditions, or of the ``only`` blocks ({layer: [(start, stop), ...]},
    a cluster job's shards), served from or stored in the run's result cache
    (``RUN/cache/manipulation``); the blocks of a layer share one walk down the network per chunk.

    Returns {layer: float32 [n_conditions (of those blocks, in order), n_evaluated, n_heads]}."""
    return evaluate_cached(
        plan.network,
        list(zip(plan.evaluated["path"], plan.evaluated["sha1"])),
        {layer: layer_plan.gains for layer, layer_plan in plan.plans.items()},
        plan.heads,
        ResultCache(Path(run) / "cache" / "manipulation", plan.keys),
        plan.blocks if only is None else only,
        Execution(chunk_images=plan.options.chunk_images, batch_samples=plan.options.batch_samples, progress=progress),
        offsets={layer: p.offsets for layer, p in plan.plans.items() if p.offsets is not None},
    )


def sequential_design(plan: ManipulationPlan) -> Sequential:
    """How the tests use the random sets: the options' hits, the sweep's caps, and the random sets
    of each category's first block (always evaluated) as the described ones."""
    swept = plan.swept
    return Sequential(
        hits=plan.options.hits,
        gain_sets=swept.repeats,
        lesion_sets=swept.lesioned,
        described=min(swept.lesioned, plan.options.sets_per_shard - 1),
    )


def _category(plan: LayerPlan, block: tuple[int, int]) -> str:
    """The category whose unit sets fill a block of conditions ('' for the intact row)."""
    return str(plan.conditions["emotion"].iloc[block[0]])


def sequential_sweep(
    plan: ManipulationPlan, run: RunFolder, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[tuple[int, int]]]]:
    """The manipulation sweep with sequential Monte Carlo tests: the intact row and each category's
    first block of unit sets (the selective set and the first random sets) on every layer, then
    round by round the next block of each layer and category with a test that still needs random
    sets (:func:`emoselect.analysis.experiments.summarise`'s ``complete``), until none does. Every
    block's margins go through the result cache, so a resumed or sharded sweep computes nothing
    twice, and the p-values depend only on the random sets in the order drawn, not on how many
    were evaluated beyond what a test needed.

    Returns (manipulation, summary, the evaluated blocks per layer)."""
    sequential = sequential_design(plan)
    chosen: dict[str, list[tuple[int, int]]] = {}
    for layer, blocks in plan.blocks.items():
        firsts = dict.fromkeys(_category(plan.plans[layer], b) for b in blocks[1:])
        chosen[layer] = [blocks[0]] + [
            next(b for b in blocks[1:] if _category(plan.plans[layer], b) == c) for c in firsts
        ]
    while True:
        margins = sweep_margins(plan, run, chosen, progress)
        tables = [
            score_conditions(
                plan.plans[layer].rows(chosen[layer]), margins[layer], plan.heads, plan.evaluated, plan.options.transfer
            )
            for layer in plan.plans
        ]
        manipulation = pd.concat(tables, ignore_index=True)
        summary = summarise(manipulation, plan.options.alpha, plan.chance, sequential)
        more = False
        for (layer, emotion), rows in summary.groupby(["layer", "emotion"], sort=False):
            if bool(rows["complete"].all()):
                continue
            remaining = [
                b
                for b in plan.blocks[layer]
                if b not in chosen[layer] and _category(plan.plans[layer], b) == emotion and b[0] > 0
            ]
            if remaining:
                chosen[layer] = sorted([*chosen[layer], remaining[0]])
                more = True
        if not more:
            return manipulation, summary, chosen


def _manipulate(
    run: RunFolder, out: StageOutput, options: ManipulationOptions | None, progress: bool
) -> tuple[Manipulated, float]:
    """Plan, sweep, score and write the stage's tables and figures into ``out``; returns what the
    stage produced and the false discovery rate (for claims.csv)."""
    planned = plan_manipulations(run, options)
    options, network, layers = planned.options, planned.network, list(planned.plans)
    out.write_csv("readout.csv", planned.readout)
    save_heads(run.file("heads.npz"), planned.heads)
    out.add(run.file("heads.npz"))
    start = time.time()
    manipulation, summary, evaluated = sequential_sweep(planned, run, progress)
    seconds = time.time() - start
    summary["gain_rescales_readout"] = summary["layer"].map(
        {layer: gain_rescales_readout(network, layer) for layer in layers}
    )
    table1 = table_one(summary)
    for name, table in (
        ("manipulation.csv", manipulation),
        ("manipulation_summary.csv", summary),
        ("table1.csv", table1),
    ):
        table["readout_site"] = network.readout_site
        out.write_csv(name, table)
    out.add(*_draw_manipulations(run, manipulation, summary, options.alpha))
    conditions = sum(int(b - a) for blocks in evaluated.values() for a, b in blocks)
    run.update_config(manipulation={**_manipulation_settings(options, planned, seconds), "conditions": conditions})
    return Manipulated(planned.readout, manipulation, summary, table1, layers, seconds), options.alpha


def _manipulation_settings(options: ManipulationOptions, planned: ManipulationPlan, seconds: float) -> dict:
    """config.yaml's manipulation section: the options, what was swept, the readout and the engine."""
    return {
        **as_dict(options),
        "profile": options.profile_for(planned.device),
        **dataclasses.asdict(planned.swept),
        "readout_site": planned.network.readout_site,
        "engine": planned.network.engine,
        "engine_seconds": round(seconds, 1),
    }


def _draw_manipulations(run: RunFolder, manipulation: pd.DataFrame, summary: pd.DataFrame, alpha: float) -> list[Path]:
    """The lesion, gain and transfer figures (with the first control's rows where it has them) and the
    gain curves per heads/test pair; returns the figure files."""
    shown = summary.assign(network=control_name(1) if run.is_control else "trained")
    control_summary = run.control(1).optional_table("manipulation_summary.csv")
    if control_summary is not None:  # the first control's rows below the trained network's
        shown = pd.concat([shown, control_summary.assign(network=control_name(1))], ignore_index=True)
    written = [figures.attention_change(shown, run.file("figures/attention_change.png"), alpha)]
    pairs = list(dict.fromkeys(zip(manipulation["train_dataset"], manipulation["test_dataset"])))
    for number, (train, test) in enumerate(pairs):
        name = "attention_curves.png" if number == 0 else f"attention_curves_{number + 1}.png"
        written.append(figures.attention_curves(manipulation, run.file(f"figures/{name}"), train, test))
    written.append(figures.lesion(shown, run.file("figures/lesion.png"), alpha))
    written.append(figures.lesion(shown, run.file("figures/ablation.png"), alpha, mean=True))
    if (summary["train_dataset"] != summary["test_dataset"]).any():
        written.append(figures.transfer(shown, run.file("figures/transfer.png"), alpha))
    return written


def manipulated_runs(run: str | Path) -> list[Path]:
    """The run folders :func:`manipulate_all` manipulates, in its order: the first control (if any), the run."""
    return [*[control.path for control in RunFolder(Path(run)).controls[:1]], Path(run)]


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
