"""robot_state / robot_action from a LeRobot dataset's frames instead of simulator rollouts."""

from __future__ import annotations

import json

import numpy as np

from vlm2vla.robot_data.writer import LeRobotDatasetWriter
from vlm2vla.vlm_data.embedded import EmbeddedPoolConfig, generate_embedded_pool
from vlm2vla.vlm_data.embedded.robot_action import grip_word, move_word
from vlm2vla.vlm_data.embedded.robot_state import gripper_state

CAM = "observation.images.corner2"


def _write_dataset(root) -> None:
    features = {
        CAM: {"dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]},
        "action": {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "gripper"]},
    }
    rng = np.random.default_rng(0)
    with LeRobotDatasetWriter.create(root, fps=10, features=features, robot_type="toy") as writer:
        for _ in range(2):
            n = 30
            state = rng.uniform(-1, 1, size=(n, 4)).astype(np.float32)
            state[:, 3] = np.where(np.arange(n) % 2 == 0, 1.0, 0.3)  # alternating open / closed
            writer.add_episode({CAM: rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8),
                                "observation.state": state,
                                "action": rng.uniform(-1, 1, size=(n, 4)).astype(np.float32)}, task="push the puck")


def test_dataset_frames_feed_robot_state_and_action(tmp_path):
    _write_dataset(tmp_path / "robot")
    cfg = EmbeddedPoolConfig(sources=("robot_state", "robot_action"), samples_per_source=40,
                             robot_dataset=str(tmp_path / "robot"))
    specs = generate_embedded_pool(cfg, tmp_path / "embedded", progress=False)
    assert [(s.name, kind) for s, kind in specs] == [("robot_state", "embodied"), ("robot_action", "embodied")]
    state = [json.loads(line) for line in open(specs[0][0].path)]
    assert len(state) == 40
    # Without simulator state only the gripper question can be asked; its answers follow the state.
    assert {r["conversations"][-1]["value"] for r in state} == {"open", "closed"}
    assert all(r["conversations"][-1]["value"] == gripper_state(r["gripper_opening"]) for r in state)
    for r in (json.loads(line) for line in open(specs[1][0].path)):
        action = np.array(r["action"])
        assert r["conversations"][-1]["value"] in (move_word(action), grip_word(action))
