"""Distribution-gap metrics between two feature sets, and a 2-D map of many.

    gamma = median_gamma(X, Y)                        # RBF bandwidth by the median heuristic
    mmd2, p = mmd_test(X, Y, permutations=200, seed=0)
    fd = frechet_distance(X, Y)
    auc = classifier_auc(X, Y, folds=5, seed=0)       # 0.5 = indistinguishable, 1.0 = separable
    u = uniformity(X)                                  # higher = more spread on the unit sphere
    xy = embed_2d(np.concatenate(sets), method="tsne")

Every metric takes float arrays [n, D] and [m, D]. Kernel metrics cost O((n + m)^2 D), so callers
cap each set with `subsample` (seeded) first: 2,000 rows per set keeps a metric to about a second
on CPU while the estimates stay well within their permutation noise.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# Rows used to estimate the median pairwise distance: the median is a robust statistic, a
# few thousand rows pin it down to a percent and keep the estimate O(1) in the set sizes.
MEDIAN_SAMPLE = 1000


def subsample(X: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """At most `cap` rows of X, drawn without replacement (seeded); X itself when it is small enough."""
    if cap is None or len(X) <= cap:
        return X
    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=cap, replace=False))
    return X[rows]


def sq_dists(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [n, m] in float64 (via the Gram matrix, clipped at 0)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    d = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return np.maximum(d, 0.0)


def median_gamma(X: np.ndarray, Y: np.ndarray, seed: int = 0, max_points: int = MEDIAN_SAMPLE) -> float:
    """RBF precision by the median heuristic: k(x, y) = exp(-gamma ||x - y||^2), gamma = 1 / median d^2.

    The median runs over distinct pairs of the pooled set, subsampled to `max_points` rows.

    Args:
        X, Y: feature sets [n, D] and [m, D].
        seed: seed of the subsample.
        max_points: rows of the pooled set used for the median.

    Returns:
        gamma > 0 (1.0 when every point coincides).
    """
    Z = subsample(np.concatenate([X, Y]), max_points, seed)
    d = sq_dists(Z, Z)[np.triu_indices(len(Z), k=1)]
    med = float(np.median(d)) if d.size else 0.0
    return 1.0 / med if med > 0 else 1.0


def _mmd2_from_kernel(K: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of `masks` ([P, N] booleans, True = first set) over one kernel K [N, N].

    With a the first set's indicator and b = 1 - a: sum_{i != j in X} k = a'Ka - n (k(x, x) = 1 for RBF).
    """
    A = masks.astype(np.float64)
    B = 1.0 - A
    n = A.sum(1)
    m = B.sum(1)
    KA = A @ K  # [P, N]
    xx = ((KA * A).sum(1) - n) / (n * (n - 1))
    xy = (KA * B).sum(1) / (n * m)
    KB = B @ K
    yy = ((KB * B).sum(1) - m) / (m * (m - 1))
    return xx + yy - 2.0 * xy


def mmd2_unbiased(X: np.ndarray, Y: np.ndarray, gamma: float | None = None, seed: int = 0) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012) with an RBF kernel; may be slightly negative when X ~ Y.

    Args:
        X, Y: feature sets [n, D] and [m, D], n, m >= 2.
        gamma: RBF precision; None uses `median_gamma`.
        seed: seed of the bandwidth subsample.

    Returns:
        The MMD^2 estimate.
    """
    return mmd_test(X, Y, permutations=0, gamma=gamma, seed=seed)[0]


def mmd_test(X: np.ndarray, Y: np.ndarray, permutations: int = 200, gamma: float | None = None,
             seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 and its permutation p-value.

    The kernel matrix of the pooled set is computed once; each permutation relabels rows and
    re-reads it (a batched quadratic form), so 200 permutations cost a few matrix products.

    Args:
        X, Y: feature sets [n, D] and [m, D], n, m >= 2.
        permutations: label shuffles for the null distribution (0: no test, p = nan).
        gamma: RBF precision; None uses `median_gamma`.
        seed: seed of the bandwidth subsample and of the shuffles.

    Returns:
        (mmd2, p_value), p = (1 + #{null >= observed}) / (1 + permutations).
    """
    _check_pair(X, Y, min_rows=2)
    gamma = median_gamma(X, Y, seed=seed) if gamma is None else gamma
    Z = np.concatenate([X, Y])
    K = np.exp(-gamma * sq_dists(Z, Z))
    observed_mask = np.zeros((1, len(Z)), dtype=bool)
    observed_mask[0, : len(X)] = True
    observed = float(_mmd2_from_kernel(K, observed_mask)[0])
    if permutations <= 0:
        return observed, float("nan")
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, permutations, 50):  # 50 shuffles per product bounds memory at 50 x N
        count = min(50, permutations - start)
        masks = np.argsort(rng.random((count, len(Z))), axis=1) < len(X)
        null.append(_mmd2_from_kernel(K, masks))
    null = np.concatenate(null)
    return observed, float((1 + np.sum(null >= observed)) / (1 + permutations))


def _psd_sqrt(C: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix by eigen-decomposition (negative round-off clipped)."""
    w, V = np.linalg.eigh(C)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def frechet_distance(X: np.ndarray, Y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to X and Y: ||mu_x - mu_y||^2 + Tr(C_x + C_y - 2 (C_x C_y)^1/2).

    Tr (C_x C_y)^1/2 equals Tr (S C_y S)^1/2 with S = C_x^1/2, a symmetric PSD matrix, so both
    roots come from `eigh` with negative round-off clipped: stable for the rank-deficient
    covariances of D-dim features from fewer than D samples, where `sqrtm` turns complex.

    Args:
        X, Y: feature sets [n, D] and [m, D], n, m >= 2.

    Returns:
        The distance (>= 0).
    """
    _check_pair(X, Y, min_rows=2)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    mu = X.mean(0) - Y.mean(0)
    Cx = np.cov(X, rowvar=False).reshape(X.shape[1], X.shape[1])
    Cy = np.cov(Y, rowvar=False).reshape(Y.shape[1], Y.shape[1])
    S = _psd_sqrt(Cx)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(S @ Cy @ S), 0.0, None)).sum()
    return float(max(mu @ mu + np.trace(Cx) + np.trace(Cy) - 2.0 * cross, 0.0))


def classifier_auc(X: np.ndarray, Y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Classifier two-sample test: ROC AUC of a logistic regression telling X from Y, cross-validated.

    Stratified k-fold; features standardised inside each fold; the AUC of the out-of-fold scores
    is averaged over folds. 0.5 means the sets cannot be told apart, 1.0 that they separate.

    Args:
        X, Y: feature sets [n, D] and [m, D], each with at least `folds` rows.
        folds: number of folds.
        seed: seed of the fold assignment.

    Returns:
        Mean out-of-fold AUC.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_pair(X, Y, min_rows=folds)
    Z = np.concatenate([X, Y]).astype(np.float64)
    labels = np.r_[np.ones(len(X)), np.zeros(len(Y))]
    aucs = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Z, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        model.fit(Z[train], labels[train])
        aucs.append(roc_auc_score(labels[test], model.decision_function(Z[test])))
    return float(np.mean(aucs))


def uniformity(X: np.ndarray, t: float = 2.0, max_samples: int | None = 2000, seed: int = 0) -> float:
    """Diversity as uniformity on the unit sphere (Wang & Isola 2020): -log E exp(-t ||x - y||^2).

    Features are L2-normalised; the mean runs over distinct pairs. This is the negated
    uniformity loss, so higher = more spread (max 4t for antipodal points), 0 = all collapsed.

    Args:
        X: features [n, D], n >= 2.
        t: the temperature (2 in the paper).
        max_samples: rows used (seeded subsample); None for all.
        seed: seed of the subsample.

    Returns:
        The uniformity (>= 0).
    """
    X = subsample(np.asarray(X), max_samples, seed).astype(np.float64)
    if len(X) < 2:
        raise ValueError(f"uniformity needs at least 2 samples, got {len(X)}")
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    d = sq_dists(X, X)[np.triu_indices(len(X), k=1)]
    # log-mean-exp, shifted by the max for stability
    a = -t * d
    top = a.max()
    return float(-(top + np.log(np.mean(np.exp(a - top)))))


def embed_2d(X: np.ndarray, method: str = "tsne", seed: int = 0, pca_dims: int = 50) -> np.ndarray:
    """A 2-D map of features: PCA to <= `pca_dims` dims, then t-SNE, UMAP or nothing more.

    Args:
        X: features [n, D], n >= 3.
        method: "tsne", "umap" (needs umap-learn) or "pca" (the first two principal components).
        seed: seed of PCA's solver and of the map.
        pca_dims: dims kept before the non-linear map (t-SNE is O(n D) per step).

    Returns:
        Coordinates [n, 2] float32.
    """
    from sklearn.decomposition import PCA

    if method not in ("tsne", "umap", "pca"):
        raise ValueError(f"map method must be 'tsne', 'umap' or 'pca', got {method!r}")
    X = np.asarray(X, dtype=np.float32)
    if len(X) < 3:
        raise ValueError(f"a 2-D map needs at least 3 samples, got {len(X)}")
    dims = min(2 if method == "pca" else pca_dims, X.shape[1], len(X))
    Z = PCA(n_components=dims, random_state=seed).fit_transform(X)
    if method == "pca":
        return np.pad(Z, ((0, 0), (0, 2 - Z.shape[1]))).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError as err:
            raise ValueError("map=umap needs umap-learn (pip install umap-learn); or use map=tsne") from err
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(Z).astype(np.float32)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(X) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z).astype(np.float32)


def _check_pair(X: np.ndarray, Y: np.ndarray, min_rows: int) -> None:
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ValueError(f"feature sets must be [n, D] with the same D; got shapes {X.shape} and {Y.shape}")
    if len(X) < min_rows or len(Y) < min_rows:
        raise ValueError(f"each feature set needs at least {min_rows} samples; got {len(X)} and {len(Y)}")
