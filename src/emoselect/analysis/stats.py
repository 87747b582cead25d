"""General statistics used by several stages: multiple-comparison correction (BH, Holm), rank
correlations, rank-based p-values, the Crawford-Howell test and cross-validated linear decoding. Plain numpy/scipy, no network."""

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


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (step-down, family-wise error control under any dependence); NaN
    entries stay NaN and are not counted in the family."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(stepped, 1.0)
    return out


def crawford_howell(case: float, controls: np.ndarray) -> dict:
    """One case against a small control sample (Crawford & Howell 1998): is ``case`` above the
    population the K ``controls`` were drawn from?

    t = (case - mean) / (sd * sqrt((K + 1) / K)), with the controls' sample SD (ddof = 1), on K - 1
    degrees of freedom; it assumes the controls are normal (checked by :func:`normality_p`).
    Returns t, the one-sided p for ``case`` above (``p_above``) and below (``p_below``), ``z`` (the
    difference in control SDs) and K. NaN p-values when K < 2 or the controls do not vary.
    """
    controls = np.asarray(controls, dtype=float)
    controls = controls[np.isfinite(controls)]
    k = len(controls)
    if k < 2 or not np.isfinite(case) or not np.std(controls) > 0:
        return {"t": np.nan, "p_above": np.nan, "p_below": np.nan, "z": np.nan, "k": k}
    sd = float(np.std(controls, ddof=1))
    t = (case - float(np.mean(controls))) / (sd * np.sqrt((k + 1) / k))
    return {
        "t": float(t),
        "p_above": float(stats.t.sf(t, k - 1)),
        "p_below": float(stats.t.cdf(t, k - 1)),
        "z": (case - float(np.mean(controls))) / sd,
        "k": k,
    }


def crawford_howell_p_at(z: float, k: int) -> float:
    """The one-sided Crawford-Howell p of a case ``z`` control SDs above the controls' mean, with K
    controls (what the test can reach at that effect size)."""
    if k < 2:
        return float("nan")
    return float(stats.t.sf(z / np.sqrt((k + 1) / k), k - 1))


def normality_p(values: np.ndarray) -> float:
    """Shapiro-Wilk p of ``values`` (NaN for fewer than 3 finite or constant values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 3 or not np.std(values) > 0:
        return float("nan")
    return float(stats.shapiro(values).pvalue)


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


def chance_jaccard(
    size_a: np.ndarray | int, size_b: np.ndarray | int, shared: int, universe_a: int, universe_b: int
) -> np.ndarray:
    """The Jaccard index of two sets of the given sizes at their chance-expected intersection:
    k = size_a * size_b * shared / (universe_a * universe_b) (the mean |A & B| of independent uniform
    subsets, as in :func:`intersection_pmf`), J = k / (size_a + size_b - k). Vectorised over sizes;
    NaN where both sets are empty. The size correction of the overlap excess."""
    size_a, size_b = np.asarray(size_a, float), np.asarray(size_b, float)
    k = size_a * size_b * shared / max(universe_a * universe_b, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(size_a + size_b > 0, k / (size_a + size_b - k), np.nan)


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


def auc(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of ``scores`` for ``truth`` (the Mann-Whitney U over n_pos * n_neg,
    ties counted half): threshold-free, 0.5 at chance. ``scores`` [..., n] (e.g. one row per
    condition) against ``truth`` [n] booleans; NaN without both classes."""
    truth = np.asarray(truth, bool)
    scores = np.asarray(scores, np.float64)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return np.full(scores.shape[:-1], np.nan)
    ranks = stats.rankdata(scores, axis=-1)
    u = ranks[..., truth].sum(axis=-1) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def auc_null(truth: np.ndarray, scores: np.ndarray, rng: np.random.Generator, shuffles: int = 999) -> np.ndarray:
    """AUC of ``scores`` [n] for ``shuffles`` random permutations of the labels ``truth`` [n]."""
    truth = np.asarray(truth, bool)
    ranks = stats.rankdata(np.asarray(scores, np.float64))
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return np.full(shuffles, np.nan)
    labels = np.stack([rng.permutation(truth) for _ in range(shuffles)])
    u = (labels * ranks).sum(axis=1) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def sequential_p(observed: float, null: np.ndarray, h: int, cap: int) -> tuple[float, int, bool]:
    """Besag & Clifford's (1991) sequential Monte Carlo p of ``observed`` against null draws in the
    order they were drawn (``null`` [n], n <= ``cap``): walk the draws until ``h`` of them are at
    least ``observed`` — then p = h / (draws walked), a valid p — or to the ``cap``, where p =
    (1 + #exceedances) / (1 + cap), the plain +1-corrected rank p (so the two agree wherever the plain
    p is below h / (cap + 1)).

    Returns (p, draws used, done): ``done`` is False when the draws ran out before h exceedances and
    before the cap (p is then NaN: more draws are needed). NaN ``observed``: (NaN, 0, True)."""
    if not np.isfinite(observed):
        return float("nan"), 0, True
    null = np.asarray(null, dtype=float)[:cap]
    hits = np.cumsum(null >= observed - 1e-12)
    stopped = np.flatnonzero(hits >= h)
    if len(stopped):
        used = int(stopped[0]) + 1
        return h / used, used, True
    if len(null) >= cap:
        return float((1 + hits[-1]) / (1 + cap)) if cap else float("nan"), cap, True
    return float("nan"), len(null), False
