"""The extract stage: picture sets and a network -> a run folder's stimuli, responses and config.

``extract_stage`` makes a run folder (stimuli.csv, problems.csv, responses/, config.yaml); the
random-init controls of a run are extracted with :func:`control_options`. ``inspect_dataset`` reads a
picture set as extraction would, without a network.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..analysis.experiments import select_sites
from ..analysis.records import Responses
from ..base.files import check_free_space, check_writable, file_digest
from ..base.problems import InputError
from ..engine.network import Network
from ..engine.probe import keep_sites, load_network
from ..engine.responses import default_cache_dir, extract, pick_device
from ..output import figures
from ..pictures.stimuli import Stimuli, build_stimuli, category_counts, dataset_name_from, write_stimuli
from ..run.config import ExtractOptions
from ..run.folder import CONTROL, DOWNSTREAM, RunFolder


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
        grayscale=options.grayscale,
        readout=options.readout,
        resize=options.resize,
        crop=options.crop,
        token_pool=options.token_pool,
    ).at_precision(options.precision)
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


def _clear_stale(run: RunFolder, options: ExtractOptions) -> None:
    """If the run folder was made with other extract options, its later outputs no longer apply."""
    config_path = run / "config.yaml"
    if not config_path.is_file():
        return
    old = run.config.get("extract")
    execution = ("batch_size", "device", "workers", "cache")  # how, not what: the numbers do not change

    def what(data: dict) -> dict:
        return {k: v for k, v in data.items() if k not in execution}

    if old is None or what(ExtractOptions.from_dict(old).as_dict()) == what(options.as_dict()):
        return
    controls = [path.name for path in run.path.glob(f"{CONTROL}*") if path.is_dir()]
    for name in DOWNSTREAM + ["responses"] + controls:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _check_room(stimuli: Stimuli, network: Network, run: RunFolder, cache: Path) -> None:
    """Before any picture is computed: the file systems of the cache and the run folder have room for
    the responses (float32, one vector per picture; a 10% margin)."""
    width = sum(network.units.values()) + network.readout_dim + 8
    pictures = stimuli.table["sha1"].nunique()
    check_free_space(cache, int(1.1 * pictures * width * 4), "the response cache")
    check_free_space(run.path, int(1.1 * len(stimuli.table) * width * 4), "the run folder's responses")


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
    run, cache = RunFolder(Path(out)), cache_dir(options)
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
    run.path.mkdir(parents=True, exist_ok=True)
    with run.lock():
        _clear_stale(run, options)
        with run.stage("extract") as out_files:
            _check_room(stimuli, network, run, cache)
            responses = extract(
                stimuli, network, run.path, cache, options.batch_size, options.device, options.workers, progress
            )
            write_stimuli(stimuli, run.path)
            figures.stimuli(stimuli.table, stimuli.scales, run.file("figures/stimuli.png"), options.boundaries)
            run.update_config(
                extract=options.as_dict(), datasets=dataset_provenance(stimuli, options), network=network.describe()
            )
            out_files.add(run.file("stimuli.csv"), run.file("problems.csv"))
            out_files.add(*[p for p in (run / "responses").rglob("*") if p.is_file() and not p.name.startswith(".")])
    return Extracted(run.path, stimuli, network, responses)


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
    wanted = Path(cache) if cache else default_cache_dir()
    folder: Path | None = wanted
    try:
        check_writable(wanted, "the picture-check cache")
    except InputError as error:  # looking needs no cache: check every picture again instead
        print(f"note: {error}; checking the pictures without it", file=sys.stderr)
        folder = None
    return build_stimuli(
        {name: path},
        {name: fmt} if fmt else None,
        {name: scale} if scale else None,
        cache_dir=folder,
        progress=progress,
        category_column=categories,
    )
