"""Stats match numpy on the raw data; merging is exact for moments and numerically sound."""

import json

import numpy as np
import pytest
from robot_data_helpers import CAM, make_features, write_dataset

from vlm2vla.robot_data import stats as stats_lib
from vlm2vla.robot_data.format import normalize_features


def test_dataset_stats_match_numpy(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "image")
    stats = json.loads((tmp_path / "meta/stats.json").read_text())
    for key in ("observation.state", "action"):
        raw = np.concatenate([ep[key] for ep in episodes]).astype(np.float64)
        np.testing.assert_allclose(stats[key]["mean"], raw.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["std"], raw.std(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["min"], raw.min(0), rtol=1e-6)
        np.testing.assert_allclose(stats[key]["max"], raw.max(0), rtol=1e-6)
        assert stats[key]["count"] == [len(raw)]
        # Quantiles: the count-weighted mean of exact per-episode quantiles (LeRobot's aggregation), ...
        assert sorted(k for k in stats[key] if k.startswith("q")) == ["q01", "q10", "q50", "q90", "q99"]
        lengths = np.array([len(ep[key]) for ep in episodes], dtype=np.float64)
        for name, q in (("q01", 0.01), ("q10", 0.1), ("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
            per_episode = np.stack([np.quantile(ep[key].astype(np.float64), q, axis=0) for ep in episodes])
            expected = (per_episode * lengths[:, None]).sum(0) / lengths.sum()
            np.testing.assert_allclose(stats[key][name], expected, rtol=1e-5, atol=1e-6, err_msg=f"{key} {name}")
        # ... ordered, and near the pooled quantiles (these episodes share one distribution)
        qs = np.stack([stats[key][name] for name in ("q01", "q10", "q50", "q90", "q99")])
        assert (np.diff(qs, axis=0) > 0).all()
        np.testing.assert_allclose(stats[key]["q50"], np.quantile(raw, 0.5, axis=0), atol=0.2)
    # Images: per channel, (3, 1, 1), in [0, 1]; all frames are sampled in short episodes.
    pixels = np.concatenate([ep[CAM] for ep in episodes]).reshape(-1, 3) / 255.0
    assert np.asarray(stats[CAM]["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(stats[CAM]["mean"]).ravel(), pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stats[CAM]["std"]).ravel(), pixels.std(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stats[CAM]["max"]).ravel(), pixels.max(0))
    assert stats["index"]["max"] == [50] and stats["index"]["min"] == [0]
    assert stats["timestamp"]["count"] == [51]


def test_episode_stats_shapes():
    feats = normalize_features(make_features("video"))
    frames = {CAM: np.zeros((5, 32, 32, 3), np.uint8), "action": np.ones((5, 3), np.float32),
              "timestamp": np.arange(5, dtype=np.float32)}
    stats = stats_lib.episode_stats(frames, feats)
    assert set(stats[CAM]) == set(stats_lib.STAT_KEYS)
    assert stats[CAM]["q99"].shape == (3, 1, 1) and stats[CAM]["count"].tolist() == [5]
    assert stats["action"]["mean"].shape == (3,) and stats["timestamp"]["mean"].shape == (1,)


def test_merge_is_exact_and_stable():
    rng = np.random.default_rng(0)
    # A large offset with a small spread: E[x^2] - E[x]^2 would lose every digit here.
    parts = [1e8 + rng.normal(size=(n, 2)) for n in (7, 50, 300)]
    merged = stats_lib.aggregate_stats([{"x": stats_lib.array_stats(p)} for p in parts])["x"]
    pooled = np.concatenate(parts)
    np.testing.assert_allclose(merged["mean"], pooled.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged["std"], pooled.std(0), rtol=1e-6)
    assert merged["count"].tolist() == [357]
    # Merging incrementally (as the writer does) equals merging all at once.
    running = {"x": stats_lib.array_stats(parts[0])}
    for p in parts[1:]:
        running = stats_lib.aggregate_stats([running, {"x": stats_lib.array_stats(p)}])
    for key in stats_lib.STAT_KEYS:
        np.testing.assert_allclose(running["x"][key], merged[key], rtol=1e-9)


def test_image_samples_follow_lerobot_heuristic():
    assert stats_lib.num_image_samples(30) == 30
    assert stats_lib.num_image_samples(500) == 105
    assert stats_lib.num_image_samples(10**6) == 10_000
    idx = stats_lib.sample_frame_indices(1000)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 177


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_min_max_keep_dtype(dtype):
    stats = stats_lib.array_stats(np.arange(6, dtype=dtype).reshape(3, 2))
    assert stats["min"].dtype == np.dtype(dtype) and stats["mean"].dtype == np.float64


def test_image_stats_equal_direct_computation():
    frames = np.random.default_rng(3).integers(0, 256, size=(7, 9, 11, 3), dtype=np.uint8)
    got = stats_lib.image_stats(frames)
    pixels = frames.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(got["mean"].ravel(), pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(got["std"].ravel(), pixels.std(0), rtol=1e-12)
    np.testing.assert_allclose(got["min"].ravel(), pixels.min(0))
    for key, q in zip(stats_lib.QUANTILE_KEYS, stats_lib.QUANTILES, strict=True):
        np.testing.assert_allclose(got[key].ravel(), np.quantile(pixels, q, axis=0), rtol=1e-12)
    assert list(got) == list(stats_lib.STAT_KEYS)
