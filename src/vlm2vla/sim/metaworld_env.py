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

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from vlm2vla.sim.base import SimConfig
from vlm2vla.sim.instructions import get_instructions
from vlm2vla.sim.tasks import resolve_task

STATE_DIM = 4
ENV_STATE_DIM = 39
ACTION_DIM = 4
# LeRobot's corner2 camera position (as in https://arxiv.org/pdf/2206.14244).
CORNER2_POS = (0.75, 0.075, 0.7)
# Cameras whose rendered image comes out rotated by 180 degrees (floor above the table).
# LeRobot flips corner2 on both axes; corner, corner3 and corner4 show the same fault, checked
# by eye. topview, behindGripper and gripperPOV are left as rendered.
FLIPPED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})


def _camera_names(model: mujoco.MjModel) -> list[str]:
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def _disable_costly_rendering(model: mujoco.MjModel) -> None:
    """Turn off shadows, reflections and multisampling. Must run before the first render:
    shadowsize and offsamples are read only when the GL context is created."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


def _build_sawyer_env(task: str, cfg: SimConfig) -> Any:
    """Instantiate the Meta-World env for ``task`` with an observable goal and seedable layouts."""
    env = ALL_V3_ENVIRONMENTS[task](
        render_mode="rgb_array", camera_name=cfg.camera, width=cfg.image_size, height=cfg.image_size
    )
    camera_id = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, cfg.camera)
    if camera_id < 0:
        env.close()
        raise ValueError(f"SimConfig.camera={cfg.camera!r} is not a Meta-World camera: {_camera_names(env.model)}")
    # What metaworld.MT1 + set_task() would do, minus sampling 50 fixed goals: expose the goal
    # in obs[36:39] (MT benchmarks are fully observable; the experts need it) ...
    env._partially_observable = False
    vars(env).pop("sawyer_observation_space", None)  # cached property, recomputed on access
    env._set_task_called = True
    # ... and draw object/goal positions at every reset from env.np_random (seeded by reset).
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    if cfg.camera == "corner2":
        env.model.cam_pos[camera_id] = CORNER2_POS
    if cfg.fast_render:
        _disable_costly_rendering(env.model)
    return env


class MetaWorldEnv(gymnasium.Env):
    """One Meta-World v3 task (see the module docstring for spaces).

    Attributes:
        task: canonical task name, e.g. "reach-v3".
        instruction: the canonical language instruction of the task.
        max_episode_steps: steps after which an episode is truncated.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, cfg: SimConfig) -> None:
        super().__init__()
        self.task = resolve_task(task)
        self.cfg = cfg
        self.instruction = get_instructions(self.task).canonical
        self.render_mode = "rgb_array"
        self._env = _build_sawyer_env(self.task, cfg)
        self.max_episode_steps = cfg.max_episode_steps or int(self._env.max_path_length)
        # Meta-World raises once it passes max_path_length; align it with our own limit.
        self._env.max_path_length = self.max_episode_steps
        self.image_key = f"observation.images.{cfg.camera}"
        size = cfg.image_size
        features = {
            self.image_key: spaces.Box(0, 255, (size, size, 3), np.uint8),
            "observation.state": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        }
        if cfg.privileged_state:
            features["observation.environment_state"] = spaces.Box(-np.inf, np.inf, (ENV_STATE_DIM,), np.float32)
        self.observation_space = spaces.Dict(features)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._elapsed: int | None = None  # steps since reset; None before the first reset
        self._image: np.ndarray | None = None

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
        if self._elapsed is None or self._elapsed >= self.max_episode_steps:
            raise RuntimeError(
                f"{self.task}: step() called {'before reset()' if self._elapsed is None else 'after truncation'}; "
                "call reset() to start an episode."
            )
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"{self.task}: expected an action of shape ({ACTION_DIM},), got {action.shape}.")
        raw_obs, reward, _, _, info = self._env.step(np.clip(action, -1.0, 1.0))
        self._elapsed += 1
        success = bool(info.get("success", 0.0))
        terminated = success and self.cfg.terminate_on_success
        truncated = self._elapsed >= self.max_episode_steps
        return self._observation(raw_obs), float(reward), terminated, truncated, {**info, "is_success": success}

    def render(self) -> np.ndarray:
        """The current camera image [H, W, 3] uint8 (the one in the last observation)."""
        if self._image is None:
            self._image = self._render_image()
        return self._image

    def close(self) -> None:
        self._env.close()

    def camera_pose(self) -> dict[str, Any]:
        """The observation camera as rendered now, for projecting 3-D points to pixels.

        Returns:
            position (x, y, z) and rotation (3x3 rows, camera-to-world) of the MuJoCo camera,
            its vertical field of view in degrees, the square image size, and whether the image
            is flipped on both axes after rendering (see FLIPPED_CAMERAS).
        """
        cam = mujoco.mj_name2id(self._env.model, mujoco.mjtObj.mjOBJ_CAMERA, self.cfg.camera)
        rotation = self._env.data.cam_xmat[cam].reshape(3, 3)
        return {
            "position": tuple(float(v) for v in self._env.data.cam_xpos[cam]),
            "rotation": tuple(tuple(float(v) for v in row) for row in rotation),
            "fovy": float(self._env.model.cam_fovy[cam]),
            "size": int(self.cfg.image_size),
            "flipped": self.cfg.camera in FLIPPED_CAMERAS,
        }

    def _render_image(self) -> np.ndarray:
        # gymnasium makes an env's GL context current only when it is created, so with several
        # envs in one process (a task cache, tests) the others would draw into the wrong, blank
        # context: make ours current before every frame (cheap next to rendering).
        self._env.mujoco_renderer._get_viewer("rgb_array").make_context_current()
        image = self._env.render()
        if self.cfg.camera in FLIPPED_CAMERAS:
            image = np.flip(image, (0, 1))
        return np.ascontiguousarray(image, dtype=np.uint8)

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
