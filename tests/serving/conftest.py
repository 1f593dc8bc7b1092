"""Fixtures of the serving tests: saved tiny policies and a server running in a background thread; makes
serving_helpers importable from the test modules."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from serving_helpers import FEATURES, STATS, TEXTS, RunningServer  # noqa: E402

from vlm2vla.backbones import VLMBackbone  # noqa: E402
from vlm2vla.backbones.random_models import build_family  # noqa: E402
from vlm2vla.policies import VLAConfig  # noqa: E402
from vlm2vla.serving.server import PolicyServer, ServeConfig, ServedPolicyConfig  # noqa: E402


@pytest.fixture(scope="session")
def policy_dirs(tmp_path_factory) -> dict[str, Path]:
    """Saved random-init policies on a tiny Idefics3: "pi0", "vlm4vla" (camera "front", 40 px frames recorded) and
    "metaworld" (pi0 on camera corner2, no recorded frame size: Meta-World's units)."""
    from vlm2vla.policies.policy import VLAPolicy

    root = tmp_path_factory.mktemp("served")
    vlm = build_family("idefics3", root / "vlm", texts=TEXTS, image_size=32, vocab_size=300)
    out = {}
    for name, head, camera, features in (("pi0", "pi0", "front", FEATURES), ("vlm4vla", "vlm4vla", "front", FEATURES),
                                         ("metaworld", "pi0", "corner2", None)):
        torch.manual_seed(0)
        config = VLAConfig(head=head, cameras=(camera,), chunk_size=4, n_action_steps=2, max_prompt_length=128)
        config = replace(config, pi0=replace(config.pi0, num_layers=2, num_steps=3))
        policy = VLAPolicy.build(config, VLMBackbone.from_pretrained(str(vlm)), STATS if features else
                                 config.fake_stats(), features)
        out[name] = policy.save_pretrained(root / name)
    return out


@pytest.fixture
def start_server(policy_dirs) -> Iterator[Callable[..., RunningServer]]:
    """``start_server(head="pi0", **serve_overrides)``: a running server, shut down after the test."""
    from vlm2vla.serving.server import load_policy

    started: list[RunningServer] = []

    def start(head: str = "pi0", policy=None, **overrides) -> RunningServer:
        cfg = ServeConfig(policy=ServedPolicyConfig(path=str(policy_dirs[head])), host="127.0.0.1", port=0,
                          **overrides)
        if policy is None:
            policy, _ = load_policy(cfg.policy)
        running = RunningServer(PolicyServer(policy, cfg, str(policy_dirs[head])))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.shutdown()
