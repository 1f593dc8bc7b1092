"""Closed-loop evaluation throughput: env-steps/s with 1 and 2 worker processes, in one run.

    python benchmarks/bench_eval.py [--episodes 8] [--steps 150] [--image-size 128]

The random policy is used so every episode runs exactly --steps steps (no early success), which
makes the step counts of the settings identical. Prints steps/s for each setting and the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl" if os.path.exists("/dev/nvidia0") else "osmesa")

from vlm2vla.evaluation.policy_interface import PolicyConfig, make_policy  # noqa: E402
from vlm2vla.evaluation.rollout import EpisodeJob, run_episodes  # noqa: E402
from vlm2vla.sim import SimConfig  # noqa: E402


def measure(sim: SimConfig, jobs: list[EpisodeJob], num_envs: int, asynchronous: bool) -> float:
    """Env-steps per second for running `jobs` with the given parallelism (start-up included)."""
    policy = make_policy(PolicyConfig(type="random"))
    start = time.perf_counter()
    steps = sum(r.length for r in run_episodes(jobs, policy, sim, num_envs=num_envs, asynchronous=asynchronous))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--tasks", default="reach-v3,button-press-v3")
    args = parser.parse_args()
    sim = SimConfig(image_size=args.image_size, max_episode_steps=args.steps)
    tasks = args.tasks.split(",")
    jobs = [EpisodeJob(task=tasks[k % len(tasks)], seed=k, instruction="") for k in range(args.episodes)]
    settings = {"in-process (sync, 1 env)": (1, False), "1 worker process": (1, True),
                "2 worker processes": (2, True)}
    rates = {name: measure(sim, jobs, n, a) for name, (n, a) in settings.items()}
    print(f"eval throughput, {args.episodes} episodes x {args.steps} steps, {args.image_size}px, "
          f"{os.cpu_count()} cores")
    for name, rate in rates.items():
        print(f"  {name:<26} {rate:8.1f} env-steps/s")
    print(f"  ratio 2 workers / 1 worker:  {rates['2 worker processes'] / rates['1 worker process']:.2f}x")
    print(f"  ratio 1 worker / in-process: {rates['1 worker process'] / rates['in-process (sync, 1 env)']:.2f}x")


if __name__ == "__main__":
    main()
