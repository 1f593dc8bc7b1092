"""The grounded suite's env-steps/s and rendering next to a stock Meta-World task, in one run.

    MUJOCO_GL=osmesa python benchmarks/bench_grounded.py --size 128 --steps 300

Every env is built with the same SimConfig settings (image size, fast_render, privileged state) and
stepped with the same uniform random actions; a step includes rendering the observation, as in
collection and evaluation. Rendering alone is timed separately. Prints each env's figures and its
ratio to the stock task (goal: env-steps/s >= 0.7x the stock task's). Envs are measured in turns,
round-robin, so a slow patch of this noisy machine hits them all alike.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlm2vla.sim import SimConfig, make_env

STOCK = ("metaworld", "reach-v3", "corner2")
GROUNDED = [("grounded", f"grounded-{f}", "front") for f in ("reach", "push", "lift", "reach-spatial")]


def _time_block(env, rng: np.random.Generator, steps: int) -> tuple[float, float]:
    """Seconds for `steps` env steps, and for `steps` renders alone."""
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if terminated or truncated:
            env.reset()
    step_time = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        env.unwrapped._render_image()
    return step_time, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="square image side in pixels")
    parser.add_argument("--steps", type=int, default=300, help="steps (and renders) timed per env")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin turns the steps are split into")
    args = parser.parse_args()
    specs = [STOCK, *GROUNDED]
    envs = {task: make_env(task, SimConfig(name=sim, camera=cam, image_size=args.size)) for sim, task, cam in specs}
    totals = {task: [0.0, 0.0] for task in envs}
    rngs = {task: np.random.default_rng(0) for task in envs}
    for env in envs.values():
        env.reset(seed=0)
        _time_block(env, np.random.default_rng(1), 5)  # warm-up: GL context, caches
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        for task, env in envs.items():
            step_time, render_time = _time_block(env, rngs[task], per_round)
            totals[task][0] += step_time
            totals[task][1] += render_time
    n = per_round * args.rounds
    stock_steps, stock_render = (n / t for t in totals[STOCK[1]])
    print(f"size={args.size}x{args.size} steps={n} per env, fast_render=True, privileged_state=True")
    print(f"{'env':<24} {'env-steps/s':>11} {'ratio':>6} {'renders/s':>10} {'ratio':>6}")
    for task, (step_time, render_time) in totals.items():
        steps, renders = n / step_time, n / render_time
        print(f"{task:<24} {steps:>11.1f} {steps / stock_steps:>5.2f}x "
              f"{renders:>10.1f} {renders / stock_render:>5.2f}x")
    print("goal: every grounded family >= 0.70x the stock task's env-steps/s")
    for env in envs.values():
        env.close()


if __name__ == "__main__":
    main()
