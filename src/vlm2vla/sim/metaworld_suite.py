"""Meta-World's tasks as a task suite: MT50 names and groups, the paraphrase splits, its experts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlm2vla.sim.instructions import SPLITS, sample_instruction
from vlm2vla.sim.suites import EpisodeSpec, Expert, TaskSuite
from vlm2vla.sim.tasks import ALL_TASKS, DIFFICULTY_GROUPS, resolve_tasks


class MetaWorldSuite(TaskSuite):
    """Meta-World v3; episodes record no metadata beyond the instruction (one goal per scene)."""

    name = "metaworld"
    splits = SPLITS
    train_splits = ("canonical", "seen")
    default_tasks = ("easy",)

    def resolve_tasks(self, spec: str | Sequence[str]) -> list[str]:
        return resolve_tasks(spec)

    def owns(self, task: str) -> bool:
        return task in ALL_TASKS

    def task_id(self, task: str) -> int:
        return ALL_TASKS.index(task)

    def task_group(self, task: str) -> str:
        return next((g for g, members in DIFFICULTY_GROUPS.items() if task in members), "other")

    def episode(self, task: str, split: str, rng: np.random.Generator) -> EpisodeSpec:
        return EpisodeSpec(instruction=sample_instruction(task, split, rng))

    def expert(self, task: str, noise_std: float, seed: int | None) -> Expert:
        from vlm2vla.sim.experts import ScriptedExpert

        scripted = ScriptedExpert(task, noise_std=noise_std, seed=seed)

        def act(environment_state: np.ndarray, target: int | None = None) -> np.ndarray:
            if target is not None:
                raise ValueError(f"{task}: a Meta-World scene has one goal; target= applies to the grounded suite.")
            return scripted(environment_state)

        return act


SUITE = MetaWorldSuite()
