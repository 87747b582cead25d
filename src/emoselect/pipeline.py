"""The stages as functions on a run folder: the Python API behind the CLI.

``extract_stage`` makes a run folder (stimuli, responses, config); each later stage reads what the
earlier ones left there and writes the parts it owns (the README's run-folder table).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import figures, manifest
from .claims import scorecard
from .config import ExtractOptions, extract_options, read_config, update_config
from .experiments import (
    PROFILES,
    LayerPlan,
    ManipulationOptions,
    condition_blocks,
    plan_layer,
    score_conditions,
    select_sites,
    summarise,
    table_one,
)
from .files import check_free_space, check_writable, file_digest, run_lock, savez_atomic, write_csv_atomic
from .manipulation import ResultCache, evaluate_cached, gain_rescales_readout
from .network import Network, keep_sites, load_network
from .options import as_dict
from .problems import InputError
from .readout import Head, ReadoutOptions, score_heads, train_heads
from .records import read_table
from .report import write_report
from .responses import (
    Responses,
    default_cache_dir,
    extract,
    load_responses,
    pick_device,
    prefetch_responses,
    response_key,
)
from .selectivity import SelectivityOptions, SelectivityResult, analyse, trend_difference
from .stats import rank_p_values
from .stimuli import (
    Stimuli,
    build_stimuli,
    category_counts,
    category_names,
    dataset_name_from,
    read_stimuli,
    write_stimuli,
)

# what later stages write; removed when a run folder is re-extracted with other options
DOWNSTREAM = [
    "units.csv",
    "selective.csv",
    "layers.csv",
    "overlap.csv",
    "examples.csv",
    "confounds.csv",
    "trends.csv",
    "claims.csv",
    "readout.csv",
    "heads.npz",
    "manipulation.csv",
    "manipulation_summary.csv",
    "table1.csv",
    "cache",
    "figures",
    "report.html",
    "controls.csv",
]


@dataclass
class Extracted:
    """What ``extract_stage`` produced: the stimuli, the network and each dataset's responses."""

    run: Path
    stimuli: Stimuli
    network: Network
    responses: dict[str, Responses]


def cache_dir(options: ExtractOptions) -> Path:
    return Path(options.cache).expanduser() if options.cache else default_cache_dir()


def build_network(options: ExtractOptions) -> Network:
    """The network the options name, probed at ``options.sites`` (default: every probe site)."""
    seed = options.seed if options.init_seed is None else options.init_seed
    network = load_network(
        options.model,
        options.weights,
        seed,
        options.grayscale,
        options.readout,
        options.resize,
        options.crop,
        options.token_pool,
        options.precision,
    )
    return (
        keep_sites(network, select_sites(options.sites, list(network.sites), "--sites")) if options.sites else network
    )


def control_options(options: ExtractOptions, trained: Network, k: int = 1) -> ExtractOptions:
    """Extract options of the k-th seeded random-init control of ``trained`` (k = 1, 2, ...): same
    pictures and splits (the trained network's resize and crop, whatever the weights' own
    convention), same readout site; initial weights seeded by seed + k - 1 — skipping the network's
    own seed when it has random weights itself, so that no control is a copy of it."""
    seeds = [
        seed
        for seed in range(options.seed, options.seed + k + 1)
        if trained.weights != "random" or seed != trained.seed
    ]
    return dataclasses.replace(
        options,
        weights="random",
        init_seed=seeds[k - 1],
        readout=trained.readout_site,
        resize=trained.prep.resize,
        crop=trained.prep.crop,
    )


def control_folder(run: Path, k: int) -> Path:
    """Where the k-th random-init control lives: RUN/control, RUN/control2, RUN/control3, ..."""
    return run / ("control" if k == 1 else f"control{k}")


def control_folders(run: str | Path) -> list[Path]:
    """The run's random-init controls that were extracted, in order."""
    folders, k = [], 1
    while (control_folder(Path(run), k) / "config.yaml").is_file():
        folders.append(control_folder(Path(run), k))
        k += 1
    return folders


def dataset_provenance(stimuli: Stimuli, options: ExtractOptions) -> dict:
    counts = category_counts(stimuli.table)
    out = {}
    for name in stimuli.datasets:
        source = Path(stimuli.sources[name])
        out[name] = {
            "path": str(Path(options.datasets[name]).resolve()),
            "format": stimuli.formats[name],
            "scale": list(stimuli.scales[name]),
            "ratings_file": str(source),
            "ratings_sha256": file_digest(source, "sha256") if source.is_file() else None,
            "n_images": int(counts.loc[name, "total"]),
            "categories": {k: int(v) for k, v in counts.loc[name].drop("total").items()},
        }
    return out


def _clear_stale(run: Path, options: ExtractOptions) -> None:
    """If the run folder was made with other extract options, its later outputs no longer apply."""
    config_path = run / "config.yaml"
    if not config_path.is_file():
        return
    old = read_config(run).get("extract")
    execution = ("batch_size", "device", "workers", "cache")  # how, not what: the numbers do not change

    def what(data: dict) -> dict:
        return {k: v for k, v in data.items() if k not in execution}

    if old is None or what(ExtractOptions.from_dict(old).as_dict()) == what(options.as_dict()):
        return
    controls = [path.name for path in run.glob("control*") if path.is_dir()]
    for name in DOWNSTREAM + ["responses"] + controls:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _check_room(stimuli: Stimuli, network: Network, run: Path, cache: Path) -> None:
    """Before any picture is computed: the file systems of the cache and the run folder have room for
    the responses (float32, one vector per picture; a 10% margin)."""
    width = sum(network.units.values()) + network.readout_dim + 8
    pictures = stimuli.table["sha1"].nunique()
    check_free_space(cache, int(1.1 * pictures * width * 4), "the response cache")
    check_free_space(run, int(1.1 * len(stimuli.table) * width * 4), "the run folder's responses")


def extract_stage(
    options: ExtractOptions, out: str | Path, progress: bool = True, network: Network | None = None
) -> Extracted:
    """Read the picture sets, record responses and write ``stimuli.csv``, ``problems.csv``,
    ``responses/`` and ``config.yaml`` to a run folder (under its lock; manifest entry ``extract``).

    Parameters
    ----------
    options : ExtractOptions
        Picture sets, categories, split, network, weights and how to compute.
    out : path
        The run folder (made if needed).
    progress : bool
        Show progress bars.
    network : Network, optional
        The network ``options`` describe, if already built.

    Returns
    -------
    Extracted
        The run folder, the stimuli, the network and each dataset's responses.
    """
    run, cache = Path(out), cache_dir(options)
    pick_device(options.device)  # an unusable device is an error before anything is written
    check_writable(cache, "the cache folder")
    network = network or build_network(options)
    stimuli = build_stimuli(
        options.datasets,
        options.formats,
        options.scales,
        overrides=options.overrides,
        thresholds=options.thresholds,
        margin=options.margin,
        split=options.split,
        seed=options.seed,
        limit=options.limit,
        cache_dir=cache,
        progress=progress,
        max_pixels=options.max_pixels,
        category_column=options.categories,
    )
    run.mkdir(parents=True, exist_ok=True)
    with run_lock(run):
        _clear_stale(run, options)
        manifest.begin(run, "extract")
        _check_room(stimuli, network, run, cache)
        responses = extract(stimuli, network, run, cache, options.batch_size, options.device, options.workers, progress)
        write_stimuli(stimuli, run)
        figures.stimuli(stimuli.table, stimuli.scales, run / "figures" / "stimuli.png")
        update_config(
            run, extract=options.as_dict(), datasets=dataset_provenance(stimuli, options), network=network.describe()
        )
        written = [run / "stimuli.csv", run / "problems.csv"]
        written += [p for p in (run / "responses").rglob("*") if p.is_file() and not p.name.startswith(".")]
        manifest.finish(run, "extract", written)
    return Extracted(run, stimuli, network, responses)


def inspect_dataset(
    path: str | Path,
    fmt: str | None = None,
    scale: str | None = None,
    name: str | None = None,
    cache: str | None = None,
    progress: bool = True,
    categories: str | None = None,
) -> Stimuli:
    """Read one picture set as ``extract`` would (format, categories, image checks) without a network.

    Parameters
    ----------
    path : path
        The set's folder or ratings file.
    fmt : str, optional
        Force a format.
    scale : str, optional
        Valence scale ``'LOW-HIGH'`` (needed for ``csv``).
    name : str, optional
        The dataset's name (default: from the folder's name).
    cache : str, optional
        Cache folder for the picture checks.
    progress : bool
        Show a progress bar.
    categories : str, optional
        Take categories from this ratings column (``--categories``).

    Returns
    -------
    Stimuli
        One dataset's stimuli and problems.
    """
    name = name or dataset_name_from(path)
    return build_stimuli(
        {name: path},
        {name: fmt} if fmt else None,
        {name: scale} if scale else None,
        cache_dir=Path(cache) if cache else default_cache_dir(),
        progress=progress,
        category_column=categories,
    )


def extracted_config(run: str | Path) -> dict:
    """A run folder's config.yaml, which must hold what `extract` recorded about the network."""
    config = read_config(run)
    if "network" not in config:
        raise InputError(f"{Path(run) / 'config.yaml'} has no network section: run `emoselect extract` first")
    return config


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


def control_name(k: int) -> str:
    return "random init" if k == 1 else f"random init {k}"


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
        figures.example_valence(result.examples, result.top_images, folder / "example_valence.png"),
    ]
    if result.confounds is not None:
        written.append(figures.confounds(result.confounds, folder / "confounds.png"))
    update_config(run, selectivity={**as_dict(options), "pair_note": result.pair_note})
    manifest.finish(run, "selectivity", written, inputs=("extract",))
    claims_stage(run, options.alpha)
    return result


def _read_table(run: Path, name: str, stage: str) -> pd.DataFrame:
    path = run / name
    if not path.is_file():
        raise InputError(f"{path} not found: run `emoselect {stage} {run}` first")
    return read_table(path)


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


def _save_heads(path: Path, heads: list[Head]) -> None:
    """Heads as one .npz (``<dataset>|<category>|weight``, ``|bias``, ``|best_epoch``), atomically."""
    arrays = {}
    for h in heads:
        arrays.update({f"{h.dataset}|{h.emotion}|weight": h.weight, f"{h.dataset}|{h.emotion}|bias": h.bias,
                       f"{h.dataset}|{h.emotion}|best_epoch": np.array(h.best_epoch)})  # fmt: skip
    savez_atomic(path, **arrays)


def _read_heads(path: Path) -> list[Head] | None:
    """Heads kept by :func:`trained_heads`, or None (absent or damaged: they are trained again)."""
    try:
        with np.load(path) as arrays:
            names = dict.fromkeys(name.rsplit("|", 1)[0] for name in arrays.files)
            heads = []
            for name in names:
                dataset, category = name.split("|", 1)
                weight, bias = arrays[f"{name}|weight"], arrays[f"{name}|bias"]
                heads.append(Head(dataset, category, weight, bias, int(arrays[f"{name}|best_epoch"])))
            return heads
    except (OSError, ValueError, KeyError, EOFError):
        return None


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


def is_control(run: Path) -> bool:
    """Whether a run folder is a random-init control of another run (RUN/control, RUN/control2, ...;
    not a run whose own network happens to have random weights)."""
    run = Path(run)
    named = run.name == "control" or (run.name.startswith("control") and run.name[len("control") :].isdigit())
    return (
        named
        and (run.parent / "config.yaml").is_file()
        and read_config(run).get("network", {}).get("weights") == "random"
    )


def _optional_csv(path: Path) -> pd.DataFrame | None:
    return read_table(path) if path.is_file() else None


def claims_stage(run: str | Path, alpha: float = 0.05) -> pd.DataFrame:
    """claims.csv: the paper's claims tested on this run's tables (see :mod:`emoselect.claims`),
    for the trained network and its random-init control(s). Reads only what earlier stages wrote.

    Parameters
    ----------
    run : path
        A run folder whose selectivity stage finished.
    alpha : float
        False discovery rate.

    Returns
    -------
    DataFrame
        The scorecard (as :func:`emoselect.scorecard`).
    """
    run = Path(run)
    with run_lock(run):
        manifest.require(run, "selectivity")
        manifest.begin(run, "claims")
        table = _claims(run, alpha)
        inputs = ("selectivity", "manipulate") if "manipulate" in manifest.read(run) else ("selectivity",)
        manifest.finish(run, "claims", [run / "claims.csv"], inputs=inputs)
    return table


def _claims(run: Path, alpha: float) -> pd.DataFrame:
    controls = [
        {
            "name": control_name(k),
            **{
                name: _optional_csv(folder / f"{file}.csv")
                for name, file in (("overlap", "overlap"), ("layers", "layers"), ("summary", "manipulation_summary"))
            },
        }
        for k, folder in enumerate(control_folders(run), 1)
    ]
    table = scorecard(
        _optional_csv(run / "trends.csv"),
        _optional_csv(run / "overlap.csv"),
        _optional_csv(run / "layers.csv"),
        _optional_csv(run / "manipulation_summary.csv"),
        controls,
        alpha,
        extract_options(run).seed,
    )
    write_csv_atomic(run / "claims.csv", table)
    return table


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
        Default: the defaults with the extract seed.
    manipulation : ManipulationOptions, optional
        None skips the heads and manipulations.
    controls : int, optional
        Random-init controls; None: the profile's (quick 2, paper 10).
    progress : bool
        Show progress bars.

    Returns
    -------
    Analysis
        The selectivity result, the manipulations (or None) and the report's path.
    """
    run = Path(out)
    controls = _control_count(options, manipulation, controls)
    trained = extract_stage(options, run, progress)
    with run_lock(run):  # the rest of the run is one writer's, controls included
        result = _controls_and_selectivity(run, options, trained, controls, selectivity, manipulation, progress)
        manipulated = manipulate_all(run, manipulation, progress) if manipulation is not None else None
        return Analysis(result, manipulated, write_report(run))


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
    run = Path(out)
    controls = _control_count(options, manipulation, controls)
    trained = extract_stage(options, run, progress)
    with run_lock(run):
        return _controls_and_selectivity(run, options, trained, controls, selectivity, manipulation, progress)


def _control_count(options: ExtractOptions, manipulation: ManipulationOptions | None, controls: int | None) -> int:
    """Random-init controls to extract: ``controls``, or the manipulation profile's (quick 2, paper 10)."""
    if controls is None:
        profile = (manipulation or ManipulationOptions()).profile_for(pick_device(options.device))
        controls = PROFILES[profile]["controls"]
    if controls < 0:
        raise InputError(f"--controls {controls}: must be an integer >= 0")
    return controls


def _controls_and_selectivity(
    run: Path,
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
        extract_stage(plan, control_folder(run, k), progress, network)
    k = controls + 1
    while control_folder(run, k).is_dir():  # controls of an earlier, larger run no longer apply
        shutil.rmtree(control_folder(run, k))
        k += 1
    update_config(run, run={"controls": controls, "manipulate": manipulation is not None})
    return selectivity_stage(run, selectivity or SelectivityOptions(seed=options.seed), progress)


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
