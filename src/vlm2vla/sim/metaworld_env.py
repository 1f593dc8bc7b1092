"""Meta-World v3 as a gymnasium env with LeRobot-named observations.

Observation (a gymnasium Dict):
    "observation.images.<camera>"    uint8   [H, W, 3]  RGB, upright
    "observation.state"              float32 [4]        hand xyz + gripper opening (raw_obs[:4])
    "observation.environment_state"  float32 [39]       full Meta-World observation (only with
                                                        cfg.privileged_state; scripted experts read it)
Action: float32 [4] in [-1, 1] (hand xyz delta, gripper effort).

Built through the registry: ``make_env("reach-v3", SimConfig())``. Facts taken from LeRobot's
envs/metaworld.py: the goal is observable (MT1 setup), corner2 images come out rotated by 180
degrees and are flipped on both axes, and corner2 is moved to (0.75, 0.075, 0.7).
Episodes never run past ``max_episode_steps`` (Meta-World raises if stepped past its cap):
the step that reaches it returns ``truncated=True`` and further steps need ``reset()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from vlm2vla.sim.base import SimConfig
from vlm2vla.sim.instructions import get_instructions
from vlm2vla.sim.sawyer import STATE_DIM, SawyerGymEnv, configure_camera
from vlm2vla.sim.tasks import resolve_task

ENV_STATE_DIM = 39


def _build_sawyer_env(task: str, cfg: SimConfig) -> Any:
    """Instantiate the Meta-World env for ``task`` with an observable goal and seedable layouts."""
    env = ALL_V3_ENVIRONMENTS[task](
        render_mode="rgb_array", camera_name=cfg.camera, width=cfg.image_size, height=cfg.image_size
    )
    configure_camera(env, cfg)
    # What metaworld.MT1 + set_task() would do, minus sampling 50 fixed goals: expose the goal
    # in obs[36:39] (MT benchmarks are fully observable; the experts need it) ...
    env._partially_observable = False
    vars(env).pop("sawyer_observation_space", None)  # cached property, recomputed on access
    env._set_task_called = True
    # ... and draw object/goal positions at every reset from env.np_random (seeded by reset).
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


class MetaWorldEnv(SawyerGymEnv):
    """One Meta-World v3 task (see the module docstring for spaces).

    Attributes:
        task: canonical task name, e.g. "reach-v3".
        instruction: the canonical language instruction of the task.
        max_episode_steps: steps after which an episode is truncated.
    """

    def __init__(self, task: str, cfg: SimConfig) -> None:
        super().__init__()
        self.task = resolve_task(task)
        self.instruction = get_instructions(self.task).canonical
        self._env = _build_sawyer_env(self.task, cfg)
        self._setup(cfg, ENV_STATE_DIM, int(self._env.max_path_length))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode. The same ``seed`` gives the same layout (object and goal positions);
        ``seed=None`` continues the current random stream."""
        super().reset(seed=seed)
        if seed is not None or self._elapsed is None:
            # Meta-World ignores reset(seed=...); its layouts come from env.np_random, set by seed().
            self._env.seed(int(self.np_random.integers(2**31 - 1)) if seed is None else seed)
        raw_obs, _ = self._env.reset()
        self._elapsed = 0
        return self._observation(raw_obs), {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one action [4]; ``terminated`` on success (if cfg.terminate_on_success),
        ``truncated`` after ``max_episode_steps`` steps, after which reset() is required."""
        raw_obs, reward, _, _, info = self._env.step(self._checked_action(action))
        self._elapsed += 1
        success = bool(info.get("success", 0.0))
        terminated = success and self.cfg.terminate_on_success
        truncated = self._elapsed >= self.max_episode_steps
        return self._observation(raw_obs), float(reward), terminated, truncated, {**info, "is_success": success}

    def _observation(self, raw_obs: np.ndarray) -> dict[str, np.ndarray]:
        self._image = self._render_image()
        obs = {
            self.image_key: self._image,
            "observation.state": raw_obs[:STATE_DIM].astype(np.float32),
        }
        if self.cfg.privileged_state:
            obs["observation.environment_state"] = raw_obs.astype(np.float32)
        return obs


def make_metaworld_env(task: str, cfg: SimConfig) -> MetaWorldEnv:
    """Registry builder for ``SimConfig(name="metaworld")``."""
    return MetaWorldEnv(task, cfg)
