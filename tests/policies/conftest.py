"""Shared fixtures for policy tests: one tiny Idefics3 VLM folder, fake stats, fake dataset items."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from vlm2vla.backbones import VLMBackbone
from vlm2vla.backbones.random_models import build_family
from vlm2vla.policies import VLAConfig

TEXTS = ("what action should the robot take to pick up the red block?", "open the drawer", "push the button",
         "reach the goal; close the gripper")


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> str:
    """A tiny random Idefics3 (64 wide, 2 layers, 32 px images = 4 image tokens), built once per session."""
    return str(build_family("idefics3", tmp_path_factory.mktemp("tiny_vlm"), texts=TEXTS, image_size=32,
                            vocab_size=300))


@pytest.fixture
def tiny_backbone(tiny_vlm_dir) -> VLMBackbone:
    """A fresh backbone per test (tests may train it)."""
    return VLMBackbone.from_pretrained(tiny_vlm_dir)


@pytest.fixture
def vla_config() -> VLAConfig:
    """Small policy config: one camera, 4-d state, 4-d action (gripper last), chunks of 4."""
    return VLAConfig(cameras=("corner2",), action_dim=4, state_dim=4, gripper_dims=(3,), chunk_size=4,
                     n_action_steps=2, max_prompt_length=64)


# Dataset units that normalisation visibly changes (an identity map would hide a collator that never
# normalises): state mean 10 / std 3; actions in [-3, 5], so min_max maps them by (a - 1) / 4.
STATE_MEAN, STATE_STD = 10.0, 3.0
ACTION_MIN, ACTION_MAX = -3.0, 5.0


def _stats(dim: int, low: float, high: float, mean: float, std: float) -> dict[str, np.ndarray]:
    lo, hi = np.full(dim, low), np.full(dim, high)
    return {"min": lo, "max": hi, "mean": np.full(dim, mean), "std": np.full(dim, std),
            "q01": lo + 0.05 * (hi - lo), "q99": hi - 0.05 * (hi - lo), "count": np.array([100])}


@pytest.fixture
def fake_stats() -> dict[str, dict[str, np.ndarray]]:
    """reader.stats-like stats for a 4-d state (mean 10, std 3) and a 4-d action in [-3, 5]."""
    return {"observation.state": _stats(4, 1.0, 19.0, STATE_MEAN, STATE_STD),
            "action": _stats(4, ACTION_MIN, ACTION_MAX, 1.0, 2.0)}


@pytest.fixture
def make_items() -> Callable[..., list[dict]]:
    """``make_items(n, chunk=4, seed=0)``: RobotEpisodeDataset-like items (float [3, H, W] images), in the
    dataset units of ``fake_stats``."""

    def make(n: int, chunk: int = 4, seed: int = 0) -> list[dict]:
        gen = torch.Generator().manual_seed(seed)
        tasks = ["pick up the red block", "open the drawer", "push the button"]
        items = []
        for i in range(n):
            action = ACTION_MIN + torch.rand(chunk, 4, generator=gen) * (ACTION_MAX - ACTION_MIN)
            action[:, 3] = torch.where(action[:, 3] > 1.0, ACTION_MAX, ACTION_MIN)  # gripper: open or closed
            state = STATE_MEAN + STATE_STD * (torch.rand(4, generator=gen) * 4 - 2)
            items.append({"observation.images.corner2": torch.rand(3, 32, 32, generator=gen),
                          "observation.state": state, "action": action,
                          "action_is_pad": torch.arange(chunk) >= chunk - (i % 2), "task": tasks[i % len(tasks)]})
        return items

    return make


@pytest.fixture
def eval_batch() -> Callable[[int], dict]:
    """``eval_batch(b)``: an evaluation observation batch (uint8 [B, H, W, 3] images)."""

    def make(b: int) -> dict:
        rng = np.random.default_rng(0)
        return {"observation.images.corner2": rng.integers(0, 256, (b, 48, 48, 3), dtype=np.uint8),
                "observation.state": rng.uniform(STATE_MEAN - 2 * STATE_STD, STATE_MEAN + 2 * STATE_STD,
                                                 (b, 4)).astype(np.float32),
                "task": (["push the button", "open the drawer", "pick up the red block"] * b)[:b]}

    return make
