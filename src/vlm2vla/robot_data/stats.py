"""Feature statistics: per episode, and merged across episodes, in LeRobot's stats.json layout.

Each feature gets {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}.
Vector features: arrays of shape (D,); scalar columns (timestamp, index, ...): shape (1,).
Images and videos: per channel, shape (3, 1, 1), in [0, 1], computed on a subsample of frames
(LeRobot's heuristic: at least 100 frames or all of them, images larger than 300 px strided
down to about 150 px). "count" is always shape (1,): frames (or sampled images) seen.

Merging is exact for min/max/mean/std/count (the parallel-variance formula works on
deviations from the merged mean, so no catastrophic cancellation). Quantiles cannot be merged
exactly from summaries; like LeRobot we take the count-weighted mean of per-episode quantiles,
an approximation that is exact when episodes share a distribution. Per-episode quantiles are
exact (numpy linear interpolation) where LeRobot uses a 5000-bin histogram: they agree to
within a bin width.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.robot_data.format import VISUAL_DTYPES

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)

Stats = dict[str, np.ndarray]


def num_image_samples(num_frames: int, min_samples: int = 100, max_samples: int = 10_000,
                      power: float = 0.75) -> int:
    """How many frames of an episode to use for image stats (LeRobot's heuristic).

    Args:
        num_frames: frames in the episode.

    Returns:
        all frames up to `min_samples`, then num_frames**power, capped at `max_samples`.
    """
    min_samples = min(min_samples, num_frames)
    return max(min_samples, min(int(num_frames**power), max_samples))


def sample_frame_indices(num_frames: int) -> np.ndarray:
    """Evenly spaced frame indices for image stats."""
    n = num_image_samples(num_frames)
    return np.round(np.linspace(0, num_frames - 1, n)).astype(int)


def _downsample(images: np.ndarray, target: int = 150, threshold: int = 300) -> np.ndarray:
    """Stride large images down to about `target` pixels ([N, H, W, C]); small ones pass through."""
    _, h, w, _ = images.shape
    if max(h, w) < threshold:
        return images
    step = int(max(h, w) / target)
    return images[:, ::step, ::step]


def array_stats(values: np.ndarray) -> Stats:
    """Stats over the first axis of a [N, D] array.

    Args:
        values: [N, D] numbers, N >= 1.

    Returns:
        Stats with (D,) arrays and count (1,).
    """
    x = values.astype(np.float64, copy=False)
    stats = {
        # min/max keep the input dtype (ints stay ints), as LeRobot's episode stats do.
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }
    quantiles = np.quantile(x, QUANTILES, axis=0)  # [Q, D]
    for key, q in zip(QUANTILE_KEYS, quantiles, strict=True):
        stats[key] = q
    return stats


def _quantiles_from_counts(counts: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """numpy's default (linear) quantiles of the data whose value histogram over 0..255 is `counts`."""
    cum = np.cumsum(counts)
    n = cum[-1]
    out = []
    for q in qs:
        pos = q * (n - 1)  # position in the sorted data
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        v_lo = np.searchsorted(cum, lo, side="right")  # value of the lo-th sorted element
        v_hi = np.searchsorted(cum, hi, side="right")
        out.append(v_lo + (pos - lo) * (v_hi - v_lo))
    return np.array(out, dtype=np.float64)


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of uint8 frames, scaled to [0, 1], shaped (3, 1, 1) as LeRobot stores them.

    Computed exactly from 256-bin histograms per channel, which is ~50x faster than sorting
    the pixels and gives the same numbers.

    Args:
        frames: [T, H, W, 3] uint8.

    Returns:
        Stats; count is the number of sampled frames.
    """
    sampled = _downsample(frames[sample_frame_indices(len(frames))])
    channels = sampled.shape[-1]
    values = np.arange(256, dtype=np.float64)
    per_channel: dict[str, list] = {k: [] for k in STAT_KEYS if k != "count"}
    for c in range(channels):
        counts = np.bincount(sampled[..., c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        nonzero = np.flatnonzero(counts)
        per_channel["min"].append(nonzero[0])
        per_channel["max"].append(nonzero[-1])
        per_channel["mean"].append(mean)
        per_channel["std"].append(np.sqrt((counts * (values - mean) ** 2).sum() / n))
        for key, q in zip(QUANTILE_KEYS, _quantiles_from_counts(counts, QUANTILES), strict=True):
            per_channel[key].append(q)
    stats = {k: (np.asarray(v, dtype=np.float64) / 255.0).reshape(-1, 1, 1) for k, v in per_channel.items()}
    stats["count"] = np.array([len(sampled)], dtype=np.int64)
    return {k: stats[k] for k in STAT_KEYS}


def episode_stats(frames: dict[str, np.ndarray], features: dict[str, dict]) -> dict[str, Stats]:
    """Stats of one episode for every non-string feature.

    Args:
        frames: {key: array with leading time dim T}; images [T, H, W, 3] uint8.
        features: the dataset's features dict.

    Returns:
        {feature key: Stats}.
    """
    out = {}
    for key, values in frames.items():
        dtype = features[key]["dtype"]
        if dtype == "string":
            continue
        if dtype in VISUAL_DTYPES:
            out[key] = image_stats(values)
        else:
            out[key] = array_stats(np.asarray(values).reshape(len(values), -1))
    return out


def merge_stats(parts: list[Stats]) -> Stats:
    """Merge stats of disjoint sets of samples of one feature.

    Args:
        parts: per-episode (or per-dataset) stats of the same feature and shape.

    Returns:
        The merged stats; quantiles as count-weighted means (see module docstring).
    """
    counts = np.array([float(p["count"][0]) for p in parts])
    total = counts.sum()
    shape = np.asarray(parts[0]["mean"]).shape
    w = (counts / total).reshape(-1, *([1] * len(shape)))  # broadcast over the stat's shape
    means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
    variances = np.stack([np.asarray(p["std"], dtype=np.float64) ** 2 for p in parts])
    mean = (w * means).sum(axis=0)
    # Within-part variance plus spread of part means around the merged mean.
    var = (w * (variances + (means - mean) ** 2)).sum(axis=0)
    merged = {
        "min": np.min(np.stack([np.asarray(p["min"]) for p in parts]), axis=0),
        "max": np.max(np.stack([np.asarray(p["max"]) for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        if all(key in p for p in parts):
            merged[key] = (w * np.stack([np.asarray(p[key], dtype=np.float64) for p in parts])).sum(axis=0)
    return merged


def aggregate_stats(stats_list: list[dict[str, Stats]]) -> dict[str, Stats]:
    """Merge several {feature: Stats} dicts (the union of their features).

    Args:
        stats_list: e.g. one dict per episode, or [dataset stats so far, new episode stats].

    Returns:
        {feature: merged Stats}.
    """
    keys = list(dict.fromkeys(k for s in stats_list for k in s))
    return {k: merge_stats([s[k] for s in stats_list if k in s]) for k in keys}


def stats_to_json(stats: dict[str, Stats]) -> dict[str, dict[str, list]]:
    """Nested lists for stats.json."""
    return {k: {s: np.asarray(v).tolist() for s, v in ft.items()} for k, ft in stats.items()}


def stats_from_json(data: dict[str, dict[str, list]]) -> dict[str, Stats]:
    """Numpy arrays from stats.json content."""
    return {k: {s: np.asarray(v) for s, v in ft.items()} for k, ft in data.items()}


def flatten_stats(stats: dict[str, Stats]) -> dict[str, list]:
    """{"stats/<feature>/<stat>": nested list}, the episodes-parquet columns."""
    return {f"stats/{k}/{s}": np.asarray(v).tolist() for k, ft in stats.items() for s, v in ft.items()}


def unflatten_stats(row: dict[str, object]) -> dict[str, Stats]:
    """Inverse of flatten_stats, from an episodes-parquet row; other columns are ignored."""
    out: dict[str, Stats] = {}
    for col, value in row.items():
        if not col.startswith("stats/") or value is None:
            continue
        feature, stat = col[len("stats/"):].rsplit("/", 1)
        out.setdefault(feature, {})[stat] = np.asarray(value)
    return out
