"""The proximity estimator: ranks robot-like samples first, stops early at the validation target, saves/loads."""

import numpy as np
import pytest

from vlm2vla.engine.proximity import EstimatorConfig, ProximityEstimator, fit_estimator


def _auc(pos, neg):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])


def _data(seed=0, D=32):
    rng = np.random.default_rng(seed)
    robot = rng.normal(size=(400, D)).astype(np.float32) + 2.0 * np.eye(D, dtype=np.float32)[0]
    pool = rng.normal(size=(4000, D)).astype(np.float32) - 2.0 * np.eye(D, dtype=np.float32)[0]
    return robot, pool


def test_ranks_in_distribution_first_and_stops_early():
    robot, pool = _data()
    est, info = fit_estimator(robot, pool, EstimatorConfig(eval_every=10, max_steps=2000))
    assert info["stopped_early"] and info["val_acc"] >= 0.9 and info["steps"] < 2000
    rng = np.random.default_rng(9)
    ind = rng.normal(size=(500, 32)).astype(np.float32) + 2.0 * np.eye(32, dtype=np.float32)[0]
    ood = rng.normal(size=(500, 32)).astype(np.float32) - 2.0 * np.eye(32, dtype=np.float32)[0]
    assert _auc(est.score(ind), est.score(ood)) >= 0.9
    s = est.score(pool)
    assert s.dtype == np.float32 and ((s > 0) & (s < 1)).all()


def test_deterministic_by_seed_and_mlp_variant():
    robot, pool = _data()
    a, _ = fit_estimator(robot, pool, EstimatorConfig(seed=3))
    b, _ = fit_estimator(robot, pool, EstimatorConfig(seed=3))
    np.testing.assert_array_equal(a.score(pool), b.score(pool))
    mlp, info = fit_estimator(robot, pool, EstimatorConfig(hidden=16, seed=3))
    assert info["val_acc"] >= 0.9


def test_save_load_roundtrip(tmp_path):
    robot, pool = _data()
    est, _ = fit_estimator(robot, pool, EstimatorConfig(hidden=8))
    est.save(tmp_path / "est")
    back = ProximityEstimator.load(tmp_path / "est")
    np.testing.assert_allclose(back.score(pool), est.score(pool), rtol=1e-6)


def test_bad_inputs():
    robot, pool = _data()
    with pytest.raises(ValueError, match="pool features are 16-dim but robot features are 32-dim"):
        fit_estimator(robot, pool[:, :16], EstimatorConfig())
    with pytest.raises(ValueError, match="batch_size"):
        EstimatorConfig(batch_size=3)
    est, _ = fit_estimator(robot, pool, EstimatorConfig(max_steps=10))
    with pytest.raises(ValueError, match="32-dim"):
        est.score(pool[:, :16])
