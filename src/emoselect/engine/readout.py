"""Readout heads: a 2-unit linear layer per dataset and emotion on the frozen network's readout features.

Each head answers "is this picture <emotion>?" (pleasant vs rest, neutral vs rest, unpleasant vs
rest). It is trained with cross-entropy on the training split's cached readout features (defaults
from the journal version: Adam, learning rate 1e-3, 10 epochs, batch 128), the epoch with the best
validation F1 is kept, and it is reported on the test split. Features are z-scored with the
training split's mean and SD; that affine map is folded into the head, so a head is exactly one
linear layer ``features @ weight.T + bias`` with 2 outputs (class 1 = the emotion).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..analysis.records import Head, ReadoutOptions
from ..analysis.stats import auc, binary_metrics
from ..base.problems import InputError
from ..pictures.stimuli import Stimuli, category_names


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    options: ReadoutOptions,
    dataset: str = "",
    emotion: str = "",
    seed: int = 0,
) -> Head:
    """Train one 2-unit head ([n, d] features, 0/1 labels); keep the epoch with the best val F1.
    ``seed`` seeds its initial weights and batches (a run's stage passes the run's seed)."""
    if len(np.unique(train_y)) < 2:
        raise InputError(
            f"{dataset}: the training split has no {'positive' if not np.any(train_y) else 'negative'} "
            f"example for the {emotion} head"
        )
    generator = torch.Generator().manual_seed(seed)
    mean = train_x.mean(axis=0)
    sd = train_x.std(axis=0)
    sd[sd == 0] = 1.0
    x = torch.from_numpy(((train_x - mean) / sd).astype(np.float32))
    y = torch.from_numpy(np.asarray(train_y, np.int64))
    xv = torch.from_numpy(((val_x - mean) / sd).astype(np.float32))
    layer = nn.Linear(x.shape[1], 2)
    with torch.no_grad():
        bound = 1 / np.sqrt(x.shape[1])
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    weights = None
    if options.balanced:
        counts = np.bincount(train_y, minlength=2).astype(np.float32)
        weights = torch.from_numpy(counts.sum() / (2 * counts))
    loss_function = nn.CrossEntropyLoss(weight=weights)
    optimiser = torch.optim.Adam(layer.parameters(), lr=options.lr)
    best = (-1.0, 0, layer.weight.detach().clone(), layer.bias.detach().clone())
    for epoch in range(1, options.epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), options.batch_size):
            batch = order[start : start + options.batch_size]
            optimiser.zero_grad()
            loss_function(layer(x[batch]), y[batch]).backward()
            optimiser.step()
        with torch.no_grad():
            f1 = binary_metrics(val_y, layer(xv).argmax(dim=1).numpy())["f1"]
        if f1 > best[0]:
            best = (f1, epoch, layer.weight.detach().clone(), layer.bias.detach().clone())
    _, epoch, best_weight, best_bias = best
    weight = best_weight.numpy().astype(np.float64)
    folded_weight = weight / sd[None, :]
    folded_bias = best_bias.numpy().astype(np.float64) - folded_weight @ mean
    return Head(dataset, emotion, folded_weight.astype(np.float32), folded_bias.astype(np.float32), epoch)


def margin_weights(heads: list[Head]) -> tuple[np.ndarray, np.ndarray]:
    """The heads as one linear map to margins (logit of the emotion minus logit of the rest):
    (weight [d, n_heads], bias [n_heads]), float64."""
    weight = np.stack([h.weight[1] - h.weight[0] for h in heads], axis=1).astype(np.float64)
    bias = np.array([h.bias[1] - h.bias[0] for h in heads], dtype=np.float64)
    return weight, bias


def head_scores(heads: list[Head], features: np.ndarray) -> np.ndarray:
    """Margin of every head: features [n, d] -> [n, n_heads]."""
    weight, bias = margin_weights(heads)
    return np.asarray(features, np.float64) @ weight + bias


def train_heads(
    stimuli: Stimuli, features: dict[str, np.ndarray], options: ReadoutOptions, site: str, seed: int = 0
) -> tuple[list[Head], pd.DataFrame]:
    """One head per dataset and emotion on the cached readout features.

    Parameters
    ----------
    stimuli : Stimuli
        The pictures with category and split.
    features : dict[str, ndarray]
        Per dataset: readout features [n_pictures, d] in ``stimuli.table`` row order.
    options : ReadoutOptions
        Learning rate, epochs, batch size, class balancing.
    site : str
        The readout site's name (recorded in the table).
    seed : int
        Seeds each head's initial weights and batches.

    Returns
    -------
    heads : list[Head]
        2-unit linear heads (z-scoring folded in).
    table : DataFrame
        One row per dataset, emotion and split: site, best_epoch, auc, f1, accuracy, balanced_accuracy, n.
    """
    heads = []
    for dataset in stimuli.datasets:
        table = stimuli.of(dataset)
        split = table["split"].to_numpy()
        category = table["category"].to_numpy()
        x = np.asarray(features[dataset], np.float64)
        for emotion in category_names(stimuli.table):
            label = (category == emotion).astype(np.int64)
            train, val = split == "train", split == "val"
            if not val.any():
                raise InputError(
                    f"{dataset}: no validation images; the split must give val a share (e.g. --split 0.5 0.25 0.25)"
                )
            heads.append(train_head(x[train], label[train], x[val], label[val], options, dataset, emotion, seed))
    return heads, score_heads(stimuli, features, heads, site)


def score_heads(stimuli: Stimuli, features: dict[str, np.ndarray], heads: list[Head], site: str) -> pd.DataFrame:
    """readout.csv: each head's scores on its own dataset, one row per dataset, emotion and split
    (site, best_epoch, auc, f1, accuracy, balanced_accuracy, n); ``features`` as :func:`train_heads`."""
    rows = []
    for head in heads:
        table = stimuli.of(head.dataset)
        split = table["split"].to_numpy()
        label = (table["category"].to_numpy() == head.emotion).astype(np.int64)
        margins = head_scores([head], np.asarray(features[head.dataset], np.float64))[:, 0]
        for part in ("train", "val", "test"):
            mask = split == part
            if mask.any():
                rows.append(
                    {
                        "dataset": head.dataset,
                        "emotion": head.emotion,
                        "split": part,
                        "site": site,
                        "best_epoch": head.best_epoch,
                        "auc": float(auc(label[mask].astype(bool), margins[mask])),
                        **binary_metrics(label[mask], margins[mask] > 0),
                    }
                )
    return pd.DataFrame(rows)
