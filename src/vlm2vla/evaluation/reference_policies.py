"""Two reference policies that check the evaluation harness: the scripted expert and uniform noise.

The expert reads privileged simulator state (`observation.environment_state`), so it bounds what a
policy can reach from pixels; the random policy is the floor. A harness that scores them far apart
works; one that does not is broken.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig

ACTION_DIM = 4


class ScriptedExpertPolicy(Policy):
    """Each environment's scripted expert, optionally with Gaussian action noise.

    Args:
        noise_std: std of the noise added to every action.
        seed: base seed of the experts' noise and of random targets.
        target: "named" aims at the instruction's target; "random" aims every episode at a candidate
            drawn uniformly (the language-blind floor of a suite with several candidates per scene).
    """

    chunk_size = 1
    TARGETS = ("named", "random")

    def __init__(self, noise_std: float = 0.0, seed: int = 0, target: str = "named") -> None:
        if target not in self.TARGETS:
            raise ValueError(f"policy.kwargs.target: {target!r} is not one of {self.TARGETS}")
        self.noise_std = noise_std
        self.seed = seed
        self.target = target
        self._experts: dict[str, Any] = {}

    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        if "observation.environment_state" not in batch:
            raise ValueError(
                "The scripted expert needs privileged state ('observation.environment_state'); "
                "set sim.privileged_state=true."
            )
        states, tasks = batch["observation.environment_state"], batch["task_name"]
        keys = batch.get("episode_key", [""] * len(tasks))
        actions = []
        for task, state, key in zip(tasks, states, keys, strict=True):
            expert, num_targets = self._expert(task)
            actions.append(expert(state, target=self._target(key, num_targets)))
        return np.stack(actions).astype(np.float32)[:, None, :]

    def _target(self, episode_key: str, num_targets: int) -> int | None:
        if self.target == "named":
            return None
        # Drawn from the episode's key, so an episode keeps its target at every step, whichever worker runs it.
        rng = np.random.default_rng([self.seed, zlib.crc32(episode_key.encode())])
        return int(rng.integers(num_targets))

    def _expert(self, task: str) -> tuple[Any, int]:
        """The task's expert and its suite's number of candidates per scene."""
        if task not in self._experts:
            from vlm2vla.sim.suites import suite_for_task

            suite = suite_for_task(task)
            # One noise stream per task, so a task's noise does not depend on which tasks run beside it.
            expert = suite.expert(task, self.noise_std, self.seed * 1000 + suite.task_id(task))
            self._experts[task] = (expert, suite.num_targets)
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
    return ScriptedExpertPolicy(noise_std=cfg.noise_std, seed=seed, **cfg.kwargs)


def build_random(cfg: PolicyConfig, seed: int) -> Policy:
    """policy.type=random: uniform actions in chunks of `cfg.chunk_size`."""
    return RandomPolicy(chunk_size=cfg.chunk_size, seed=seed)
