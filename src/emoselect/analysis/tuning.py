"""Tuning definitions on arrays (arrays in, arrays out; no tables): tuning values, preferred
categories, tuning quality, d', top fractions, Jaccard, and label permutations with their nulls.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..pictures.stimuli import CATEGORIES

CATEGORY_ORDER = CATEGORIES  # the default: the valence categories


def category_matrix(categories: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER) -> np.ndarray:
    """One-hot [n_images, K] over the K category ``names`` (default pleasant, neutral, unpleasant);
    other labels get an all-zero row."""
    categories = np.asarray(categories)
    return np.stack([categories == c for c in names], axis=1).astype(np.float64)


def _check(responses: np.ndarray, onehot: np.ndarray, names: tuple[str, ...]) -> None:
    if responses.ndim != 2 or responses.shape[0] != onehot.shape[0]:
        raise ValueError(
            f"responses must be [n_images, n_units] with one category per image; got {responses.shape} "
            f"and {onehot.shape[0]} categories"
        )
    counts = onehot.sum(axis=0)
    if np.any(counts < 2):
        missing = [c for c, n in zip(names, counts) if n < 2]
        raise ValueError(
            f"each category needs at least 2 images to define tuning; too few: {missing} "
            f"(counts {dict(zip(names, counts.astype(int).tolist()))})"
        )


def _analysed(
    responses: np.ndarray, categories: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER
) -> tuple[np.ndarray, np.ndarray]:
    """The analysed rows: (data float64 [n, n_units], one-hot [n, K]) without ``unknown`` pictures."""
    onehot = category_matrix(categories, names)
    used = onehot.sum(axis=1) > 0
    data, onehot = np.asarray(responses, np.float64)[used], onehot[used]
    _check(data, onehot, names)
    return data, onehot


def tuning_values(responses: np.ndarray, categories: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER) -> np.ndarray:
    """z-scored category means: [n_images, n_units] -> [n_units, K]; NaN for zero-variance units.

    Only images whose category is one of the K ``names`` are used (``unknown`` rows are ignored).
    """
    data, onehot = _analysed(responses, categories, names)
    mean_all = data.mean(axis=0)
    sd = data.std(axis=0, ddof=1)
    means = (onehot.T @ data) / onehot.sum(axis=0)[:, None]  # [K, n_units]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (means - mean_all) / sd
    z[:, ~(sd > 0)] = np.nan
    return z.T


def preferred_category(z: np.ndarray) -> np.ndarray:
    """Index into the category names (default 0 pleasant, 1 neutral, 2 unpleasant) of the largest
    tuning value, [n_units, K] -> [n_units]; -1 for NaN units."""
    undefined = np.isnan(z).any(axis=1)
    preferred = np.argmax(np.where(np.isnan(z), -np.inf, z), axis=1)
    preferred[undefined] = -1
    return preferred


def tuning_quality(z: np.ndarray) -> float:
    """Mean over units of max_e |z_e| (NaN units left out)."""
    best = np.abs(z).max(axis=1)
    return float(np.nanmean(best)) if np.isfinite(best).any() else float("nan")


def d_prime(responses: np.ndarray, categories: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER) -> np.ndarray:
    """Journal selectivity d'_e of every unit: [n_images, n_units] -> [n_units, K]."""
    data, onehot = _analysed(responses, categories, names)
    out = np.empty((data.shape[1], len(names)))
    for k in range(len(names)):
        inside, rest = data[onehot[:, k] > 0], data[onehot[:, k] == 0]
        pooled = np.sqrt((inside.var(axis=0, ddof=1) + rest.var(axis=0, ddof=1)) / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, k] = (inside.mean(axis=0) - rest.mean(axis=0)) / pooled
        out[~(pooled > 0), k] = np.nan
    return out


def top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of units with the largest values (NaN never kept)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction of units to keep must be in (0, 1], got {fraction}")
    finite = np.isfinite(values)
    keep = np.zeros(values.shape, dtype=bool)
    n_keep = int(np.ceil(fraction * finite.sum()))
    order = np.argsort(np.where(finite, -values, np.inf), kind="stable")
    keep[order[:n_keep]] = True
    return keep


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A & B| / |A | B| of two boolean masks; NaN when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def label_permutations(n_images: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``permutations`` random orders of ``n_images`` pictures: int [permutations, n_images]; row p
    gives shuffled labels ``labels[order[p]]``."""
    return np.argsort(rng.random((permutations, n_images)), axis=1)


def _permuted_tuning(
    data: np.ndarray, onehot: np.ndarray, orders: np.ndarray, chunk: int = 100
) -> Iterator[np.ndarray]:
    """Tuning values under shuffled labels, chunk by chunk: yields z [size, K, n_units].

    Mean and SD over all pictures do not change under a permutation, so only the category means are
    recomputed: one matrix product [size * K, n] @ [n, n_units] per chunk of permutations.
    """
    mean_all, sd = data.mean(axis=0), data.std(axis=0, ddof=1)
    counts = onehot.sum(axis=0)
    for start in range(0, len(orders), chunk):
        block = orders[start : start + chunk]
        shuffled = onehot[block]  # [size, n, K]
        stacked = shuffled.transpose(0, 2, 1).reshape(-1, data.shape[0])  # [size * K, n]
        means = (stacked @ data).reshape(len(block), onehot.shape[1], -1) / counts[None, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            yield (means - mean_all) / sd


def permutation_p_values(
    responses: np.ndarray,
    categories: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
    chunk: int = 100,
    names: tuple[str, ...] = CATEGORY_ORDER,
) -> np.ndarray:
    """Per-unit p-value of selectivity: is max_e z_e larger than with shuffled category labels?

    Returns [n_units] p = (1 + #{max z under permutation >= observed}) / (1 + permutations);
    NaN for zero-variance units.
    """
    data, onehot = _analysed(responses, categories, names)
    observed = tuning_values(data, np.array(names)[onehot.argmax(axis=1)], names).max(axis=1)
    exceed = np.zeros(data.shape[1])
    for z in _permuted_tuning(data, onehot, label_permutations(len(data), permutations, rng), chunk):
        exceed += (z.max(axis=1) >= observed - 1e-12).sum(axis=0)
    p = (1 + exceed) / (1 + permutations)
    p[np.isnan(observed)] = np.nan
    return p


def tuning_quality_null(
    responses: np.ndarray, categories: np.ndarray, orders: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER
) -> np.ndarray:
    """Tuning quality of a layer under shuffled labels: [n_images, n_units] -> [n_permutations].

    ``orders`` [n_permutations, n_analysed] from :func:`label_permutations` (pass the same orders to
    every layer, so that a trend across layers can be recomputed per permutation).
    """
    return shuffled_tuning(responses, categories, orders, names)[0]


def shuffled_tuning(
    responses: np.ndarray, categories: np.ndarray, orders: np.ndarray, names: tuple[str, ...] = CATEGORY_ORDER
) -> tuple[np.ndarray, np.ndarray]:
    """A layer under shuffled labels: its tuning quality [n_permutations] and every unit's preferred
    category int8 [n_permutations, n_units] (-1 for zero-variance units), one row per order of
    ``orders`` (as in :func:`tuning_quality_null`). Each permutation relabels all units at once, so
    the units' correlations are kept."""
    data, onehot = _analysed(responses, categories, names)
    quality, preferred = [], []
    for z in _permuted_tuning(data, onehot, orders):  # z [size, K, n_units]
        quality.append(np.nanmean(np.abs(z).max(axis=1), axis=1))
        undefined = np.isnan(z).any(axis=1)
        best = np.argmax(np.where(np.isnan(z), -np.inf, z), axis=1).astype(np.int8)
        best[undefined] = -1
        preferred.append(best)
    if not quality:
        return np.empty(0), np.empty((0, data.shape[1]), np.int8)
    return np.concatenate(quality), np.concatenate(preferred)
