"""Demonstration collection throughput: frames/s written, mp4 video vs PNG image columns, in one run.

    python benchmarks/bench_collect.py [--episodes-per-task 4] [--image-size 128]

Runs the scripted expert through the same code as `vlm2vla collect` (2 worker processes) into
temporary folders and prints frames/s for each storage mode and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl" if os.path.exists("/dev/nvidia0") else "osmesa")

from vlm2vla.robot_data.collect import CollectConfig, collect  # noqa: E402
from vlm2vla.runs import Run  # noqa: E402
from vlm2vla.sim import SimConfig  # noqa: E402


def measure(cfg: CollectConfig) -> tuple[float, int, float]:
    """(frames/s, frames, dataset MB) of one collection run into cfg.run_dir."""
    start = time.perf_counter()
    report = collect(cfg, Run.open(cfg.run_dir, "collect", cfg))
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cfg.run_dir) for f in fs)
    return report["frames"] / seconds, report["frames"], size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-per-task", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--tasks", default="reach-v3,button-press-v3,drawer-close-v3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(tasks=tuple(args.tasks.split(",")), episodes_per_task=args.episodes_per_task,
                    sim=SimConfig(image_size=args.image_size), progress=False, num_envs=2)
        rows = {
            "mp4 video (AV1)": measure(CollectConfig(run_dir=f"{tmp}/video", use_videos=True, **base)),
            "PNG image columns": measure(CollectConfig(run_dir=f"{tmp}/image", use_videos=False, **base)),
        }
    print(f"collection throughput, {args.image_size}px, 2 worker processes, {os.cpu_count()} cores")
    for name, (rate, frames, mb) in rows.items():
        print(f"  {name:<20} {rate:8.1f} frames/s  ({frames} frames, {mb:.1f} MB on disk)")
    (v_rate, _, v_mb), (i_rate, _, i_mb) = rows.values()
    print(f"  ratio video / image: speed {v_rate / i_rate:.2f}x, size {v_mb / i_mb:.2f}x")


if __name__ == "__main__":
    main()
