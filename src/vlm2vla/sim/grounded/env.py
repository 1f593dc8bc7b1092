"""The language-grounded suite as a gymnasium env: one scene, three candidate targets, one named.

Observation (a gymnasium Dict), the same keys and shapes as ``vlm2vla.sim.metaworld_env``:
    "observation.images.<camera>"    uint8   [H, W, 3]
    "observation.state"              float32 [4]   hand xyz + gripper opening
    "observation.environment_state"  float32 [19]  privileged (cfg.privileged_state): hand xyz,
                                                   gripper, the 3 candidates' xyz, goal xyz,
                                                   one-hot of the named candidate
Action: float32 [4] in [-1, 1], Meta-World's (hand xyz delta, gripper effort).

Which candidate is named and which layout region is used come with each episode:
``reset(seed=s, options={"target": "blue", "layout": "train"})``; the same seed and options give
the same layout. The episode ends (``terminated``) at the first step any candidate reaches its
goal: ``info["is_success"]`` if it was the named one, ``info["wrong_target"]`` if another.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium.spaces import Box
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from vlm2vla.sim.base import SimConfig
from vlm2vla.sim.grounded.scene import ENV_STATE_DIM, NUM_TARGETS, object_name, pack_state, write_scene
from vlm2vla.sim.grounded.tasks import Family, draw_layout, resolve_family, target_index
from vlm2vla.sim.sawyer import STATE_DIM, SawyerGymEnv, configure_camera

HAND_INIT = np.array([0.0, 0.5, 0.2])


class _Sawyer(SawyerXYZEnv):
    """Meta-World's Sawyer (mocap control, gripper, frame skip, renderer) in a generated scene.

    Success is judged by ``GroundedEnv``; this class only places the objects and reports state.
    """

    def __init__(self, xml: str, camera_name: str, size: int) -> None:
        self._xml = xml
        self.named = 0  # read by SawyerXYZEnv.__init__ through _get_pos_objects
        super().__init__(hand_low=(-0.5, 0.40, 0.05), hand_high=(0.5, 1.0, 0.5), render_mode="rgb_array",
                         camera_name=camera_name, width=size, height=size)
        self.hand_init_pos = HAND_INIT.copy()
        self.goal_space = Box(np.array([-0.3, 0.4, 0.0]), np.array([0.3, 1.0, 0.3]), dtype=np.float64)
        self._random_reset_space = self.goal_space
        self._target_pos = np.array([0.0, 0.8, 0.001])
        # What metaworld's MT1 + set_task() would set; layouts come from GroundedEnv instead.
        self._partially_observable = False
        self._set_task_called = True
        self.positions = np.zeros((NUM_TARGETS, 3))

    @property
    def model_name(self) -> str:
        return self._xml

    def _get_pos_objects(self) -> np.ndarray:
        return self.data.body(object_name(self.named)).xpos.copy()

    def _get_quat_objects(self) -> np.ndarray:
        return self.data.body(object_name(self.named)).xquat.copy()

    def evaluate_state(self, obs: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        return 0.0, {"success": 0.0}

    def reset_model(self) -> np.ndarray:
        self._reset_hand()
        # Objects are placed after the hand has settled, as Meta-World's envs do, so the hand
        # moving to its start never knocks one.
        for i, pos in enumerate(self.positions):
            body = self.model.body(object_name(i))
            if body.jntnum[0] == 0:  # a fixed ball: move the body itself
                self.model.body_pos[body.id] = pos
            else:
                adr = self.model.jnt_qposadr[body.jntadr[0]]
                qpos, qvel = self.data.qpos.copy(), self.data.qvel.copy()
                qpos[adr:adr + 7] = [*pos, 1.0, 0.0, 0.0, 0.0]
                vadr = self.model.jnt_dofadr[body.jntadr[0]]
                qvel[vadr:vadr + 6] = 0.0
                self.set_state(qpos, qvel)
        self.model.site("goal").pos = self._target_pos
        mujoco.mj_forward(self.model, self.data)
        return self._get_obs()

    def object_positions(self) -> np.ndarray:
        return np.stack([self.data.body(object_name(i)).xpos for i in range(NUM_TARGETS)])


class GroundedEnv(SawyerGymEnv):
    """One family of the grounded suite (see the module docstring for spaces and options).

    Attributes:
        task: "grounded-<family>".
        family: the family's definition (scene, attributes, goal test).
        instruction: the canonical instruction for the episode's named target.
        max_episode_steps: steps after which an episode is truncated.
    """

    def __init__(self, task: str, cfg: SimConfig) -> None:
        super().__init__()
        self.family: Family = resolve_family(task)
        self.task = self.family.task
        xml = write_scene(self.family.name, self.family.scene)
        self._env = _Sawyer(str(xml), cfg.camera, cfg.image_size)
        configure_camera(self._env, cfg)
        self._setup(cfg, ENV_STATE_DIM, self.family.max_steps)
        self.target = self.family.attributes[0]
        self.instruction = self.family.canonical(self.target)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode: draw a layout (from ``seed``) and name ``options["target"]``.

        Options: "target" (an attribute of the family; default: its first) and "layout"
        ("train", the default, or "shifted": the position-perturbation region).
        """
        super().reset(seed=seed)
        options = options or {}
        self.target = options.get("target") or self.family.attributes[0]
        layout = options.get("layout") or "train"
        positions, goal = draw_layout(self.family, layout, self.np_random)
        self._env.positions = positions
        self._env._target_pos = goal
        self._env.named = target_index(self.family, self.target, positions)
        self.instruction = self.family.canonical(self.target)
        self._env.curr_path_length = 0
        raw, _ = self._env.reset()
        self._elapsed = 0
        return self._observation(raw), {"is_success": False, "wrong_target": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one action [4]; ends the episode when any candidate reaches its goal."""
        raw, _, _, _, _ = self._env.step(self._checked_action(action))
        self._elapsed += 1
        reached = self.family.reached(self._env.tcp_center, self._env.object_positions(), self._env._target_pos)
        named = self._env.named
        success = bool(reached[named])
        wrong = bool(not success and reached.any())
        terminated = (success or wrong) and self.cfg.terminate_on_success
        truncated = self._elapsed >= self.max_episode_steps
        distance = float(np.linalg.norm(self._env.tcp_center - self._env.object_positions()[named]))
        reward = float(success) - 0.1 * distance
        return (self._observation(raw), reward, terminated, truncated,
                {"is_success": success, "wrong_target": wrong, "success": float(success)})

    def object_positions(self) -> np.ndarray:
        """The candidates' positions [NUM_TARGETS, 3], in scene order (COLOURS order)."""
        return self._env.object_positions().copy()

    def named_index(self) -> int:
        """Scene index of the named candidate."""
        return int(self._env.named)

    def _observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        self._image = self._render_image()
        obs = {self.image_key: self._image, "observation.state": raw[:STATE_DIM].astype(np.float32)}
        if self.cfg.privileged_state:
            obs["observation.environment_state"] = pack_state(raw, self._env.object_positions(),
                                                              self._env._target_pos, self._env.named)
        return obs


def make_grounded_env(task: str, cfg: SimConfig) -> GroundedEnv:
    """Registry builder for ``SimConfig(name="grounded")``."""
    return GroundedEnv(task, cfg)
