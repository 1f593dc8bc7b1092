"""Scripted Meta-World experts (metaworld.policies), for demonstration collection.

    expert = ScriptedExpert("reach-v3", noise_std=0.1, seed=0)
    action = expert(obs["observation.environment_state"])   # [4] float32 in [-1, 1]

The expert needs the full 39-d observation with the goal in obs[36:39], i.e. an env built
with ``SimConfig(privileged_state=True)``.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from vlm2vla.sim.tasks import resolve_task

# metaworld.policies warns whenever a proportional controller saturates; the env clips actions to
# [-1, 1] by design (so do we), so the warning carries no information.
warnings.filterwarnings(
    "ignore", message=r"Constant\(s\) may be too high", category=UserWarning, module="metaworld.policies"
)

# Tasks whose policy class does not follow "Sawyer" + CamelCase(task) + "V3Policy".
_POLICY_CLASS_EXCEPTIONS = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}


def expert_policy_name(task: str) -> str:
    """Name of the metaworld.policies class for ``task``, e.g. "SawyerReachV3Policy"."""
    task = resolve_task(task)
    camel = "".join(word.capitalize() for word in task.removesuffix("-v3").split("-"))
    return _POLICY_CLASS_EXCEPTIONS.get(task, f"Sawyer{camel}V3Policy")


class ScriptedExpert:
    """Meta-World's hand-written policy for one task, with optional Gaussian action noise.

    Args:
        task: task name, with or without "-v3".
        noise_std: standard deviation of zero-mean Gaussian noise added to every action
            dimension before clipping (0 = the deterministic expert).
        seed: seed of the expert's own noise generator (independent of the env's).
    """

    def __init__(self, task: str, noise_std: float = 0.0, seed: int | None = None) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
        self.task = resolve_task(task)
        self.noise_std = float(noise_std)
        policies = importlib.import_module("metaworld.policies")
        self._policy = getattr(policies, expert_policy_name(self.task))()
        self._rng = np.random.default_rng(seed)

    def __call__(self, environment_state: np.ndarray) -> np.ndarray:
        """Action [4] float32 in [-1, 1] for the 39-d Meta-World observation ``environment_state``."""
        state = np.asarray(environment_state, dtype=np.float64)
        if state.shape != (39,):
            raise ValueError(
                f"ScriptedExpert({self.task!r}) needs observation.environment_state of shape (39,), "
                f"got {state.shape}; build the env with SimConfig(privileged_state=True)."
            )
        action = np.asarray(self._policy.get_action(state), dtype=np.float32)
        if self.noise_std > 0:
            action = action + self._rng.normal(0.0, self.noise_std, size=action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
