"""Scripted experts of the grounded suite: privileged state in, Meta-World action out.

    expert = GroundedExpert("grounded-push", noise_std=0.1, seed=0)
    action = expert(obs["observation.environment_state"])            # the named candidate
    action = expert(obs["observation.environment_state"], target=2)  # candidate 2 instead

Proportional control toward a waypoint, as metaworld.policies does (gain 10, actions clipped to
[-1, 1]); the waypoint follows the family's phases: over the object, down, grip, carry.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.sim.grounded.scene import ENV_STATE_DIM, unpack_state
from vlm2vla.sim.grounded.tasks import resolve_family

GAIN = 10.0
HOVER = 0.12  # height above an object at which the hand travels to it
LIFT_TO = 0.2
# Gripper opening (1 = open) below which the fingers hold the object: closed on a 6-7 cm object it
# reads 0.71-0.75 (Meta-World's 4 cm puck needs 0.73).
GRIPPED = 0.8


class GroundedExpert:
    """The scripted expert of one family.

    Args:
        task: a family's task name ("grounded-reach", ...).
        noise_std: std of zero-mean Gaussian noise added to every action dimension before clipping.
        seed: seed of the noise generator.
    """

    def __init__(self, task: str, noise_std: float = 0.0, seed: int | None = None) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
        self.family = resolve_family(task)
        self.task = self.family.task
        self.noise_std = float(noise_std)
        self._rng = np.random.default_rng(seed)

    def __call__(self, environment_state: np.ndarray, target: int | None = None) -> np.ndarray:
        """Action [4] for the privileged state [19]; ``target`` overrides the named candidate."""
        state = np.asarray(environment_state, dtype=np.float64)
        if state.shape != (ENV_STATE_DIM,):
            raise ValueError(f"GroundedExpert({self.task!r}) needs observation.environment_state of shape "
                             f"({ENV_STATE_DIM},), got {state.shape}; build the env with "
                             "SimConfig(privileged_state=True).")
        scene = unpack_state(state)
        hand, gripper, goal = scene.hand, scene.gripper, scene.goal
        obj = scene.objects[scene.named if target is None else int(target)]
        kind = self.family.scene.kind
        if kind == "ball":
            waypoint, grab = obj, -1.0
        else:
            waypoint, grab = self._grasp_and_carry(hand, gripper, obj, goal, carry_to_goal=kind == "puck")
        action = np.append(np.clip(GAIN * (waypoint - hand), -1.0, 1.0), grab).astype(np.float32)
        if self.noise_std > 0:
            action = action + self._rng.normal(0.0, self.noise_std, size=4).astype(np.float32)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _grasp_and_carry(hand: np.ndarray, gripper: float, obj: np.ndarray, goal: np.ndarray,
                         carry_to_goal: bool) -> tuple[np.ndarray, float]:
        xy_err = np.linalg.norm(hand[:2] - obj[:2])
        above = hand[2] - obj[2]
        if xy_err > 0.02:
            if xy_err > 0.04 and above < HOVER - 0.03:
                # Low and off target (the start, or the object slipped): rise before moving over.
                return np.array([hand[0], hand[1], obj[2] + HOVER]), -1.0
            return np.array([obj[0], obj[1], obj[2] + HOVER]), -1.0
        if hand[2] - obj[2] > 0.04:
            return np.array([obj[0], obj[1], obj[2] + 0.02]), -1.0 if hand[2] - obj[2] > 0.06 else 1.0
        if gripper > GRIPPED:  # still closing
            return hand.copy(), 1.0
        if carry_to_goal:
            return np.array([goal[0], goal[1], obj[2] + 0.02]), 1.0
        return np.array([obj[0], obj[1], LIFT_TO]), 1.0
