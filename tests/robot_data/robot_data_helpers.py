"""Tiny synthetic robot episodes for the robot_data tests (imported by the test modules)."""

from __future__ import annotations

import numpy as np

CAM = "observation.images.cam"
TASKS = ["pick up the cube", "open the drawer"]
LENGTHS = [10, 17, 24]


def make_features(image_dtype: str = "video", size: int = 32) -> dict[str, dict]:
    """One camera, a 4-D state and a 3-D action."""
    return {
        CAM: {"dtype": image_dtype, "shape": [size, size, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]},
        "action": {"dtype": "float32", "shape": [3], "names": ["dx", "dy", "dz"]},
    }


def make_episode(length: int, seed: int, size: int = 32) -> dict[str, np.ndarray]:
    """Smooth, moving gradients (video codecs keep them nearly intact) plus random vectors."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 150, size)
    t = np.arange(length)[:, None, None]
    images = np.empty((length, size, size, 3), dtype=np.uint8)
    images[..., 0] = ramp[None, None, :] + 3 * t  # at most 150 + 3 * 40, no wrap-around edges
    images[..., 1] = ramp[None, :, None] + 20 * (seed % 5)
    images[..., 2] = 100 + 5 * (seed % 10)
    return {
        CAM: images,
        "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
        "action": rng.normal(size=(length, 3)).astype(np.float32),
    }


def make_episodes() -> list[dict[str, np.ndarray]]:
    """Three episodes of 10, 17 and 24 frames."""
    return [make_episode(n, seed) for seed, n in enumerate(LENGTHS)]


def write_dataset(root, episodes, image_dtype: str = "video", **kwargs):
    """Write `episodes` (task i % 2) and return the closed writer."""
    from vlm2vla.robot_data.writer import LeRobotDatasetWriter

    with LeRobotDatasetWriter.create(root, fps=10, features=make_features(image_dtype), robot_type="toy",
                                     **kwargs) as writer:
        for i, ep in enumerate(episodes):
            writer.add_episode(ep, task=TASKS[i % 2])
    return writer
