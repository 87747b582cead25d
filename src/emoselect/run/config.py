"""The run folder's ``config.yaml``: every option that produced the run, and where the inputs came from.

Each stage owns one section (``extract``, ``selectivity``, ``manipulation``) and rewrites only that
section; ``datasets``, ``network`` and ``environment`` hold provenance (file hashes, versions).
The file is written atomically.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..base.files import write_text_atomic
from ..base.options import (
    PAIRS,
    as_dict,
    check,
    check_value,
    declared_fields,
    flag_of,
    from_dict,
    name_of,
    option,
    shown,
)
from ..base.problems import InputError, yaml_error
from ..pictures.images import MAX_PIXELS
from ..pictures.stimuli import DEFAULT_SPLIT, PAPER_THRESHOLDS

MAX_SEED = 2**32 - 1  # seeds from 0 to 4294967295


@dataclass
class ExtractOptions:
    """Everything that decides the stimuli and the responses of a run (see ``emoselect extract -h``).

    ``seed`` seeds the splits and every random stream; ``init_seed`` (default: ``seed``) the random
    weights of ``weights='random'``, so that controls with different initial weights share the splits.
    Values are checked on construction (:mod:`emoselect.options`).
    """

    datasets: dict[str, str] = option(
        factory=dict,
        kind=PAIRS,
        metavar="NAME=PATH",
        help="a picture set: its folder (or ratings file); repeat for several",
        flag="--dataset",
    )
    formats: dict[str, str] = option(
        factory=dict,
        kind=PAIRS,
        metavar="NAME=FMT",
        flag="--format",
        help="force a format: oasis, iaps, naps, gaped, emotion6, csv",
    )
    scales: dict[str, str] = option(
        factory=dict,
        kind=PAIRS,
        metavar="NAME=LOW-HIGH",
        flag="--scale",
        help="valence scale (needed for csv), e.g. 1-9",
    )
    overrides: str | None = option(
        None, "category overrides: image_id,category[,dataset]", optional=True, metavar="CSV"
    )
    categories: str | None = option(
        None,
        "take categories from this column of the ratings (a csv column such as category or emotion; Emotion6: "
        "dominant) instead of valence thresholds",
        optional=True,
        metavar="COLUMN",
    )
    thresholds: tuple[float, float] = option(
        PAPER_THRESHOLDS,
        "valence boundaries on the 1-9 scale (the paper's)",
        kind=float,
        nargs=2,
        low=1,
        high=9,
        metavar=("LOW", "HIGH"),
    )
    margin: float = option(
        0.0, "pictures within this distance of a boundary (1-9 scale) are 'unknown'", kind=float, low=0
    )
    split: tuple[float, float, float, float] = option(
        DEFAULT_SPLIT,
        "fractions of each category that choose the selective units (UNITS) and train, validate and "
        "test the readout heads; UNITS 0: units chosen on the heads' training pictures (the paper)",
        kind=float,
        nargs=4,
        low=0,
        high=1,
        metavar=("UNITS", "TRAIN", "VAL", "TEST"),
    )
    seed: int = option(
        0, "seed for splits, random weights and random unit sets", kind=int, low=0, high=MAX_SEED
    )  # a control's weights take seed + k: the bound keeps every stream within torch's seeds
    init_seed: int | None = option(
        None, "seed of random weights (default: --seed)", kind=int, low=0, high=MAX_SEED, optional=True, cli=False
    )
    limit: int | None = option(
        None,
        "a seeded sample of N pictures of each set, stratified by category (a quick look)",
        kind=int,
        low=1,
        optional=True,
    )
    model: str = option(
        "vgg16",
        "torchvision name (vgg16, resnet50, vit_b_16, ...), timm:NAME, openclip:ARCH[@TAG] or module.path:factory",
    )
    weights: str = option("imagenet", "imagenet (or pretrained), random, or a state-dict file")
    token_pool: str = option(
        "patch",
        "transformer units: mean over patch tokens, the class token, or all tokens",
        choices=("patch", "cls", "all"),
    )
    grayscale: bool = option(False, "show the pictures in gray (the journal version)", kind=bool)
    sites: list[str] | None = option(
        None,
        "record only these probe sites, by name or range (conv4_1:conv5_3; `emoselect sites MODEL` lists them)",
        optional=True,
        nargs="+",
        metavar="SITE",
    )
    readout: str = option("auto", "readout site (auto, pooled, pool5, fc6, fc7, ...; `emoselect sites` lists them)")
    resize: int | None = option(
        None,
        "short side in pixels before the centre crop (default: the weights' own, 256 for files and random weights)",
        kind=int,
        low=16,
        optional=True,
    )
    crop: int | None = option(
        None, "centre crop in pixels (default: the weights' own, 224)", kind=int, low=16, optional=True
    )
    max_pixels: int = option(
        MAX_PIXELS, "pictures with more pixels are skipped and listed (a memory guard)", kind=int, low=1
    )
    precision: str = option(
        "fp32",
        "arithmetic of the forward passes (extraction and manipulations): fp32, or bf16/fp16 autocast "
        "(faster where supported; see docs/performance.md for its agreement with fp32)",
        choices=("fp32", "bf16", "fp16"),
    )
    batch_size: int = option(
        32,
        "pictures decoded per batch (forward passes run 8 at a time: responses do not depend on it)",
        kind=int,
        low=1,
    )
    device: str = option("auto", "auto, cpu, cuda, cuda:1, mps")
    workers: int | None = option(
        None, "picture-decoding processes (default: cores - 1, at most 4)", kind=int, low=0, optional=True
    )
    cache: str | None = option(None, "cache folder (default $EMOSELECT_CACHE or ~/.cache/emoselect)", optional=True)

    def __post_init__(self) -> None:
        if self.split is not None and not isinstance(self.split, str) and len(self.split) == 3:
            self.split = (0.0, *self.split)  # config.yaml from before the units split: the paper's design
        check(self)
        if not self.datasets:
            raise InputError(
                f"{name_of('datasets', '--dataset')} is needed: give at least one picture set as NAME=PATH"
            )
        low, high = self.thresholds
        if not low < high:
            raise InputError(
                f"{shown('thresholds', self.thresholds, typed=f'{low:g} {high:g}')}: LOW must be below HIGH"
            )
        if not (1 < low - self.margin and high + self.margin < 9 and self.margin < (high - low) / 2):
            raise InputError(
                f"{shown('margin', self.margin, typed=f'{self.margin:g}')} with {shown('thresholds', self.thresholds, typed=f'{low:g} {high:g}')} leaves a "
                "category empty: "
                f"need 1 < LOW - margin, HIGH + margin < 9 and margin < (HIGH - LOW) / 2"
            )
        if abs(sum(self.split) - 1) > 1e-6 or min(self.split[1:]) <= 0:
            typed = " ".join(f"{v:g}" for v in self.split)
            raise InputError(
                f"{shown('split', self.split, typed=typed)}: four fractions (units, train, val, test) summing to 1, "
                "train, val and test above 0"
            )
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise InputError(
                f"{shown('crop', self.crop, typed=str(self.crop))} is larger than {shown('resize', self.resize, typed=str(self.resize))}"
            )

    @classmethod
    def checked_network(cls, **values: Any) -> dict[str, Any]:
        """The network options among ``values`` (model, weights, seed, readout, resize, crop, ...)
        checked as this record checks them, for commands that build a network without pictures
        (``emoselect sites``); an :class:`InputError` on the first invalid one."""
        specs = {f.name: (f, spec) for f, spec in declared_fields(cls)}
        out = {name: check_value(name, value, specs[name][1], flag_of(*specs[name])) for name, value in values.items()}
        if out.get("resize") is not None and out.get("crop") is not None and out["crop"] > out["resize"]:
            raise InputError(f"--crop {out['crop']} is larger than --resize {out['resize']}")
        return out

    @property
    def boundaries(self) -> tuple[float, float] | None:
        """The valence thresholds (1-9 scale) that made the categories, or None where the categories
        come from a ratings column (``categories``): what the figures draw as category boundaries."""
        return None if self.categories else tuple(self.thresholds)  # type: ignore[return-value]

    def as_dict(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExtractOptions:
        return from_dict(cls, data, "extract")


@dataclass
class Cluster:
    """Where a sweep's networks run (see ``emoselect sweep -h``). ``inline``: one after another in
    this process; ``local`` (processes on this machine) and ``slurm`` (a SLURM job array), through
    submitit (extra ``emoselect[cluster]``): a job per network up to selectivity, then its
    manipulation shards as jobs, then the merge in this process."""

    executor: str = option(
        "inline",
        "inline: one network after another here; local: submitit jobs on this machine; slurm: a SLURM job array",
        choices=("inline", "local", "slurm"),
    )
    partition: str | None = option(None, "SLURM partition", optional=True)
    gpus_per_job: int = option(0, "GPUs per SLURM job", kind=int, low=0)
    time_limit: int = option(240, "minutes per job", kind=int, low=1, metavar="MINUTES")
    array_parallelism: int = option(
        16, "jobs running at once (slurm: the array's limit; local: processes, the shards spread over them)",
        kind=int, low=1,
    )  # fmt: skip
    shards_per_job: int = option(1, "manipulation shards (blocks of conditions) per SLURM job", kind=int, low=1)
    retries: int = option(1, "resubmissions of a crashed job before it is reported", kind=int, low=0)

    def __post_init__(self) -> None:
        check(self)


def environment() -> dict:
    """Versions of Python and of the libraries that compute the numbers (from the installed packages'
    metadata where not loaded, so that the run layer never loads torch; the GPU's name where torch is
    loaded and sees one)."""
    import numpy
    import pandas
    import scipy

    from ..base.version import __version__

    torch = sys.modules.get("torch")  # loaded by every stage that computes; never imported here
    return {
        "emoselect": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None,
    }


def _version(package: str) -> str | None:
    """A package's version: the loaded module's own (``2.4.1+cu121``), else the installed metadata's, else None."""
    from importlib.metadata import PackageNotFoundError, version

    if package in sys.modules:
        return str(sys.modules[package].__version__)
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def read_config(run: str | Path) -> dict:
    """A run folder's config.yaml as a dict."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{path} not found: is {run} a run folder? (`emoselect extract ... --out {run}` makes one)")
    return _read_yaml(path)


def _read_yaml(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise InputError(f"{path}: cannot read it ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from error
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a run's config.yaml (a mapping of sections)")
    return config


# config.yaml: the option sections a run can be repeated from, and the provenance recorded beside them
OPTION_SECTIONS = ("extract", "selectivity", "manipulation", "run")
PROVENANCE_SECTIONS = ("datasets", "network", "environment", "created", "updated")
RUN_KEYS = ("controls", "manipulate")  # the `run` section: what `emoselect run` did beyond the stages


def _check_run_section(path: Path, run: dict) -> None:
    """The ``run`` section's values: ``controls`` a whole number >= 0 (or null: the profile's),
    ``manipulate`` true or false (a YAML string such as "no" is not a boolean)."""
    controls = run.get("controls")
    if controls is not None and (isinstance(controls, bool) or not isinstance(controls, int) or controls < 0):
        raise InputError(f"--config {path}: run.controls must be a whole number >= 0, not {controls!r}")
    manipulate = run.get("manipulate", True)
    if not isinstance(manipulate, bool):
        raise InputError(f"--config {path}: run.manipulate must be true or false, not {manipulate!r}")


def recorded_options(path: str | Path) -> dict:
    """The option sections of a config.yaml, to repeat its run (``emoselect run --config``); dataset
    and weight paths that no longer resolve from here are replaced by the absolute paths recorded
    beside them. An unknown section or key of the ``run`` section is an error naming it."""
    path = Path(path)
    config = _read_yaml(path)
    known = OPTION_SECTIONS + PROVENANCE_SECTIONS
    unknown = [key for key in config if key not in known] + [k for k in config.get("run") or {} if k not in RUN_KEYS]
    if unknown:
        raise InputError(f"--config {path}: unknown section or option {unknown[0]!r} (sections: {', '.join(known)})")
    for section in OPTION_SECTIONS:
        if not isinstance(config.get(section) or {}, dict):
            raise InputError(f"--config {path}: the {section} section must be a mapping of options")
    _check_run_section(path, config.get("run") or {})
    extract = dict(config.get("extract") or {})
    if not isinstance(extract.get("datasets") or {}, dict):
        raise InputError(f"--config {path}: extract.datasets must be a mapping NAME: PATH, not {extract['datasets']!r}")
    provenance = config.get("datasets") or {}
    extract["datasets"] = {
        name: folder if Path(folder).exists() or name not in provenance else provenance[name].get("path", folder)
        for name, folder in (extract.get("datasets") or {}).items()
    }
    weights, recorded_weights = extract.get("weights"), (config.get("network") or {}).get("weights")
    if weights not in (None, "imagenet", "pretrained", "random") and not Path(weights).exists() and recorded_weights:
        extract["weights"] = recorded_weights
    return {**{section: config.get(section) or {} for section in OPTION_SECTIONS}, "extract": extract}


def write_config(run: str | Path, config: dict) -> None:
    write_text_atomic(Path(run) / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def update_config(run: str | Path, /, **sections: object) -> dict:
    """Replace the named sections of a run's config.yaml (creating it if needed), stamping the time."""
    path = Path(run) / "config.yaml"
    config = read_config(run) if path.is_file() else {}
    config.update(sections)
    config.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    config["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config["environment"] = environment()
    write_config(run, config)
    return config


def extract_options(run: str | Path) -> ExtractOptions:
    """The extract options a run folder was made with."""
    config = read_config(run)
    if "extract" not in config:
        raise InputError(f"{Path(run) / 'config.yaml'} has no extract section: run `emoselect extract` first")
    return ExtractOptions.from_dict(config["extract"])
