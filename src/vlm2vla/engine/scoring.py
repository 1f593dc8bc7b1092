"""Scoring the pool for selection, then keeping the best K (optionally with per-source quotas).

Every strategy (registered in strategies.py) maps the pool to one score per sample, higher = keep
first; selection is the global top-K of those scores, so all strategies compare at the same budget K:

    proximity         the EmbodiedMidtrain estimator's sigmoid output (density-ratio ranking)
    random            seeded uniform scores
    nearest           minus the distance to the nearest robot sample (L2-normalised features)
    centroid          minus the distance to the robot centroid (L2-normalised features)
    perplexity        minus the answer loss under a VLA-adapted model (VLA-conditioned perplexity)
    delta_perplexity  loss under the base model minus loss under the VLA-adapted model
    dsir              DSIR-style importance resampling: log p_robot(x) / p_pool(x) + Gumbel noise,
                      whose top-K is a sample of K without replacement with probabilities ∝ the weights

    k = resolve_k(k=None, fraction=0.1, n_pool=len(ids))
    chosen = select_top_k(ids, sources, scores, k, quotas={"vqa": 0.5})   # row indices, best first

`stream_top_k` keeps the top K of scores that arrive in batches (e.g. shard by shard) in
O(K + batch) memory: each batch is merged with the current best and cut back with argpartition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)


def check_features(pool_X: np.ndarray, robot_X: np.ndarray) -> None:
    """Raise ValueError unless pool and robot features are non-empty [n, D] arrays of the same D."""
    if pool_X.ndim != 2 or robot_X.ndim != 2:
        raise ValueError(f"features must be 2-D [n, D]; got pool {pool_X.shape} and robot {robot_X.shape}")
    if pool_X.shape[1] != robot_X.shape[1]:
        raise ValueError(f"pool features are {pool_X.shape[1]}-dim but robot features are {robot_X.shape[1]}-dim; "
                         "embed both with the same model and layer")
    if len(pool_X) == 0:
        raise ValueError("the pool has no features: run `vlm2vla embed` on a non-empty pool")
    if len(robot_X) == 0:
        raise ValueError("there are no robot features: embed robot episodes (kind='robot') first")


def resolve_k(k: int | None, fraction: float | None, n_pool: int) -> int:
    """The budget K as a count: `k` if given, else round(fraction * n_pool).

    A K larger than the pool is clamped to the pool size with a logged warning (selecting
    everything is a valid, if pointless, mixture); K < 1 is an error.
    """
    if (k is None) == (fraction is None):
        raise ValueError(f"give exactly one of k and fraction, got k={k}, fraction={fraction}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    count = int(k) if k is not None else max(1, round(fraction * n_pool))
    if count < 1:
        raise ValueError(f"k must be >= 1, got {count}")
    if count > n_pool:
        log.warning("k=%d is larger than the pool (%d samples); selecting the whole pool", count, n_pool)
        count = n_pool
    return count


def rank_order(keys: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row indices sorted best first: by score descending, ties by key ascending (deterministic)."""
    return np.lexsort((keys, -np.asarray(scores, dtype=np.float64)))


def top_k(keys: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best scores, best first (argpartition, then a sort of only those k)."""
    k = min(k, len(scores))
    scores = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=np.float64))  # NaN ranks last
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        # Everything strictly above the k-th score, plus ties at it broken by key (deterministic).
        kth = np.partition(-scores, k - 1)[k - 1]
        above = np.flatnonzero(-scores < kth)
        ties = np.flatnonzero(-scores == kth)
        ties = ties[np.argsort(keys[ties], kind="stable")][: k - len(above)]
        rows = np.concatenate([above, ties])
    else:
        rows = np.arange(len(scores))
    return rows[rank_order(keys[rows], scores[rows])]


def stream_top_k(batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Global top-k over (keys, scores) batches, holding at most k + one batch in memory.

    Args:
        batches: (keys [b], scores [b]) pairs, e.g. one per feature shard; keys are ids or row numbers.
        k: how many to keep.

    Returns:
        (keys [<= k], scores [<= k]), best first.
    """
    best_keys: np.ndarray | None = None
    best_scores: np.ndarray | None = None
    for keys, scores in batches:
        keys = np.asarray(keys)
        scores = np.asarray(scores, dtype=np.float32)
        if best_keys is not None:
            keys = np.concatenate([best_keys, keys])
            scores = np.concatenate([best_scores, scores])
        if len(scores) > k:
            keep = np.argpartition(-scores, k - 1)[:k]  # unordered; ties at the cut resolved below
            keys, scores = keys[keep], scores[keep]
        best_keys, best_scores = keys, scores
    if best_keys is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    order = rank_order(best_keys, best_scores)
    return best_keys[order], best_scores[order]


def select_top_k(ids: np.ndarray, sources: np.ndarray, scores: np.ndarray, k: int,
                 quotas: Mapping[str, float] | None = None) -> np.ndarray:
    """Row indices of exactly min(k, n) unique samples, best first.

    Without quotas: the global top-k. With quotas {source: share of k}: each named source gets
    round(share * k) of its own best samples (fewer, with a warning, if it is smaller); the rest
    of the budget is the global top among sources without a quota, then among all the remaining.

    Args:
        ids, sources, scores: [n] arrays of the pool.
        k: the budget.
        quotas: optional per-source shares of k (summing to <= 1).

    Returns:
        Row indices [min(k, n)].
    """
    ids = np.asarray(ids)
    k = min(k, len(ids))
    if not quotas:
        return top_k(ids, scores, k)
    _check_quotas(quotas, sources)
    chosen = []
    for source, share in sorted(quotas.items()):
        rows = np.flatnonzero(sources == source)
        want = round(share * k)
        if want > len(rows):
            log.warning("quota of %s asks for %d samples but it has %d; taking all of them", source, want, len(rows))
        chosen.append(rows[top_k(ids[rows], scores[rows], want)])
    chosen = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    taken = np.zeros(len(ids), dtype=bool)
    taken[chosen] = True
    for pick_from in (~np.isin(sources, list(quotas)), np.ones(len(ids), dtype=bool)):
        need = k - int(taken.sum())
        rows = np.flatnonzero(pick_from & ~taken)
        if need <= 0 or len(rows) == 0:
            continue
        extra = rows[top_k(ids[rows], scores[rows], need)]
        taken[extra] = True
        chosen = np.concatenate([chosen, extra])
    return chosen[rank_order(ids[chosen], scores[chosen])]


def _check_quotas(quotas: Mapping[str, float], sources: np.ndarray) -> None:
    unknown = sorted(set(quotas) - set(np.unique(sources).tolist()))
    if unknown:
        raise ValueError(f"quotas name sources not in the pool: {unknown}; pool sources: {sorted(set(sources))}")
    bad = {s: v for s, v in quotas.items() if not 0.0 <= v <= 1.0}
    if bad or sum(quotas.values()) > 1.0 + 1e-9:
        raise ValueError(f"quotas must be shares in [0, 1] summing to <= 1, got {dict(quotas)}")


# ---- strategies: each returns scores [n_pool] float, higher = better ----


def random_scores(n: int, seed: int) -> np.ndarray:
    """Seeded uniform scores: their top-K is a uniform random sample of K."""
    return np.random.default_rng(seed).random(n)


def normalize(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32."""
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def nearest_scores(pool_X: np.ndarray, robot_X: np.ndarray, max_block: int = 1 << 24) -> np.ndarray:
    """Minus the Euclidean distance of each (normalised) pool sample to its nearest (normalised) robot sample.

    On unit vectors ||x - y||^2 = 2 - 2 x.y, so the nearest neighbour is the largest dot product;
    pool rows go through in chunks so the [chunk, n_robot] similarity block stays <= `max_block` floats.
    """
    check_features(pool_X, robot_X)
    R = normalize(robot_X)
    out = np.empty(len(pool_X), dtype=np.float64)
    rows = max(1, max_block // len(R))
    for start in range(0, len(pool_X), rows):
        sims = normalize(pool_X[start:start + rows]) @ R.T
        out[start:start + len(sims)] = -np.sqrt(np.maximum(2.0 - 2.0 * sims.max(1), 0.0))
    return out


def centroid_scores(pool_X: np.ndarray, robot_X: np.ndarray) -> np.ndarray:
    """Minus the Euclidean distance of each normalised pool sample to the mean of the normalised robot samples."""
    check_features(pool_X, robot_X)
    centre = normalize(robot_X).mean(0)
    return -np.linalg.norm(normalize(pool_X) - centre, axis=1).astype(np.float64)


def perplexity_scores(loss_vla: np.ndarray) -> np.ndarray:
    """Minus the answer loss under the VLA-adapted model (low perplexity = VLA-like); NaN losses rank last."""
    return _nan_last(-np.asarray(loss_vla, dtype=np.float64), "loss of the VLA-adapted model")


def delta_perplexity_scores(loss_base: np.ndarray, loss_vla: np.ndarray) -> np.ndarray:
    """loss_base - loss_vla: how much VLA adaptation made a sample more likely; NaN losses rank last."""
    delta = np.asarray(loss_base, dtype=np.float64) - np.asarray(loss_vla, dtype=np.float64)
    return _nan_last(delta, "base or VLA-adapted loss")


def _nan_last(scores: np.ndarray, what: str) -> np.ndarray:
    missing = np.isnan(scores)
    if missing.all():
        raise ValueError(f"every pool sample lacks a {what}: embed with a model that records answer losses")
    if missing.any():
        log.warning("%d of %d pool samples have no %s; they rank last", missing.sum(), len(scores), what)
        scores = np.where(missing, -np.inf, scores)
    return scores


def dsir_log_weights(pool_X: np.ndarray, robot_X: np.ndarray, method: str = "gaussian", dims: int = 32,
                     buckets: int = 4096, seed: int = 0) -> np.ndarray:
    """Log importance weights log p_robot(x) - log p_pool(x) of each pool sample (DSIR on features).

    Both densities live in a shared seeded reduction of the normalised features:
      - "gaussian": PCA (fitted on pool + robot) to `dims` dims, a full-covariance Gaussian per set
        (shrunk towards the diagonal so few robot samples still give a valid density);
      - "hashed": `dims` random hyperplanes hash each sample to a bucket (sign bits mod `buckets`),
        like DSIR's hashed n-grams; add-one smoothed bucket frequencies per set.

    Args:
        pool_X, robot_X: features [n, D] and [m, D].
        method: "gaussian" or "hashed".
        dims: reduced dims (gaussian) or hyperplanes (hashed).
        buckets: hash buckets (hashed).
        seed: seed of the projection.

    Returns:
        log weights [n] float64.
    """
    check_features(pool_X, robot_X)
    P, R = normalize(pool_X).astype(np.float64), normalize(robot_X).astype(np.float64)
    if method == "hashed":
        planes = np.random.default_rng(seed).normal(size=(P.shape[1], dims))
        centre = np.concatenate([P, R]).mean(0)

        def bucket(Z: np.ndarray) -> np.ndarray:
            bits = ((Z - centre) @ planes > 0).astype(np.int64)
            return (bits * (np.int64(1) << np.arange(dims, dtype=np.int64) % 62)).sum(1) % buckets

        bp, br = bucket(P), bucket(R)
        p_pool = (np.bincount(bp, minlength=buckets) + 1.0) / (len(P) + buckets)
        p_robot = (np.bincount(br, minlength=buckets) + 1.0) / (len(R) + buckets)
        return np.log(p_robot[bp]) - np.log(p_pool[bp])
    if method != "gaussian":
        raise ValueError(f"dsir method must be 'gaussian' or 'hashed', got {method!r}")
    both = np.concatenate([P, R])
    mean = both.mean(0)
    dims = min(dims, P.shape[1], len(both) - 1)
    _, _, Vt = np.linalg.svd(both[:: max(1, len(both) // 20000)] - mean, full_matrices=False)
    proj = Vt[:dims].T
    Zp, Zr = (P - mean) @ proj, (R - mean) @ proj
    return _gauss_logpdf(Zp, Zr) - _gauss_logpdf(Zp, Zp)


def _gauss_logpdf(Z: np.ndarray, fit: np.ndarray, shrink: float = 0.1) -> np.ndarray:
    """Log density of rows Z under a Gaussian fitted to `fit` (covariance shrunk towards its diagonal)."""
    mu = fit.mean(0)
    C = np.cov(fit, rowvar=False).reshape(Z.shape[1], Z.shape[1]) if len(fit) > 1 else np.eye(Z.shape[1])
    C = (1 - shrink) * C + shrink * np.diag(np.diag(C)) + 1e-6 * np.eye(len(C))
    L = np.linalg.cholesky(C)
    sol = np.linalg.solve(L, (Z - mu).T)
    return -0.5 * (sol * sol).sum(0) - np.log(np.diag(L)).sum() - 0.5 * Z.shape[1] * np.log(2 * np.pi)


def dsir_scores(pool_X: np.ndarray, robot_X: np.ndarray, seed: int, method: str = "gaussian",
                dims: int = 32) -> np.ndarray:
    """Log importance weights plus seeded Gumbel noise: top-K = K draws without replacement ∝ the weights."""
    logw = dsir_log_weights(pool_X, robot_X, method=method, dims=dims, seed=seed)
    return logw + np.random.default_rng(seed).gumbel(size=len(logw))
