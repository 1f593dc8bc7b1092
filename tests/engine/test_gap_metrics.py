"""Gap metrics on synthetic features with known structure: sources at increasing distance from the robot cluster."""

import numpy as np
import pytest

from vlm2vla.engine import gap_metrics as gm

D = 16


def _sets(shifts=(0.25, 1.0, 3.0), n=300, seed=0):
    rng = np.random.default_rng(seed)
    robot = rng.normal(size=(n, D))
    sources = []
    for s in shifts:
        X = rng.normal(size=(n, D))
        X[:, 0] += s
        sources.append(X)
    return robot, sources


def test_metrics_order_sources_by_overlap():
    robot, sources = _sets()
    mmd = [gm.mmd2_unbiased(X, robot) for X in sources]
    fd = [gm.frechet_distance(X, robot) for X in sources]
    auc = [gm.classifier_auc(X, robot, folds=3) for X in sources]
    assert mmd == sorted(mmd) and fd == sorted(fd) and auc == sorted(auc)
    assert auc[-1] > 0.9


def test_permutation_p_value():
    robot, (near, _, far) = _sets()
    rng = np.random.default_rng(5)
    same = rng.normal(size=(300, D))
    _, p_far = gm.mmd_test(far, robot, permutations=100)
    _, p_same = gm.mmd_test(same, robot, permutations=100)
    assert p_far < 0.05
    assert p_same > 0.05


def test_frechet_zero_for_identical_and_stable_when_rank_deficient():
    robot, _ = _sets()
    assert gm.frechet_distance(robot, robot) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(1)
    few = rng.normal(size=(5, 64))  # 5 samples in 64 dims: singular covariances
    value = gm.frechet_distance(few, few + 1.0)
    assert np.isfinite(value) and value == pytest.approx(64.0, rel=1e-6)


def test_uniformity_higher_for_spread_set():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(400, D))
    collapsed = np.ones((400, D)) + 0.01 * rng.normal(size=(400, D))
    assert gm.uniformity(spread) > gm.uniformity(collapsed) + 1.0


def test_subsample_is_seeded_and_capped():
    X = np.arange(100)[:, None]
    a = gm.subsample(X, 10, seed=3)
    assert len(a) == 10 and np.array_equal(a, gm.subsample(X, 10, seed=3))
    assert gm.subsample(X, 1000, seed=3) is X


def test_mismatched_dims_raise():
    with pytest.raises(ValueError, match="same D"):
        gm.mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))


def test_embed_2d_pca():
    robot, sources = _sets(n=50)
    xy = gm.embed_2d(np.concatenate([robot, *sources]), method="pca")
    assert xy.shape == (200, 2)
    with pytest.raises(ValueError, match="map method"):
        gm.embed_2d(robot, method="bogus")


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_embed_2d_nonlinear_keeps_clusters_apart(method):
    if method == "umap":
        pytest.importorskip("umap", reason="umap-learn is an optional extra (not installed here)")
    robot, (_, _, far) = _sets(shifts=(0.25, 1.0, 8.0), n=60)
    X = np.concatenate([robot, far])
    xy = gm.embed_2d(X, method=method, seed=0)
    assert xy.shape == (120, 2) and xy.dtype == np.float32
    np.testing.assert_array_equal(xy, gm.embed_2d(X, method=method, seed=0))  # seeded
    # Local structure survives the map: a point's nearest neighbour on it comes from its own set.
    labels = np.repeat([0, 1], 60)
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(120) * 1e9
    assert (labels[dist.argmin(axis=1)] == labels).mean() > 0.95


def test_umap_without_umap_learn_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    robot, _ = _sets(n=10)
    with pytest.raises(ValueError, match="pip install umap-learn"):
        gm.embed_2d(robot, method="umap")
