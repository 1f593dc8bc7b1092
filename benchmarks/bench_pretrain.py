"""Pretraining speed of the tiny default: samples/s and the share of step time spent waiting for data.

    python benchmarks/bench_pretrain.py [--pool runs/pool] [--steps 40] [--batch-size 8] [--workers 2]

Without --pool, a small embedded pool of the four general sources (no simulator needed) is generated
in a temporary folder. The tiny default is built from it and trained for --steps steps (held-out
evaluation and checkpoints off); the first --warmup steps are left out of the figures. Data wait is
the time the loop blocks on the DataLoader (image decoding, chat templating and tokenisation run in
its worker processes); the target is under 10% of step time.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from vlm2vla.config import load_config
from vlm2vla.runs import Run
from vlm2vla.training.metrics import read_metrics
from vlm2vla.training.next_token_config import PretrainConfig, train_next_token

log = logging.getLogger("bench_pretrain")


def small_pool(root: Path, per_source: int) -> Path:
    """Generate the general embedded sources (no simulator) as a pool under root/pool."""
    from vlm2vla.vlm_data.embedded.config import GENERAL_SOURCES, EmbeddedPoolConfig
    from vlm2vla.vlm_data.pool import PoolConfig, build_pool

    cfg = PoolConfig(run_dir=str(root / "pool"), progress=False,
                     embedded=EmbeddedPoolConfig(sources=GENERAL_SOURCES, samples_per_source=per_source))
    build_pool(cfg, Run.open(cfg.run_dir, "pool", cfg))
    return root / "pool"


def measure(pool: Path, run_dir: Path, args: argparse.Namespace) -> list[dict]:
    """Train the tiny default for args.steps steps; return the metrics lines after the warm-up."""
    overrides = [f"run_dir={run_dir}", f"data={pool}", "model=tiny", f"optim.max_steps={args.steps}",
                 f"optim.batch_size={args.batch_size}", f"num_workers={args.workers}", "log_interval=1",
                 "checkpoint.interval=0", "eval.at_start=false", "eval.max_samples_per_source=1", "progress=false"]
    cfg = load_config(PretrainConfig, None, overrides)
    train_next_token(cfg, Run.open(cfg.run_dir, "pretrain", cfg))
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] > args.warmup]


def main() -> None:
    """Parse arguments, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", help="an existing pool run directory or pool.parquet")
    parser.add_argument("--per-source", type=int, default=200, help="samples per generated source")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(args.pool) if args.pool else small_pool(Path(tmp), args.per_source)
        rows = measure(pool, Path(tmp) / "run", args)
    seconds = sum(r["step_time_s"] for r in rows)
    waited = sum(r["data_wait_frac"] * r["step_time_s"] for r in rows)
    samples = len(rows) * args.batch_size
    print(f"tiny default, batch {args.batch_size}, {args.workers} data workers, {len(rows)} timed steps")
    print(f"  samples/s               {samples / seconds:8.1f}")
    print(f"  step time               {1000 * seconds / len(rows):8.1f} ms")
    print(f"  data wait / step time   {waited / seconds:8.1%}   (target < 10%)")


if __name__ == "__main__":
    main()
