"""What the Sawyer envs here share (Meta-World's tasks and the grounded suite): the gymnasium
spaces with LeRobot's keys, camera placement, fast rendering, upright images, the step guards.

A subclass sets ``self._env`` (a metaworld SawyerXYZEnv), calls ``_setup(cfg, env_state_dim,
max_steps)``, and implements ``reset``, ``step`` and ``_observation``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from vlm2vla.sim.base import SimConfig

STATE_DIM = 4
ACTION_DIM = 4
# LeRobot's corner2 camera position (as in https://arxiv.org/pdf/2206.14244).
CORNER2_POS = (0.75, 0.075, 0.7)
# Cameras whose rendered image comes out rotated by 180 degrees (floor above the table).
# LeRobot flips corner2 on both axes; corner, corner3 and corner4 show the same fault, checked
# by eye. topview, behindGripper, gripperPOV and the grounded suite's front are left as rendered.
FLIPPED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})


def camera_names(model: mujoco.MjModel) -> list[str]:
    """Every camera of a model."""
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def disable_costly_rendering(model: mujoco.MjModel) -> None:
    """Turn off shadows, reflections and multisampling. Must run before the first render:
    shadowsize and offsamples are read only when the GL context is created."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


def configure_camera(env, cfg: SimConfig) -> None:
    """Check ``cfg.camera`` exists in ``env`` (a SawyerXYZEnv), move corner2 to LeRobot's place and
    apply ``cfg.fast_render``; closes ``env`` and raises ValueError for an unknown camera."""
    camera_id = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, cfg.camera)
    if camera_id < 0:
        env.close()
        raise ValueError(f"SimConfig.camera={cfg.camera!r} is not a camera of this scene: {camera_names(env.model)}")
    if cfg.camera == "corner2":
        env.model.cam_pos[camera_id] = CORNER2_POS
    if cfg.fast_render:
        disable_costly_rendering(env.model)


class SawyerGymEnv(gymnasium.Env):
    """Base of the Sawyer envs (see the module docstring).

    Attributes:
        task: canonical task name.
        max_episode_steps: steps after which an episode is truncated.
        image_key: "observation.images.<camera>".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}
    task: str

    def _setup(self, cfg: SimConfig, env_state_dim: int, max_steps: int) -> None:
        self.cfg = cfg
        self.render_mode = "rgb_array"
        self.max_episode_steps = cfg.max_episode_steps or max_steps
        # Meta-World raises once it passes max_path_length; align it with our own limit.
        self._env.max_path_length = self.max_episode_steps
        self.image_key = f"observation.images.{cfg.camera}"
        size = cfg.image_size
        features = {
            self.image_key: spaces.Box(0, 255, (size, size, 3), np.uint8),
            "observation.state": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        }
        if cfg.privileged_state:
            features["observation.environment_state"] = spaces.Box(-np.inf, np.inf, (env_state_dim,), np.float32)
        self.observation_space = spaces.Dict(features)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._elapsed: int | None = None  # steps since reset; None before the first reset
        self._image: np.ndarray | None = None

    def _checked_action(self, action: np.ndarray) -> np.ndarray:
        """The action clipped to [-1, 1]; raises if the episode is not running or the shape is wrong."""
        if self._elapsed is None or self._elapsed >= self.max_episode_steps:
            when = "before reset()" if self._elapsed is None else "after truncation"
            raise RuntimeError(f"{self.task}: step() called {when}; call reset() to start an episode.")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"{self.task}: expected an action of shape ({ACTION_DIM},), got {action.shape}.")
        return np.clip(action, -1.0, 1.0)

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
