"""Robot frames for the embodied sources: scripted-expert rollouts in the simulator, or a LeRobot dataset.

    bank = sim_frame_bank(tasks, episodes_per_task=4, action_noise=0.3, seed=0, image_size=128)
    bank.images[i]        # [H, W, 3] uint8, the corner2 camera
    bank.env_state[i]     # [39] Meta-World obs: hand xyz (0:3), gripper (3), object xyz (4:7), goal xyz (36:39)
    bank.action[i]        # [4] the expert's clean (noise-free) action at this frame
    bank.camera.project(points)   # world xyz [N, 3] -> pixel (u, v) [N, 2] in the image as stored

Meta-World state layout and the camera facts (corner2 at LeRobot's position, image flipped on both
axes) come from vlm2vla.sim.metaworld_env.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

# Name of the task's main object (env_state[4:7]) and of its visible goal marker (env_state[36:39]).
OBJECT_NAMES = {"push-v3": "puck", "pick-place-v3": "puck", "reach-v3": "puck", "drawer-close-v3": "drawer handle",
                "button-press-topdown-v3": "button", "door-open-v3": "door handle"}
TARGET_NAMES = {"push-v3": "green dot", "pick-place-v3": "blue dot", "reach-v3": "red dot"}
MAX_EPISODE_STEPS = 120


@dataclass(frozen=True)
class CameraModel:
    """A fixed pinhole camera: world points -> pixels of the rendered (possibly flipped) image.

    Attributes:
        position: camera centre in world coordinates [3].
        rotation: camera-to-world rotation [3, 3] (MuJoCo cam_xmat; the camera looks along -z, y up).
        fovy: vertical field of view in degrees.
        size: image side in pixels (square images).
        flipped: the stored image is the render rotated by 180 degrees (corner cameras in Meta-World).
    """

    position: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    fovy: float
    size: int
    flipped: bool

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (u right, v down; pixel centres at k + 0.5) of world points [N, 3] -> [N, 2]."""
        rel = (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) @ np.asarray(self.rotation)
        focal = 0.5 * self.size / np.tan(np.deg2rad(self.fovy) / 2)
        depth = -rel[:, 2]
        u = self.size / 2 + focal * rel[:, 0] / depth
        v = self.size / 2 - focal * rel[:, 1] / depth
        if self.flipped:
            u, v = self.size - u, self.size - v
        return np.stack([u, v], axis=1)

    def depth(self, points: np.ndarray) -> np.ndarray:
        """Distance along the viewing axis of world points [N, 3] -> [N] (larger = farther)."""
        rel = (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) @ np.asarray(self.rotation)
        return -rel[:, 2]


@dataclass
class FrameBank:
    """Frames with their robot state; env_state and camera are None for a dataset without them."""

    images: np.ndarray  # [N, H, W, 3] uint8
    state: np.ndarray  # [N, 4] hand xyz + gripper opening
    action: np.ndarray  # [N, 4] the action taken at this frame (clean expert action for sim frames)
    tasks: list[str]  # [N] task name (sim) or instruction (dataset)
    env_state: np.ndarray | None = None  # [N, 39]
    camera: CameraModel | None = None

    def __len__(self) -> int:
        return len(self.images)


def camera_model(env) -> CameraModel:
    """The CameraModel of a vlm2vla.sim Sawyer env (its camera as rendered after a reset)."""
    return CameraModel(**env.unwrapped.camera_pose())


def _rollout(env, task: str, seed: int, noise: float, rng: np.random.Generator, expert,
             options: dict | None = None) -> list[tuple]:
    """One noisy expert episode; each frame with the *clean* expert action (the label we want)."""
    obs, _ = env.reset(seed=seed, options=options)
    frames = []
    for _ in range(MAX_EPISODE_STEPS):
        clean = expert(obs["observation.environment_state"])
        frames.append((obs[env.image_key], obs["observation.state"], obs["observation.environment_state"], clean, task))
        executed = np.clip(clean + rng.normal(0.0, noise, size=4), -1, 1).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(executed)
        if terminated or truncated:
            break
    return frames


def sim_frame_bank(tasks: tuple[str, ...], episodes_per_task: int, action_noise: float, seed: int,
                   image_size: int, progress: bool = True) -> FrameBank:
    """Run noisy scripted experts and keep every frame.

    Args:
        tasks: task names or groups of one simulator: Meta-World tasks (corner2 camera), or the grounded
            suite's families (its front camera; every candidate can be pointed at and related).
        episodes_per_task: episodes per task (initial layouts from seeds derived from `seed`).
        action_noise: std of the Gaussian noise added to the executed actions.
        seed: base seed.
        image_size: rendered image side.
        progress: show a progress bar.

    Returns:
        The frame bank with env_state and the camera model.
    """
    from vlm2vla.sim import SimConfig, make_env
    from vlm2vla.sim.suites import resolve_any

    # One suite per bank: the bank has one camera model, and the two suites use different cameras.
    suite, tasks = resolve_any(tasks)
    cfg = SimConfig(name=suite.name, image_size=image_size, camera=suite.default_camera)
    rows, camera = [], None
    for t, task in enumerate(tqdm(tasks, desc="sim frames", unit="task", disable=not progress)):
        env = make_env(task, cfg)
        expert = suite.expert(task, 0.0, None)
        rng = np.random.default_rng([seed, t])
        for k in range(episodes_per_task):
            # Each episode of the seen split names a target (no options for Meta-World).
            spec = suite.episode(task, "seen", np.random.default_rng([seed, t, k]))
            rows += _rollout(env, task, seed=seed * 1000 + 100 * t + k, noise=action_noise, rng=rng, expert=expert,
                             options=spec.options if spec else None)
            camera = camera or camera_model(env)
        env.close()
    images, state, env_state, action, names = zip(*rows, strict=True)
    return FrameBank(images=np.stack(images), state=np.stack(state), action=np.stack(action), tasks=list(names),
                     env_state=np.stack(env_state), camera=camera)


def dataset_frame_bank(root: str, max_frames: int) -> FrameBank:
    """Frames of a LeRobot dataset (from `vlm2vla collect`), at most `max_frames`, spread over episodes.

    Args:
        root: dataset folder.
        max_frames: cap on the frames kept (evenly strided within each episode).

    Returns:
        A FrameBank; env_state is set when the dataset recorded observation.environment_state.
    """
    from vlm2vla.robot_data.reader import LeRobotDatasetReader

    reader = LeRobotDatasetReader.open(root)
    camera_key = reader.camera_keys[0]
    stride = max(1, reader.num_frames // max_frames)
    parts: dict[str, list] = {"images": [], "state": [], "action": [], "env_state": [], "tasks": []}
    for e in range(reader.num_episodes):
        ep = reader.load_episode(e)
        keep = slice(None, None, stride)
        parts["images"].append(ep[camera_key][keep])
        parts["state"].append(ep["observation.state"][keep])
        parts["action"].append(ep["action"][keep])
        parts["env_state"].append(ep.get("observation.environment_state", np.zeros((len(ep["action"]), 0)))[keep])
        parts["tasks"] += [ep["task"]] * len(parts["action"][-1])
    reader.close()
    env_state = np.concatenate(parts["env_state"])
    log.info("Read %d frames from the robot dataset %s", len(parts["tasks"]), root)
    return FrameBank(images=np.concatenate(parts["images"]), state=np.concatenate(parts["state"]),
                     action=np.concatenate(parts["action"]), tasks=parts["tasks"],
                     env_state=env_state if env_state.shape[1] == 39 else None)


def frame_entities(bank: FrameBank, i: int) -> dict[str, np.ndarray]:
    """World positions of the named things in frame i: "gripper", the task's object and its target.

    Args:
        bank: a frame bank with env_state.
        i: frame index.

    Returns:
        {name: xyz [3]}; the object is named after the task (e.g. "puck"), the target only for tasks
        with a visible goal marker.
    """
    es, task = bank.env_state[i], bank.tasks[i]
    if task.startswith("grounded-"):
        return _grounded_entities(es, task)
    out = {"gripper": es[0:3], OBJECT_NAMES.get(task, "object"): es[4:7]}
    if task in TARGET_NAMES:
        out[TARGET_NAMES[task]] = es[36:39]
    return out


def _grounded_entities(es: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Gripper, candidates named by colour and kind ("blue puck"), and the push goal ("goal disc").

    The spatial family's identical balls have no name of their own, so only its gripper is named.
    """
    from vlm2vla.sim.grounded.scene import COLOURS, unpack_state
    from vlm2vla.sim.grounded.tasks import resolve_family

    spec, state = resolve_family(task).scene, unpack_state(es)
    out = {"gripper": state.hand}
    if spec.coloured:
        out.update({f"{colour} {spec.kind}": state.objects[k] for k, colour in enumerate(COLOURS)})
    if spec.goal:
        out["goal disc"] = state.goal
    return out


def visible_pixels(bank: FrameBank, i: int, margin: float = 4.0, occlusion_px: float = 7.0) -> dict[str, np.ndarray]:
    """Pixel positions (u, v) of the entities of frame i that are inside the image and not hidden.

    An object is treated as hidden when it projects within `occlusion_px` of the gripper and lies behind
    it (farther from the camera): at 128 px the gripper then covers it.

    Returns:
        {name: [u, v]} for the visible entities.
    """
    ents = frame_entities(bank, i)
    names = list(ents)
    points = np.stack([ents[n] for n in names])
    uv, depth = bank.camera.project(points), bank.camera.depth(points)
    g = names.index("gripper")
    out = {}
    for k, name in enumerate(names):
        inside = bool(np.all((uv[k] >= margin) & (uv[k] <= bank.camera.size - margin)))
        behind_gripper = k != g and np.linalg.norm(uv[k] - uv[g]) < occlusion_px and depth[k] > depth[g]
        if inside and not behind_gripper:
            out[name] = uv[k]
    return out
