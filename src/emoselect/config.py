"""The run folder's ``config.yaml``: every option that produced the run, and where the inputs came from.

Each stage owns one section (``extract``, ``selectivity``, ``manipulation``) and rewrites only that
section; ``datasets``, ``network`` and ``environment`` hold provenance (file hashes, versions).
The file is written atomically.
"""
from __future__ import annotations

import dataclasses
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .files import write_text_atomic
from .problems import InputError
from .stimuli import DEFAULT_SPLIT, PAPER_THRESHOLDS


@dataclass
class ExtractOptions:
    """Everything that decides the stimuli and the responses of a run (see ``emoselect extract -h``).

    ``seed`` seeds the splits and every random stream; ``init_seed`` (default: ``seed``) the random
    weights of ``weights='random'``, so that controls with different initial weights share the splits.
    """

    datasets: dict[str, str]
    formats: dict[str, str] = field(default_factory=dict)
    scales: dict[str, str] = field(default_factory=dict)
    overrides: str | None = None
    thresholds: tuple[float, float] = PAPER_THRESHOLDS
    margin: float = 0.0
    split: tuple[float, float, float] = DEFAULT_SPLIT
    seed: int = 0
    init_seed: int | None = None
    limit: int | None = None
    model: str = "vgg16"
    weights: str = "imagenet"
    grayscale: bool = False
    readout: str = "auto"
    resize: int | None = None
    crop: int | None = None
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = None
    cache: str | None = None

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["thresholds"], data["split"] = list(self.thresholds), list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ExtractOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("thresholds", "split"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def environment() -> dict:
    """Versions of Python and of the libraries that compute the numbers."""
    import numpy
    import pandas
    import scipy
    import torch
    import torchvision

    from . import __version__

    return {"emoselect": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def read_config(run: str | Path) -> dict:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{path} not found: is {run} a run folder? (`emoselect extract ... --out {run}` makes one)")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({error})") from error


def write_config(run: str | Path, config: dict) -> None:
    write_text_atomic(Path(run) / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def update_config(run: str | Path, **sections) -> dict:
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
