"""The records the stages pass around (numpy and pandas only, so every layer may use them).

``Responses``: one dataset's recorded responses; ``ReadoutOptions``: how heads are trained;
``Head``: one trained readout head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.options import check, option


@dataclass
class Responses:
    """One dataset's recorded responses: ``sites`` {site: float32 [n_images, n_units]}, ``readout``
    float32 [n_images, readout_dim] at ``readout_site``, ``image_stats`` (a table, one row per image)."""

    dataset: str
    sites: dict[str, np.ndarray]
    readout_site: str
    readout: np.ndarray
    image_stats: pd.DataFrame


@dataclass
class ReadoutOptions:
    """Training of the heads. ``balanced`` weights the cross-entropy by inverse class frequency."""

    lr: float = option(1e-3, "head learning rate", kind=float, low=0, open_low=True)
    epochs: int = option(10, "head training epochs", kind=int, low=1)
    batch_size: int = option(128, "pictures per head training step", kind=int, low=1, flag="--head-batch-size")
    balanced: bool = option(False, "class-balanced cross-entropy for the heads", kind=bool)

    def __post_init__(self) -> None:
        check(self)


@dataclass
class Head:
    """One trained head: logits = features @ weight.T + bias; weight [2, d], bias [2] (float32)."""

    dataset: str
    emotion: str
    weight: np.ndarray
    bias: np.ndarray
    best_epoch: int


LAYER_COLUMNS = ("layer", "enhanced_layer", "test_chosen_layer", "lesioned_layer")


def read_table(path: str | Path) -> pd.DataFrame:
    """A table a stage wrote, with layer names read as text (a site called ``4`` stays the name "4",
    never the number 4, so that it matches the network's sites)."""
    return pd.read_csv(path, dtype={column: str for column in LAYER_COLUMNS})
