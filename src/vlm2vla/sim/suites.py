"""Task suites: the tasks, groups, instruction splits and scripted experts of each simulator.

Collection and evaluation never name a simulator's tasks themselves; they ask the suite of
``sim.name`` (registered next to its env builder, see ``vlm2vla.sim.base``) what the tasks are,
which splits exist, and what one episode of a split asks for:

    suite = get_suite("grounded")
    suite.resolve_tasks("grounded")                 # ["grounded-reach", "grounded-push", ...]
    spec = suite.episode("grounded-push", "seen", rng)
    spec.instruction, spec.options, spec.metadata   # text, env.reset options, what the dataset records

Experts are looked up from the task name alone (``suite_for_task``), since a policy sees task names
but not the simulator config.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlm2vla.registry import load_target


@dataclass(frozen=True)
class EpisodeSpec:
    """What one episode of a split asks for.

    Attributes:
        instruction: the language instruction given to the policy.
        options: passed to ``env.reset(options=...)`` (e.g. which candidate is named).
        metadata: recorded with the episode: dataset episode columns, eval episode rows.
    """

    instruction: str
    options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


Expert = Callable[..., np.ndarray]


class TaskSuite(abc.ABC):
    """The task side of one simulator."""

    #: registered simulator name
    name: str
    #: every instruction split an evaluation may ask for
    splits: tuple[str, ...]
    #: splits training data may use without an explicit allow_held_out
    train_splits: tuple[str, ...]
    #: what tasks=[] means
    default_tasks: tuple[str, ...]
    #: the camera this suite's scenes are meant to be seen from
    default_camera: str = "corner2"
    #: candidate targets per scene (an expert can be aimed at any of them with ``target=``)
    num_targets: int = 1

    @abc.abstractmethod
    def resolve_tasks(self, spec: str | Sequence[str]) -> list[str]:
        """Task names of a spec (tasks and groups); an unknown name raises with the valid ones."""

    @abc.abstractmethod
    def owns(self, task: str) -> bool:
        """Whether ``task`` (a resolved name) is one of this suite's tasks."""

    @abc.abstractmethod
    def task_id(self, task: str) -> int:
        """A stable small integer per task (seeds are derived from it)."""

    @abc.abstractmethod
    def task_group(self, task: str) -> str:
        """The group a task is reported under."""

    @abc.abstractmethod
    def episode(self, task: str, split: str, rng: np.random.Generator) -> EpisodeSpec | None:
        """One episode of ``split``; None when the task has no episodes in that split."""

    @abc.abstractmethod
    def expert(self, task: str, noise_std: float, seed: int | None) -> Expert:
        """The scripted expert: ``expert(environment_state, target=None) -> action``."""

    def check_splits(self, splits: Sequence[str], field_name: str) -> None:
        """Raise a ValueError naming ``field_name`` if a split is not one of ``self.splits``."""
        bad = [s for s in splits if s not in self.splits]
        if bad:
            raise ValueError(f"{field_name}: unknown {self.name} split(s) {bad}; valid: {', '.join(self.splits)}.")

    def resolve_or_default(self, spec: Sequence[str]) -> list[str]:
        """``resolve_tasks(spec)``, or the default tasks when ``spec`` is empty."""
        return self.resolve_tasks(list(spec) if spec else list(self.default_tasks))


def get_suite(simulator: str) -> TaskSuite:
    """The task suite of a registered simulator."""
    from vlm2vla.sim.base import SIMULATORS

    return load_target(SIMULATORS.entry(simulator).info["suite"])


def suite_for_task(task: str) -> TaskSuite:
    """The suite of whichever registered simulator has ``task`` (a resolved name).

    Raises:
        ValueError: no registered suite has this task.
    """
    from vlm2vla.sim.base import available_simulators

    for name in available_simulators():
        suite = get_suite(name)
        if suite.owns(task):
            return suite
    raise ValueError(f"No simulator has a task {task!r}; `vlm2vla tasks` lists them.")


def resolve_any(spec: Sequence[str]) -> tuple[TaskSuite, list[str]]:
    """The one suite whose tasks ``spec`` names, and those tasks (for callers without a sim.name).

    Raises:
        ValueError: no suite has every name (the message lists each suite's complaint), or
            ``spec`` mixes suites.
    """
    from vlm2vla.sim.base import available_simulators

    errors = []
    for name in available_simulators():
        suite = get_suite(name)
        try:
            return suite, suite.resolve_tasks(list(spec))
        except ValueError as err:
            errors.append(f"{name}: {err}")
    raise ValueError(f"Tasks {list(spec)} are not all of one simulator's suite.\n" + "\n".join(errors))
