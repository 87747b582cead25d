"""The run folder as one object: its files and the stage that owns each, its seed, its random-init
controls, its config.yaml, its heads cache, and the context every stage writes in.

A stage writes like this (lock, check the stages it reads, record what it wrote)::

    run = RunFolder(path)
    with run.stage("manipulate", needs=("extract", "selectivity")) as out:
        out.write_csv("table1.csv", table)          # or out.add(path) for a file written otherwise
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.records import Head, read_table
from ..base import manifest
from ..base.files import run_lock, savez_atomic, write_csv_atomic
from ..base.problems import InputError
from .config import ExtractOptions, extract_options, read_config, update_config

# every file and folder a run folder can hold -> the stage that writes it (the README's run-folder
# table); figures/ holds each stage's figures, config.yaml a section per stage
FILES: dict[str, str] = {
    "config.yaml": "extract",
    "manifest.json": "extract",
    "stimuli.csv": "extract",
    "problems.csv": "extract",
    "responses": "extract",
    "units.csv": "selectivity",
    "selective.csv": "selectivity",
    "layers.csv": "selectivity",
    "overlap.csv": "selectivity",
    "examples.csv": "selectivity",
    "confounds.csv": "selectivity",
    "trends.csv": "selectivity",
    "controls.csv": "selectivity",
    "claims.csv": "claims",
    "readout.csv": "manipulate",
    "heads.npz": "manipulate",
    "manipulation.csv": "manipulate",
    "manipulation_summary.csv": "manipulate",
    "table1.csv": "manipulate",
    "cache": "manipulate",
    "figures": "extract",
    "report.html": "report",
}
# what the later stages write: removed when a run folder is re-extracted with other options
DOWNSTREAM = [name for name, stage in FILES.items() if stage != "extract"] + ["figures"]
CONTROL = "control"  # RUN/control, RUN/control2, ...: the random-init controls


def control_name(k: int) -> str:
    """The k-th random-init control's name in tables: ``random init``, ``random init 2``, ..."""
    return "random init" if k == 1 else f"random init {k}"


@dataclass
class StageOutput:
    """The files one stage has written so far (recorded in the manifest when the stage finishes)."""

    run: RunFolder
    files: list[Path] = field(default_factory=list)

    def add(self, *paths: Path) -> None:
        """Record files the stage wrote itself (each atomically)."""
        self.files.extend(paths)

    def write_csv(self, name: str, table: pd.DataFrame) -> Path:
        """Write one of the run's tables atomically and record it."""
        path = self.run.file(name)
        write_csv_atomic(path, table)
        self.add(path)
        return path


@dataclass(frozen=True)
class RunFolder:
    """A run folder (``path``): what ``emoselect extract`` makes and every later stage reads and extends.

    ``run / "units.csv"`` is the path of one of its files; :meth:`file` also checks that the name is
    one a run folder holds (:data:`FILES`).
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        """The path of a declared file (``figures/<name>.png`` for a figure)."""
        if name.split("/")[0] not in FILES:
            raise ValueError(f"{name} is not a file of a run folder (run/folder.py FILES)")
        return self.path / name

    # -- what extract recorded -------------------------------------------------------------
    @property
    def config(self) -> dict:
        """config.yaml as a dict."""
        return read_config(self.path)

    def update_config(self, **sections: object) -> dict:
        """Replace the named sections of config.yaml (stamping the time)."""
        return update_config(self.path, **sections)

    @property
    def extract_options(self) -> ExtractOptions:
        """The extract options the folder was made with."""
        return extract_options(self.path)

    @property
    def seed(self) -> int:
        """The run's seed (``--seed`` of its extraction): every random stream of every stage is keyed by it."""
        return self.extract_options.seed

    def extracted_config(self) -> dict:
        """config.yaml, which must hold what `extract` recorded about the network."""
        config = self.config
        if "network" not in config:
            raise InputError(f"{self / 'config.yaml'} has no network section: run `emoselect extract` first")
        return config

    # -- tables ------------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """One of the run's tables; missing: an :class:`InputError` naming the stage that writes it."""
        path = self.file(name)
        if not path.is_file():
            raise InputError(f"{path} not found: run `emoselect {FILES[name]} {self.path}` first")
        return read_table(path)

    def optional_table(self, name: str) -> pd.DataFrame | None:
        """One of the run's tables, or None where it was not written."""
        path = self.file(name)
        return read_table(path) if path.is_file() else None

    # -- controls ----------------------------------------------------------------------------
    def control(self, k: int) -> RunFolder:
        """The k-th random-init control (k = 1, 2, ...): RUN/control, RUN/control2, RUN/control3, ..."""
        return RunFolder(self.path / (CONTROL if k == 1 else f"{CONTROL}{k}"))

    @property
    def controls(self) -> list[RunFolder]:
        """The random-init controls that were extracted, in order."""
        folders, k = [], 1
        while (self.control(k) / "config.yaml").is_file():
            folders.append(self.control(k))
            k += 1
        return folders

    def remove_controls_from(self, k: int) -> None:
        """Remove controls k, k + 1, ... (of an earlier, larger run; they no longer apply)."""
        while self.control(k).path.is_dir():
            shutil.rmtree(self.control(k).path)
            k += 1

    @property
    def is_control(self) -> bool:
        """Whether this folder is a random-init control of another run (RUN/control, RUN/control2, ...;
        not a run whose own network happens to have random weights)."""
        name = self.path.name
        named = name == CONTROL or (name.startswith(CONTROL) and name[len(CONTROL) :].isdigit())
        return (
            named
            and (self.path.parent / "config.yaml").is_file()
            and self.config.get("network", {}).get("weights") == "random"
        )

    # -- heads -------------------------------------------------------------------------------
    def heads_cache(self, key: str) -> Path:
        """Where the heads trained on this run's features with cache key ``key`` are kept."""
        return self.path / "cache" / "heads" / f"{key}.npz"

    # -- writing -----------------------------------------------------------------------------
    def lock(self) -> contextlib.AbstractContextManager[Path]:
        """The folder's write lock (nested use in one process allowed)."""
        return run_lock(self.path)

    @contextlib.contextmanager
    def stage(self, name: str, needs: tuple[str, ...] = ()) -> Iterator[StageOutput]:
        """Write one stage: take the lock, check that the ``needs`` stages finished (files unchanged),
        drop the stage's old manifest entry, and — only if the block completes — record the files it
        wrote, read from ``needs``. An interrupted stage leaves no entry."""
        with self.lock():
            for needed in needs:
                manifest.require(self.path, needed)
            manifest.begin(self.path, name)
            out = StageOutput(self)
            yield out
            manifest.finish(self.path, name, out.files, inputs=needs)


def save_heads(path: Path, heads: list[Head]) -> None:
    """Heads as one .npz (``<dataset>|<category>|weight``, ``|bias``, ``|best_epoch``), atomically."""
    arrays = {}
    for h in heads:
        arrays.update({f"{h.dataset}|{h.emotion}|weight": h.weight, f"{h.dataset}|{h.emotion}|bias": h.bias,
                       f"{h.dataset}|{h.emotion}|best_epoch": np.array(h.best_epoch)})  # fmt: skip
    savez_atomic(path, **arrays)


def read_heads(path: Path) -> list[Head] | None:
    """Heads written by :func:`save_heads`, or None (absent or damaged: they are trained again)."""
    try:
        with np.load(path) as arrays:
            names = dict.fromkeys(name.rsplit("|", 1)[0] for name in arrays.files)
            heads = []
            for name in names:
                dataset, category = name.split("|", 1)
                weight, bias = arrays[f"{name}|weight"], arrays[f"{name}|bias"]
                heads.append(Head(dataset, category, weight, bias, int(arrays[f"{name}|best_epoch"])))
            return heads
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):  # e.g. cut short
        return None
