"""The policy interface the rollout engine drives, and the registry that builds policies by name.

A policy sees a batch of observations from several environments at once and returns an action chunk
per environment; the engine executes the first `n_action_steps` actions of a chunk and then asks again
(receding-horizon control, as pi0 and ACT do). Actions are in the simulator's space, [-1, 1].

Observation batches use LeRobot's keys:

    "observation.images.<camera>"   uint8   [B, H, W, 3]
    "observation.state"             float32 [B, state_dim]
    "observation.environment_state" float32 [B, D]  (privileged simulator state, when enabled)
    "task"                          list[str]  the instruction given to each environment
    "task_name"                     list[str]  the simulator task id, e.g. "reach-v3"

New policy types register a builder with `register_policy`; `make_policy` looks it up by the
config's `type`, so the engine never special-cases a policy.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Policy(abc.ABC):
    """Maps a batch of observations to a batch of action chunks."""

    #: number of actions each call returns per environment
    chunk_size: int = 1

    @abc.abstractmethod
    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        """Return actions of shape [B, chunk_size, action_dim] for a batch of B observations."""

    def reset(self) -> None:  # noqa: B027 - stateless policies need no reset
        """Forget any state carried between calls (called before an evaluation starts)."""


@dataclass(frozen=True)
class PolicyConfig:
    """Which policy to evaluate."""

    # registered policy type: "expert", "random", or one a policy package registers
    type: str = "expert"
    # checkpoint folder for learned policies (unused by the reference policies)
    path: str | None = None
    # std of Gaussian noise added to expert actions (demonstration diversity); 0 = none
    noise_std: float = 0.0
    # actions per call for policies without a natural chunk (random)
    chunk_size: int = 1
    # extra keyword arguments passed to the policy's builder
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.noise_std < 0:
            raise ValueError(f"policy.noise_std must be >= 0, got {self.noise_std}")
        if self.chunk_size < 1:
            raise ValueError(f"policy.chunk_size must be >= 1, got {self.chunk_size}")


PolicyBuilder = Callable[[PolicyConfig, int], Policy]
_REGISTRY: dict[str, PolicyBuilder] = {}


def register_policy(name: str) -> Callable[[PolicyBuilder], PolicyBuilder]:
    """Decorator: register `builder(cfg, seed) -> Policy` under `name`."""

    def wrap(builder: PolicyBuilder) -> PolicyBuilder:
        if name in _REGISTRY:
            raise ValueError(f"Policy type '{name}' is registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def make_policy(cfg: PolicyConfig, seed: int = 0) -> Policy:
    """Build the policy named by `cfg.type`.

    Raises:
        ValueError: unknown type; the message lists the closest registered names.
    """
    import vlm2vla.evaluation.reference_policies  # noqa: F401 - registers "expert" and "random"

    if cfg.type not in _REGISTRY:  # learned policies: imported only when asked for (torch, transformers)
        import vlm2vla.policies.eval_policy  # noqa: F401 - registers "vla"
    if cfg.type not in _REGISTRY:
        close = difflib.get_close_matches(cfg.type, list(_REGISTRY), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown policy type '{cfg.type}'.{hint} Registered: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[cfg.type](cfg, seed)
