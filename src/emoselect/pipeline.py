"""The stages as functions on a run folder: the Python API behind the CLI.

``extract_stage`` makes a run folder (stimuli, responses, config); each later stage reads what the
earlier ones left there and writes the parts it owns (see DESIGN.md's run-folder layout).
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import ExtractOptions, extract_options, read_config, update_config
from .network import Network, load_network, sha256_of
from . import figures
from .problems import InputError
from .responses import Responses, default_cache_dir, extract, load_responses
from .selectivity import SelectivityOptions, SelectivityResult, analyse
from .stimuli import Stimuli, build_stimuli, category_counts, read_stimuli, write_stimuli

# what later stages write; removed when a run folder is re-extracted with other options
DOWNSTREAM = ["units.csv", "selective.csv", "layers.csv", "overlap.csv", "examples.csv", "confounds.csv", "readout.csv",
              "manipulation.csv", "manipulation_summary.csv", "manipulation_tests.csv", "table1.csv",
              "figures", "report.html", "heads", "control"]


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
    return load_network(options.model, options.weights, options.seed, options.grayscale, options.readout)


def dataset_provenance(stimuli: Stimuli, options: ExtractOptions) -> dict:
    counts = category_counts(stimuli.table)
    out = {}
    for name in stimuli.datasets:
        source = Path(stimuli.sources[name])
        out[name] = {"path": str(Path(options.datasets[name]).resolve()), "format": stimuli.formats[name],
                     "scale": list(stimuli.scales[name]), "ratings_file": str(source),
                     "ratings_sha256": sha256_of(source) if source.is_file() else None,
                     "n_images": int(counts.loc[name, "total"]),
                     "categories": {k: int(v) for k, v in counts.loc[name].drop("total").items()}}
    return out


def _clear_stale(run: Path, options: ExtractOptions) -> None:
    """If the run folder was made with other extract options, its later outputs no longer apply."""
    config_path = run / "config.yaml"
    if not config_path.is_file():
        return
    old = read_config(run).get("extract")
    if old is None or ExtractOptions.from_dict(old).as_dict() == options.as_dict():
        return
    for name in DOWNSTREAM + ["responses"]:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def extract_stage(options: ExtractOptions, out: str | Path, progress: bool = True) -> Extracted:
    """Read the picture sets, record responses and write ``stimuli.csv``, ``problems.csv``,
    ``responses/`` and ``config.yaml`` to the run folder ``out``."""
    run = Path(out)
    network = build_network(options)
    stimuli = build_stimuli(options.datasets, options.formats, options.scales, options.overrides, options.thresholds,
                            options.margin, options.split, options.seed, options.limit, cache_dir(options), progress)
    run.mkdir(parents=True, exist_ok=True)
    _clear_stale(run, options)
    responses = extract(stimuli, network, run, cache_dir(options), options.batch_size, options.device,
                        options.workers, progress)
    write_stimuli(stimuli, run)
    update_config(run, extract=options.as_dict(), datasets=dataset_provenance(stimuli, options),
                  network=network.describe())
    return Extracted(run, stimuli, network, responses)


def inspect_dataset(path: str | Path, fmt: str | None = None, scale: str | None = None, name: str | None = None,
                    cache: str | None = None, progress: bool = True) -> Stimuli:
    """Read one picture set as ``extract`` would (format, categories, image checks) without a network."""
    name = name or Path(path).name or "dataset"
    return build_stimuli({name: path}, {name: fmt} if fmt else None, {name: scale} if scale else None,
                         cache_dir=Path(cache) if cache else default_cache_dir(), progress=progress)



def load_run(run: str | Path) -> tuple[Stimuli, dict, dict[str, Responses]]:
    """A run folder's stimuli, config and responses (tuning sites only; readout features on demand)."""
    config = read_config(run)
    if "network" not in config:
        raise InputError(f"{Path(run) / 'config.yaml'} has no network section: run `emoselect extract` first")
    stimuli = read_stimuli(run)
    sites = list(config["network"]["sites"])
    responses = {d: load_responses(run, d, sites) for d in stimuli.datasets}
    return stimuli, config, responses


def write_selectivity(result: SelectivityResult, run: Path) -> None:
    """units.csv, selective.csv, layers.csv, overlap.csv, examples.csv (and confounds.csv)."""
    result.units.to_csv(run / "units.csv", index=False)
    result.selective.to_csv(run / "selective.csv", index=False)
    result.layers.to_csv(run / "layers.csv", index=False)
    result.overlap.to_csv(run / "overlap.csv", index=False)
    result.examples.to_csv(run / "examples.csv", index=False)
    if result.confounds is not None:
        result.confounds.to_csv(run / "confounds.csv", index=False)


def selectivity_stage(run: str | Path, options: SelectivityOptions | None = None,
                      progress: bool = True) -> SelectivityResult:
    """Selectivity tables and figures for a run folder (and for its random-init control, if present)."""
    run = Path(run)
    options = options or SelectivityOptions(seed=extract_options(run).seed)
    stimuli, config, responses = load_run(run)
    result = analyse(stimuli, responses, list(config["network"]["sites"]), options, progress)
    write_selectivity(result, run)
    control = None
    if (run / "control" / "config.yaml").is_file():
        c_stimuli, c_config, c_responses = load_run(run / "control")
        control = analyse(c_stimuli, c_responses, list(c_config["network"]["sites"]), options, progress)
        write_selectivity(control, run / "control")
        update_config(run / "control", selectivity={**dataclasses.asdict(options), "pair_note": control.pair_note})
    folder = run / "figures"
    figures.tuning_quality(result.layers, folder / "tuning_quality.png", control.layers if control else None)
    figures.overlap(result.overlap, folder / "overlap.png", control.overlap if control else None)
    figures.selective_fraction(result.overlap, folder / "selective_fraction.png", control.overlap if control else None)
    figures.example_neurons(result.examples, result.top_images, folder / "example_neurons.png")
    if result.confounds is not None:
        figures.confounds(result.confounds, folder / "confounds.png")
    update_config(run, selectivity={**dataclasses.asdict(options), "pair_note": result.pair_note})
    return result
