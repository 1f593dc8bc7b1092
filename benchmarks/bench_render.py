"""Rendering speed of the Meta-World env with fast_render on and off, at the same resolution.

    MUJOCO_GL=osmesa python benchmarks/bench_render.py --size 128 --frames 200 --task pick-place-v3

Each mode gets its own env (shadow map and multisampling are fixed when the GL context is created),
resets with the same seed, renders a few warm-up frames, then times ``--frames`` renders of a scene
that changes every frame (one random step between renders, not timed). Prints frames/s per mode and
fast/default as a ratio (target: >= 4x on CPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlm2vla.sim import SimConfig, make_env


def frames_per_second(task: str, size: int, frames: int, fast: bool, warmup: int = 5) -> float:
    """Rendered frames per second of one env, excluding physics steps."""
    env = make_env(task, SimConfig(image_size=size, fast_render=fast))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(warmup):
        env.unwrapped._render_image()
    elapsed = 0.0
    for i in range(frames):
        if i % 100 == 99:
            env.reset()
        env.unwrapped._env.step(rng.uniform(-1, 1, 4).astype(np.float32))  # move the scene, untimed
        start = time.perf_counter()
        image = env.unwrapped._render_image()
        elapsed += time.perf_counter() - start
    assert image.std() > 0, "blank frame"
    env.close()
    return frames / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="square image side in pixels")
    parser.add_argument("--frames", type=int, default=200, help="frames timed per mode")
    parser.add_argument("--task", default="pick-place-v3", help="Meta-World task to render")
    args = parser.parse_args()
    fast = frames_per_second(args.task, args.size, args.frames, fast=True)
    default = frames_per_second(args.task, args.size, args.frames, fast=False)
    print(f"task={args.task} size={args.size}x{args.size} frames={args.frames}")
    print(f"fast_render=True : {fast:8.1f} frames/s")
    print(f"fast_render=False: {default:8.1f} frames/s")
    print(f"speed-up: {fast / default:.1f}x (target >= 4x)")


if __name__ == "__main__":
    main()
