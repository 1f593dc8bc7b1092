"""The README's headline claims, re-derived at small scale with a real margin (slow: minutes on 2 cores).

    pytest -m slow tests/test_claims.py

- A VLM4VLA policy trained on one easy task's demonstrations succeeds more often than the upper end of
  the random policy's 95% interval on the same episodes.
- Pretraining the tiny VLM beats the majority answer by 10 points on every source it is trained on (three
  quickly learnt sources at this scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm2vla.cli import main

pytestmark = pytest.mark.slow

TASK = "button-press"
EPISODES = 20


def _run(*args: str) -> None:
    assert main(list(args)) == 0, args


def _eval(run_dir: Path, *policy: str) -> dict:
    _run("eval", f"run_dir={run_dir}", f"tasks=[{TASK}]", f"episodes_per_task={EPISODES}", "video_episodes=0",
         "sim.max_episode_steps=300", "progress=false", *policy)
    return json.loads((run_dir / "results.json").read_text())["overall"]


def test_trained_policy_beats_random_upper_bound(tmp_path):
    from vlm2vla.backbones import build_tiny_vlm
    from vlm2vla.training.model_setup import tiny_texts

    _run("collect", f"run_dir={tmp_path / 'collect'}", f"tasks=[{TASK}]", "episodes_per_task=12", "progress=false")
    # The tiny VLM's architecture, randomly initialised (VLM4VLA's scratch baseline): the claim is about the
    # action head learning from demonstrations, not about the VLM's pretraining.
    vlm = build_tiny_vlm(tmp_path / "vlm", tiny_texts([]))
    _run("train-policy", "--config", "train_policy_tiny", f"run_dir={tmp_path / 'policy'}", f"model={vlm}",
         f"data={tmp_path / 'collect'}", "optim.max_steps=250", "optim.batch_size=16", "val_episodes=0",
         "checkpoint.interval=0", "progress=false")
    random = _eval(tmp_path / "eval-random", "policy.type=random")
    trained = _eval(tmp_path / "eval-vla", f"policy.path={tmp_path / 'policy'}")
    assert trained["success_rate"] > random["ci_high"], (trained, random)


def test_pretraining_beats_the_majority_answer_per_source(tmp_path):
    # The sources the tiny VLM learns within a few hundred steps (measured at 600 steps on four sources:
    # spatial 0.90 vs majority 0.32, robot_state 0.93 vs 0.29, robot_action 0.58 vs 0.27, but shapes_vqa
    # only 0.19 vs 0.14; the full recipe needs 4000 steps for every source, see configs/pretrain_tiny.yaml)
    sources = "[spatial,robot_state,robot_action]"
    # robot_state / robot_action frames come from scripted-expert rollouts (no robot_dataset given)
    _run("pool", f"run_dir={tmp_path / 'pool'}", f"embedded.sources={sources}", "embedded.samples_per_source=600")
    _run("pretrain", "--config", "pretrain_tiny", f"run_dir={tmp_path / 'pretrain'}", f"data={tmp_path / 'pool'}",
         "optim.max_steps=600", "eval.max_samples_per_source=60", "progress=false")
    after = json.loads((tmp_path / "pretrain" / "eval.json").read_text())["after"]["per_source"]
    assert set(after) == {"spatial", "robot_state", "robot_action"}
    for source, row in after.items():
        assert row["accuracy"] > row["majority_accuracy"] + 0.1, (source, row)
