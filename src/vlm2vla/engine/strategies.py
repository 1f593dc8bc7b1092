"""The selection strategies `vlm2vla select` can rank the pool with, one function each, by name.

A strategy reads what it needs from `ScoringInputs` (feature arrays and answer losses load only when
asked) and returns one score per pool sample, higher = keep first, plus extra report figures. The
scoring maths is in scoring.py; a new strategy is its function plus one `STRATEGIES.register` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vlm2vla.engine import scoring
from vlm2vla.registry import Registry

# name -> "module:function(inputs) -> (scores, info)"
STRATEGIES = Registry("selection strategy")
for _name in ("proximity", "random", "nearest", "centroid", "perplexity", "delta_perplexity", "dsir"):
    STRATEGIES.register(_name, f"vlm2vla.engine.strategies:{_name}")
# strategies that read the answer losses of a VLA-adapted model's embed run (select's vla_features)
NEEDS_VLA_FEATURES = ("perplexity", "delta_perplexity")


@dataclass
class ScoringInputs:
    """The pool to score and what strategies may read about it."""

    cfg: Any  # the SelectConfig: features, vla_features, estimator settings, seed, DSIR options, batch_rows
    store: Any  # the FeatureStore of cfg.features
    ids: np.ndarray  # pool sample ids, in the store's index order
    sources: np.ndarray
    run_dir: Path  # where a strategy may save what it fitted (the proximity estimator)
    index: pa.Table  # the store's index, as read once by the caller
    pool_rows: np.ndarray  # bool mask of the index's rows that are pool samples

    @cached_property
    def robot_features(self) -> np.ndarray:
        """Every robot feature row (raises when the store has none)."""
        _, _, robot_X = self.store.load(kind="robot")
        if len(robot_X) == 0:
            raise ValueError(f"{self.cfg.features}: no robot features; embed robot episodes (kind='robot') first")
        return robot_X

    @cached_property
    def pool_features(self) -> np.ndarray:
        """Every pool feature row, in memory (the distance and DSIR baselines need them all)."""
        pool_ids, _, pool_X = self.store.load(kind="pool")
        scoring.check_features(pool_X, self.robot_features)
        if not np.array_equal(pool_ids, self.ids):
            raise ValueError(f"{self.cfg.features}: the feature store changed while scoring; re-run select")
        return pool_X

    def base_losses(self) -> np.ndarray:
        """Answer loss per pool sample under the embedded (base) model."""
        return self.index["loss"].to_numpy(zero_copy_only=False)[self.pool_rows].astype(np.float64)

    def vla_losses(self) -> np.ndarray:
        """Answer loss per pool sample under the VLA-adapted model (NaN where its store lacks the id)."""
        from vlm2vla.engine.feature_store import FeatureStore

        return _losses_for(FeatureStore.open(self.cfg.vla_features).index(), self.ids)


def random(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Seeded uniform scores."""
    return scoring.random_scores(len(inputs.ids), inputs.cfg.seed), {}


def perplexity(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Minus the answer loss under the VLA-adapted model."""
    return scoring.perplexity_scores(inputs.vla_losses()), {}


def delta_perplexity(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Loss under the base model minus loss under the VLA-adapted model."""
    return scoring.delta_perplexity_scores(inputs.base_losses(), inputs.vla_losses()), {}


def nearest(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Minus the distance to the nearest robot sample."""
    robot_X = inputs.robot_features
    return scoring.nearest_scores(inputs.pool_features, robot_X), {}


def centroid(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Minus the distance to the robot centroid."""
    robot_X = inputs.robot_features
    return scoring.centroid_scores(inputs.pool_features, robot_X), {}


def dsir(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """DSIR-style importance resampling scores."""
    cfg, robot_X = inputs.cfg, inputs.robot_features
    return scoring.dsir_scores(inputs.pool_features, robot_X, cfg.seed, method=cfg.dsir_method,
                               dims=cfg.dsir_dims), {}


def proximity(inputs: ScoringInputs) -> tuple[np.ndarray, dict]:
    """Train the estimator on robot vs a seeded pool subsample, then score the pool batch by batch."""
    from vlm2vla.engine.proximity import fit_estimator

    cfg, store, robot_X = inputs.cfg, inputs.store, inputs.robot_features
    rng = np.random.default_rng(cfg.seed)
    keep = min(1.0, cfg.estimator_pool_samples / len(inputs.ids))
    train_parts, out_ids, out_scores = [], [], []
    for _, _, X in store.iter_batches(kind="pool", batch_rows=cfg.batch_rows):
        if X.shape[1] != robot_X.shape[1]:
            scoring.check_features(X, robot_X)
        train_parts.append(X[rng.random(len(X)) < keep] if keep < 1.0 else X)
    pool_train = np.concatenate(train_parts)
    del train_parts
    estimator, info = fit_estimator(robot_X, pool_train, cfg.estimator)
    del pool_train
    estimator.save(inputs.run_dir / "estimator")
    for batch_ids, _, X in store.iter_batches(kind="pool", batch_rows=cfg.batch_rows):
        out_ids.append(batch_ids)
        out_scores.append(estimator.score(X).astype(np.float64))
    if not np.array_equal(np.concatenate(out_ids), inputs.ids):
        raise ValueError(f"{cfg.features}: the feature store changed while scoring; re-run select")
    info = {k: v for k, v in info.items() if k != "curve"} | {"val_curve": info["curve"]}
    return np.concatenate(out_scores), info


def _losses_for(index: pa.Table, ids: np.ndarray) -> np.ndarray:
    """Loss per pool id from another store's index (NaN where absent)."""
    lookup = dict(zip(index["id"].to_pylist(), index["loss"].to_pylist(), strict=True))
    found = np.array([lookup.get(i) is not None for i in ids])
    if not found.any():
        raise ValueError("the vla_features store holds no losses for any pool id; embed the same pool with the "
                         "VLA-adapted model (its answer losses are recorded)")
    return np.array([np.nan if lookup.get(i) is None else lookup[i] for i in ids], dtype=np.float64)
