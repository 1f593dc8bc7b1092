"""Selection strategies: exactly K unique ids, deterministic by seed, quotas, and the documented bad-input outcomes."""

import logging

import numpy as np
import pytest

from vlm2vla.engine import scoring as sel

D = 8


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    sources = np.repeat(np.array(["near", "mid", "far"]), 200)
    shift = np.repeat([0.5, 2.0, 5.0], 200)
    X = rng.normal(size=(600, D)).astype(np.float32)
    X[:, 0] += shift
    robot = rng.normal(size=(100, D)).astype(np.float32)
    ids = np.array([f"{s}/{i}" for i, s in enumerate(sources)])
    loss_vla = shift + rng.normal(scale=0.1, size=600)
    # before VLA adaptation every source is about as hard; adaptation helps the robot-like source most
    loss_base = loss_vla + np.repeat([2.0, 1.0, 0.2], 200) + rng.normal(scale=0.1, size=600)
    return ids, sources, X, robot, loss_vla, loss_base


def _all_scores(pool, seed):
    ids, sources, X, robot, loss_vla, loss_base = pool
    return {
        "random": sel.random_scores(len(ids), seed),
        "nearest": sel.nearest_scores(X, robot, max_block=1000),
        "centroid": sel.centroid_scores(X, robot),
        "perplexity": sel.perplexity_scores(loss_vla),
        "delta_perplexity": sel.delta_perplexity_scores(loss_base, loss_vla),
        "dsir": sel.dsir_scores(X, robot, seed),
        "dsir_hashed": sel.dsir_scores(X, robot, seed, method="hashed", dims=8),
    }


@pytest.mark.parametrize("k", [1, 50, 600])
def test_every_strategy_returns_k_unique_and_is_deterministic(pool, k):
    ids, sources = pool[0], pool[1]
    first, again = _all_scores(pool, seed=1), _all_scores(pool, seed=1)
    for name, scores in first.items():
        rows = sel.select_top_k(ids, sources, scores, k)
        assert len(rows) == k and len(np.unique(ids[rows])) == k, name
        np.testing.assert_array_equal(rows, sel.select_top_k(ids, sources, again[name], k))


def test_seed_changes_random_and_dsir(pool):
    ids, sources = pool[0], pool[1]
    a, b = _all_scores(pool, 1), _all_scores(pool, 2)
    for name in ("random", "dsir"):
        assert set(sel.select_top_k(ids, sources, a[name], 50)) != set(sel.select_top_k(ids, sources, b[name], 50))


def test_robot_like_strategies_prefer_the_near_source(pool):
    ids, sources = pool[0], pool[1]
    for name, scores in _all_scores(pool, 0).items():
        if name in ("random", "dsir_hashed"):
            continue
        picked = sources[sel.select_top_k(ids, sources, scores, 100)]
        assert (picked == "near").sum() > (picked == "mid").sum() >= (picked == "far").sum(), name


def test_quotas(pool):
    ids, sources, X, robot, *_ = pool
    scores = sel.centroid_scores(X, robot)
    rows = sel.select_top_k(ids, sources, scores, 100, quotas={"far": 0.3, "mid": 0.2})
    assert len(np.unique(rows)) == 100
    assert (sources[rows] == "far").sum() == 30 and (sources[rows] == "mid").sum() == 20
    with pytest.raises(ValueError, match="not in the pool"):
        sel.select_top_k(ids, sources, scores, 10, quotas={"nope": 0.5})
    with pytest.raises(ValueError, match="summing to <= 1"):
        sel.select_top_k(ids, sources, scores, 10, quotas={"far": 0.8, "mid": 0.5})


def test_quota_larger_than_source_still_fills_k(pool, caplog):
    ids, sources, X, robot, *_ = pool
    with caplog.at_level(logging.WARNING):
        rows = sel.select_top_k(ids, sources, sel.centroid_scores(X, robot), 500, quotas={"far": 0.5})
    assert len(np.unique(rows)) == 500 and (sources[rows] == "far").sum() == 200
    assert "taking all of them" in caplog.text


def test_resolve_k(caplog):
    assert sel.resolve_k(None, 0.1, 600) == 60
    assert sel.resolve_k(7, None, 600) == 7
    with caplog.at_level(logging.WARNING):
        assert sel.resolve_k(1000, None, 600) == 600
    assert "larger than the pool" in caplog.text
    with pytest.raises(ValueError):
        sel.resolve_k(5, 0.1, 600)
    with pytest.raises(ValueError):
        sel.resolve_k(None, 1.5, 600)


def test_bad_features():
    with pytest.raises(ValueError, match="pool features are 8-dim but robot features are 4-dim"):
        sel.nearest_scores(np.zeros((3, 8)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no robot features"):
        sel.centroid_scores(np.zeros((3, 8)), np.zeros((0, 8)))
    with pytest.raises(ValueError, match="pool has no features"):
        sel.dsir_scores(np.zeros((0, 8)), np.zeros((3, 8)), seed=0)


def test_stream_top_k_matches_global_top_k():
    rng = np.random.default_rng(0)
    scores = rng.random(10_000).astype(np.float32)
    keys = np.arange(10_000)
    batches = ((keys[i:i + 777], scores[i:i + 777]) for i in range(0, 10_000, 777))
    got_keys, got_scores = sel.stream_top_k(batches, 123)
    np.testing.assert_array_equal(got_keys, sel.top_k(keys, scores, 123))
    assert (np.diff(got_scores) <= 0).all()


def test_nan_scores_rank_last():
    ids = np.array(["a", "b", "c"])
    rows = sel.top_k(ids, np.array([np.nan, 1.0, 0.5]), 3)
    assert ids[rows].tolist() == ["b", "c", "a"]
