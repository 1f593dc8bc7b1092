"""Two reference policies that check the evaluation harness: the scripted expert and uniform noise.

The expert reads privileged simulator state (`observation.environment_state`), so it bounds what a
policy can reach from pixels; the random policy is the floor. A harness that scores them far apart
works; one that does not is broken.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig

ACTION_DIM = 4


class ScriptedExpertPolicy(Policy):
    """Meta-World's scripted expert for each environment's task, optionally with Gaussian action noise."""

    chunk_size = 1

    def __init__(self, noise_std: float = 0.0, seed: int = 0) -> None:
        self.noise_std = noise_std
        self.seed = seed
        self._experts: dict[str, Any] = {}

    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        if "observation.environment_state" not in batch:
            raise ValueError(
                "The scripted expert needs privileged state ('observation.environment_state'); "
                "set sim.privileged_state=true."
            )
        states = batch["observation.environment_state"]
        tasks = batch["task_name"]
        actions = np.stack([self._expert(task)(state) for task, state in zip(tasks, states, strict=True)])
        return actions.astype(np.float32)[:, None, :]

    def _expert(self, task: str) -> Any:
        if task not in self._experts:
            from vlm2vla.sim import ALL_TASKS, ScriptedExpert

            # One noise stream per task, so a task's noise does not depend on which tasks run beside it.
            seed = self.seed * 1000 + (ALL_TASKS.index(task) if task in ALL_TASKS else 999)
            self._experts[task] = ScriptedExpert(task, noise_std=self.noise_std, seed=seed)
        return self._experts[task]


class RandomPolicy(Policy):
    """Uniform random actions in [-1, 1]."""

    def __init__(self, chunk_size: int = 1, seed: int = 0) -> None:
        self.chunk_size = chunk_size
        self.rng = np.random.default_rng(seed)

    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        n = len(batch["task_name"])
        return self.rng.uniform(-1.0, 1.0, size=(n, self.chunk_size, ACTION_DIM)).astype(np.float32)


def build_expert(cfg: PolicyConfig, seed: int) -> Policy:
    """policy.type=expert: the scripted expert, with `cfg.noise_std` Gaussian action noise."""
    return ScriptedExpertPolicy(noise_std=cfg.noise_std, seed=seed)


def build_random(cfg: PolicyConfig, seed: int) -> Policy:
    """policy.type=random: uniform actions in chunks of `cfg.chunk_size`."""
    return RandomPolicy(chunk_size=cfg.chunk_size, seed=seed)
