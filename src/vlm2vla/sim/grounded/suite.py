"""The grounded suite as a task suite (see vlm2vla.sim.grounded.tasks for families and splits)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlm2vla.sim.grounded import tasks
from vlm2vla.sim.grounded.scene import CAMERA, NUM_TARGETS
from vlm2vla.sim.suites import EpisodeSpec, Expert, TaskSuite


class GroundedSuite(TaskSuite):
    """Episodes record family, named target, split and layout (dataset columns, eval rows)."""

    name = "grounded"
    splits = tasks.SPLITS
    train_splits = tasks.TRAIN_SPLITS
    default_tasks = ("grounded",)
    default_camera = CAMERA
    num_targets = NUM_TARGETS

    def resolve_tasks(self, spec: str | Sequence[str]) -> list[str]:
        return tasks.resolve_tasks(spec)

    def owns(self, task: str) -> bool:
        return task.startswith(tasks.PREFIX) and task.removeprefix(tasks.PREFIX) in tasks.FAMILIES

    def task_id(self, task: str) -> int:
        return list(tasks.FAMILIES).index(tasks.resolve_family(task).name)

    def task_group(self, task: str) -> str:
        return "colour" if tasks.resolve_family(task).scene.coloured else "spatial"

    def episode(self, task: str, split: str, rng: np.random.Generator) -> EpisodeSpec | None:
        drawn = tasks.sample_episode(task, split, rng)
        if drawn is None:
            return None
        family = tasks.resolve_family(task).name
        return EpisodeSpec(instruction=drawn.instruction,
                           options={"target": drawn.target, "layout": drawn.layout},
                           metadata={"family": family, "target": drawn.target, "split": split,
                                     "layout": drawn.layout})

    def expert(self, task: str, noise_std: float, seed: int | None) -> Expert:
        from vlm2vla.sim.grounded.expert import GroundedExpert

        return GroundedExpert(task, noise_std=noise_std, seed=seed)


SUITE = GroundedSuite()
