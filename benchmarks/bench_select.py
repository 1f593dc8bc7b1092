"""Selection and estimator-training speed: prints each figure and its ratio to the target.

    .venv/bin/python benchmarks/bench_select.py

Targets (issue 4): global top-K over 10 million scored candidates, streamed in batches as from
feature shards, within 10 s and 1.5 GB peak memory (peak RSS of the whole process); estimator
training on 100k x 512 features in seconds (target: 30 s).
"""

from __future__ import annotations

import resource
import time

import numpy as np

from vlm2vla.engine.proximity import EstimatorConfig, fit_estimator
from vlm2vla.engine.scoring import stream_top_k

N_CANDIDATES = 10_000_000
BATCH = 1_000_000
K = 1_000_000
TARGET_TOPK_S, TARGET_PEAK_GB, TARGET_TRAIN_S = 10.0, 1.5, 30.0


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scored_batches(seed: int = 0):
    """(global row numbers, float32 scores) batches, as the select stage gets them shard by shard."""
    rng = np.random.default_rng(seed)
    for start in range(0, N_CANDIDATES, BATCH):
        yield np.arange(start, start + BATCH, dtype=np.int64), rng.random(BATCH, dtype=np.float32)


def bench_topk() -> tuple[float, float]:
    start = time.perf_counter()
    keys, scores = stream_top_k(scored_batches(), K)
    seconds = time.perf_counter() - start
    assert len(keys) == K and len(np.unique(keys)) == K and (np.diff(scores) <= 0).all()
    return seconds, peak_rss_gb()


def bench_train() -> tuple[float, dict]:
    rng = np.random.default_rng(0)
    robot = rng.normal(size=(10_000, 512)).astype(np.float32) + 0.2
    pool = rng.normal(size=(90_000, 512)).astype(np.float32)
    start = time.perf_counter()
    _, info = fit_estimator(robot, pool, EstimatorConfig(seed=0))
    return time.perf_counter() - start, info


def main() -> None:
    base = peak_rss_gb()
    seconds, peak = bench_topk()
    print(f"top-K: K={K:,} of {N_CANDIDATES:,} in batches of {BATCH:,}: {seconds:.2f} s "
          f"({seconds / TARGET_TOPK_S:.2f} x the {TARGET_TOPK_S:.0f} s target, "
          "scoring of the synthetic batches included)")
    print(f"top-K: peak RSS {peak:.2f} GB ({peak / TARGET_PEAK_GB:.2f} x the {TARGET_PEAK_GB} GB target; "
          f"{base:.2f} GB before, imports included)")
    seconds, info = bench_train()
    print(f"estimator: 100k x 512 (10k robot, 90k pool): {seconds:.2f} s, {info['steps']} steps, "
          f"val acc {info['val_acc']:.3f} ({seconds / TARGET_TRAIN_S:.2f} x the {TARGET_TRAIN_S:.0f} s target)")


if __name__ == "__main__":
    main()
