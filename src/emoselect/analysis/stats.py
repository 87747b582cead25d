"""General statistics used by several stages: multiple-comparison correction, rank correlations,
rank-based p-values and cross-validated linear decoding. Plain numpy/scipy, no network."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    m = int(finite.sum())
    if m == 0:
        return q
    values = p[finite]
    order = np.argsort(values)
    ranked = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    q[finite] = out
    return q


def exceedance_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p of ``observed`` against draws from a null, with the +1 correction:
    (1 + #{null >= observed}) / (1 + N). NaN if ``observed`` is NaN."""
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if np.isnan(observed) or len(null) == 0:
        return float("nan")
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))


def rank_p_values(observed: float, null: np.ndarray) -> tuple[float, float]:
    """Both one-sided +1-corrected rank p-values of ``observed`` among ``null`` draws (e.g. random
    unit sets, or random-init controls): (p that the null is at least as large, p that it is at most
    as large), each with smallest attainable value 1 / (len(null) + 1)."""
    null = np.asarray(null, dtype=float)
    return exceedance_p_value(observed, null), exceedance_p_value(-observed, -null)


def spearman_columns(data: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman correlation of every column of ``data`` [n, k] with ``values`` [n].

    Returns (rho [k], two-sided p [k], t approximation with n - 2 degrees of freedom); rows with a
    missing value are left out; NaN for constant columns.
    """
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    data, values = np.asarray(data, np.float64)[keep], values[keep]
    n = len(values)
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 values, got {n}")
    ranks = stats.rankdata(data, axis=0)
    target = stats.rankdata(values)
    ranks -= ranks.mean(axis=0)
    target -= target.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (ranks * target[:, None]).sum(axis=0) / np.sqrt((ranks**2).sum(axis=0) * (target**2).sum())
        t = rho * np.sqrt((n - 2) / np.clip(1 - rho**2, 1e-300, None))
    p = 2 * stats.t.sf(np.abs(t), df=n - 2)
    p[np.isnan(rho)] = np.nan
    return rho, p


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in ``truth`` of the fraction of that class predicted right."""
    classes = np.unique(truth)
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in classes]))


def stratified_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number (0..folds-1) per item, each class spread evenly over the folds."""
    fold = np.empty(len(labels), dtype=int)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = np.arange(len(members)) % folds
    return fold


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """Ledoit & Wolf's (2004) optimal shrinkage of the sample covariance of centred data [n, p]
    towards (trace/p) * identity: min(b2, d2) / d2 with d2 = ||S - mI||^2 and
    b2 = (1/n^2) sum_i ||x_i x_i^T - S||^2 (squared Frobenius norms)."""
    n, p = centred.shape
    sample = centred.T @ centred / n
    target = np.trace(sample) / p
    distance = np.sum((sample - target * np.eye(p)) ** 2)
    # sum_i ||x_i x_i^T - S||^2 = sum_i ||x_i||^4 - n ||S||^2, since sum_i x_i^T S x_i = n ||S||^2
    spread = (np.sum(np.sum(centred**2, axis=1) ** 2) - n * np.sum(sample**2)) / n**2
    return 1.0 if distance <= 0 else float(np.clip(spread / distance, 0.0, 1.0))


def _shrinkage_lda(x: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear discriminant analysis with equal priors and a Ledoit-Wolf shrunk pooled covariance.

    x [n, p] standardised features, codes [n] class indices -> (weights [p, k], offsets [k]);
    predicted class = argmax(x @ weights + offsets). Unlike a least-squares classifier it does not
    mask a class whose mean lies between two others.
    """
    means = np.stack([x[codes == c].mean(axis=0) for c in range(n_classes)])
    centred = x - means[codes]
    p = centred.shape[1]
    sample = centred.T @ centred / len(centred)
    target = np.trace(sample) / p
    shrinkage = ledoit_wolf_shrinkage(centred)
    covariance = (1 - shrinkage) * sample + shrinkage * target * np.eye(p)
    covariance += 1e-9 * max(target, 1e-12) * np.eye(p)
    weights = np.linalg.solve(covariance, means.T)
    offsets = -0.5 * np.sum(means.T * weights, axis=0)
    return weights, offsets


def decode_crossvalidated(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, covariates: np.ndarray | None = None
) -> np.ndarray:
    """Balanced accuracy per fold of a linear decoder (shrinkage LDA) of ``labels`` from ``features`` [n, p].

    Stratified ``folds``-fold cross-validation; features standardised on the training fold. With
    ``covariates`` [n, c], the part of the features linearly predictable from them (fitted on the
    training fold) is removed first, so the decoder sees only what the covariates do not explain.
    This is conservative: where the covariates themselves carry category information, the category
    information they share with the features is removed too (it cannot be attributed either way).
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    classes, codes = np.unique(labels, return_inverse=True)
    fold = stratified_folds(codes, folds, np.random.default_rng(seed))
    scores = []
    for k in range(folds):
        train, test = fold != k, fold == k
        x_train, x_test = features[train], features[test]
        if covariates is not None:
            c_train = np.column_stack([np.ones(train.sum()), covariates[train]])
            c_test = np.column_stack([np.ones(test.sum()), covariates[test]])
            beta, *_ = np.linalg.lstsq(c_train, x_train, rcond=None)
            x_train, x_test = x_train - c_train @ beta, x_test - c_test @ beta
        mean, sd = x_train.mean(axis=0), x_train.std(axis=0)
        sd[sd == 0] = 1.0
        x_train, x_test = (x_train - mean) / sd, (x_test - mean) / sd
        weights, offsets = _shrinkage_lda(x_train, codes[train], len(classes))
        scores.append(balanced_accuracy(codes[test], (x_test @ weights + offsets).argmax(axis=1)))
    return np.asarray(scores)


def intersection_pmf(shared: int, universe_a: int, universe_b: int, size_a: int, size_b: int) -> np.ndarray:
    """Exact distribution of |A & B| for A a uniformly random ``size_a``-subset of a universe U_a and
    B an independent uniformly random ``size_b``-subset of U_b, where |U_a & U_b| = ``shared``.

    Returns pmf [min(size_a, size_b, shared) + 1] over k = 0, 1, ... With U_a = U_b (all units
    eligible on both sides) this is the hypergeometric law. In general, m_a = |A & shared| and
    m_b = |B & shared| are hypergeometric, and given them k is hypergeometric within the shared units:
    P(k) = sum_{m_a, m_b} P(m_a) P(m_b) HG(k; shared, m_a, m_b). Terms below 1e-18 are skipped.
    """
    if not (0 <= shared <= min(universe_a, universe_b) and 0 <= size_a <= universe_a and 0 <= size_b <= universe_b):
        raise ValueError(
            f"impossible set sizes: shared {shared}, universes {universe_a}/{universe_b}, sets {size_a}/{size_b}"
        )
    k = np.arange(min(size_a, size_b, shared) + 1)
    m_a = np.arange(min(size_a, shared) + 1)
    m_b = np.arange(min(size_b, shared) + 1)
    p_a = stats.hypergeom.pmf(m_a, universe_a, shared, size_a)
    p_b = stats.hypergeom.pmf(m_b, universe_b, shared, size_b)
    keep_b = p_b > 1e-18
    m_b, p_b = m_b[keep_b], p_b[keep_b]
    pmf = np.zeros(len(k))
    for m, p in zip(m_a, p_a):
        if p > 1e-18:
            pmf += p * (stats.hypergeom.pmf(k[:, None], shared, m, m_b[None, :]) @ p_b)
    return pmf / pmf.sum()


def jaccard_null(pmf: np.ndarray, size_a: int, size_b: int, observed_k: int) -> dict:
    """Summary of the Jaccard index J = k / (a + b - k) under an intersection pmf over k = 0, 1, ...

    Returns the null mean, SD, 2.5% and 97.5% quantiles of J, and the exact one-sided p-values
    P(K >= observed_k) (overlap above chance) and P(K <= observed_k) (below chance). J rises with k
    for fixed sizes, so tail probabilities of k are those of J. NaN everywhere when both sets are empty.
    """
    if size_a + size_b == 0:
        return {key: np.nan for key in ("mean", "sd", "q025", "q975", "p_above", "p_below")}
    k = np.arange(len(pmf))
    j = k / (size_a + size_b - k)
    mean = float(pmf @ j)
    cdf = np.cumsum(pmf)

    def quantile(q: float) -> float:
        return float(j[min(int(np.searchsorted(cdf, q - 1e-12)), len(j) - 1)])

    return {
        "mean": mean,
        "sd": float(np.sqrt(max(float(pmf @ (j - mean) ** 2), 0.0))),
        "q025": quantile(0.025),
        "q975": quantile(0.975),
        "p_above": float(min(1.0, pmf[observed_k:].sum())),
        "p_below": float(min(1.0, pmf[: observed_k + 1].sum())),
    }


def rank_correlation(x: np.ndarray, y: np.ndarray) -> Any:
    """Spearman correlation of ``x`` [L] with every column of ``y`` [L] or [L, P] (average ranks for ties).
    Returns a float for 1-D ``y``, else [P]; NaN where a column is constant."""
    y = np.asarray(y, float)
    flat = y.ndim == 1
    y = y[:, None] if flat else y
    rx = stats.rankdata(x) - (len(x) + 1) / 2
    ry = stats.rankdata(y, axis=0) - (len(x) + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (rx @ ry) / np.sqrt((rx @ rx) * (ry**2).sum(axis=0))
    return float(rho[0]) if flat else rho


def trend_test(observed: np.ndarray, null: np.ndarray) -> dict:
    """Does a per-layer measure rise with depth? Layers are in forward order.

    ``observed`` [L] the measure; ``null`` [L, P] the same measure recomputed under P draws of the
    null hypothesis (each column one whole draw across all layers, e.g. one label permutation
    applied to every layer). Statistic: Spearman rho of the measure with depth. Returns rho, the
    one-sided permutation p-values for a rise and a fall ((1 + #{null rho >= rho}) / (1 + P)), and P.
    """
    depth = np.arange(len(observed))
    rho = float(rank_correlation(depth, observed))
    null_rho = rank_correlation(depth, null)
    null_rho = null_rho[np.isfinite(null_rho)]
    if not np.isfinite(rho) or len(null_rho) == 0:
        return {"rho": rho, "p_rise": np.nan, "p_fall": np.nan, "n_null": len(null_rho)}
    return {
        "rho": rho,
        "p_rise": exceedance_p_value(rho, null_rho),
        "p_fall": exceedance_p_value(-rho, -null_rho),
        "n_null": len(null_rho),
    }


def binary_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """F1 of class 1, accuracy and balanced accuracy of 0/1 predictions (F1 = 0 if nothing is right)."""
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    tp = np.sum(truth & predicted)
    precision_denominator, recall_denominator = predicted.sum(), truth.sum()
    f1 = 2 * tp / (precision_denominator + recall_denominator) if tp else 0.0
    recalls = [
        np.mean(predicted[truth] == 1) if truth.any() else np.nan,
        np.mean(predicted[~truth] == 0) if (~truth).any() else np.nan,
    ]
    return {
        "f1": float(f1),
        "accuracy": float(np.mean(truth == predicted)),
        "balanced_accuracy": float(np.nanmean(recalls)),
        "n": int(len(truth)),
    }
