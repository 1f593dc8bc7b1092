"""One small env interface: ``SimConfig`` + ``make_env(task, cfg)``, with a registry of simulators.

A simulator registers a builder under a short name, as a "module:function" string that is
imported only when an env of that kind is built (LeRobot's envs/factory.py idea, without
special cases). Adding a simulator = one module with ``make_<name>_env(task, cfg)`` and one
``register_simulator`` line.

    cfg = SimConfig(image_size=128)
    env = make_env("reach-v3", cfg)
    vec = gymnasium.vector.AsyncVectorEnv([env_fn("reach-v3", cfg)] * 4, context="spawn")

Use context="spawn" (or "forkserver") for vector envs: a "fork"ed worker deadlocks when the
parent process had already rendered (its OSMesa/GL state is copied half-initialised).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium

from vlm2vla.registry import Registry

# Simulator name -> "module:function" building an env from (task, cfg); imported lazily.
SIMULATORS = Registry("simulator")


def register_simulator(name: str, builder: str, suite: str) -> None:
    """Register ``builder`` ("package.module:function") as the env factory for ``name``, and
    ``suite`` ("package.module:attribute", a ``vlm2vla.sim.suites.TaskSuite``) as its tasks.

    Raises:
        ValueError: ``name`` is already registered to another builder, or ``builder`` has no ":".
    """
    SIMULATORS.register(name, builder, suite=suite)


def available_simulators() -> list[str]:
    """Names accepted by ``SimConfig.name``."""
    return sorted(SIMULATORS.names())


register_simulator("metaworld", "vlm2vla.sim.metaworld_env:make_metaworld_env", "vlm2vla.sim.metaworld_suite:SUITE")
register_simulator("grounded", "vlm2vla.sim.grounded.env:make_grounded_env", "vlm2vla.sim.grounded.suite:SUITE")


@dataclass(frozen=True)
class SimConfig:
    """How to build a simulator env; the same config serves collection and evaluation."""

    # Registered simulator name (see available_simulators()).
    name: str = "metaworld"
    # Side of the square RGB observation, in pixels; small by default for CPU rendering.
    image_size: int = 128
    # Camera to render; observations appear under "observation.images.<camera>".
    camera: str = "corner2"
    # Turn off shadows, reflections and multisampling (much faster on CPU); False restores
    # the simulator's default look.
    fast_render: bool = True
    # Episode step limit; None keeps the simulator's own cap (500 for Meta-World, as in
    # LeRobot's evaluation).
    max_episode_steps: int | None = None
    # End the episode (terminated=True) on the first successful step.
    terminate_on_success: bool = True
    # Add "observation.environment_state" (full simulator state, used by scripted experts).
    privileged_state: bool = True

    def __post_init__(self) -> None:
        if self.name not in SIMULATORS:
            raise ValueError(f"sim.name: {SIMULATORS.unknown_message(self.name)}")
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"SimConfig.image_size must be a positive int, got {self.image_size!r}.")
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"SimConfig.camera must be a non-empty camera name, got {self.camera!r}.")
        steps = self.max_episode_steps
        if steps is not None and (not isinstance(steps, int) or steps <= 0):
            raise ValueError(f"SimConfig.max_episode_steps must be None or a positive int, got {steps!r}.")


def make_env(task: str, cfg: SimConfig) -> gymnasium.Env:
    """Build one env of simulator ``cfg.name`` for ``task``.

    Args:
        task: a task name of that simulator (Meta-World: "reach-v3" or "reach").
        cfg: rendering, episode-length and observation options.

    Returns:
        A gymnasium.Env whose observations are dicts with LeRobot feature names.
    """
    return SIMULATORS.load(cfg.name)(task, cfg)


def env_fn(task: str, cfg: SimConfig) -> Callable[[], gymnasium.Env]:
    """A picklable zero-argument env factory, for gymnasium vector envs in other processes."""
    return functools.partial(make_env, task, cfg)
