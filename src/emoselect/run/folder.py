"""The run folder: where its random-init controls live, what later stages write (removed when the
folder is re-extracted), its tables and its heads cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.records import Head, read_table
from ..base.files import savez_atomic
from ..base.problems import InputError
from .config import read_config

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


def extracted_config(run: str | Path) -> dict:
    """A run folder's config.yaml, which must hold what `extract` recorded about the network."""
    config = read_config(run)
    if "network" not in config:
        raise InputError(f"{Path(run) / 'config.yaml'} has no network section: run `emoselect extract` first")
    return config


def control_name(k: int) -> str:
    return "random init" if k == 1 else f"random init {k}"


def _read_table(run: Path, name: str, stage: str) -> pd.DataFrame:
    path = run / name
    if not path.is_file():
        raise InputError(f"{path} not found: run `emoselect {stage} {run}` first")
    return read_table(path)


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
