"""The "vla" evaluation policy built through make_policy from a saved VLAPolicy."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from vlm2vla.cli import main
from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig, make_policy, resolve_policy_config
from vlm2vla.policies import VLAPolicy
from vlm2vla.policies.eval_policy import VLAEvalPolicy


def test_make_policy_predicts_clipped_chunks(tiny_backbone, vla_config, fake_stats, eval_batch, tmp_path):
    policy = VLAPolicy.build(vla_config, tiny_backbone, fake_stats)
    with torch.no_grad():
        policy.head.decoder[-1].bias.fill_(5.0)  # far outside [-1, 1]: the adapter must clip
    policy.save_pretrained(tmp_path / "policy")
    evaluated = make_policy(PolicyConfig(type="vla", path=str(tmp_path / "policy"), kwargs={"device": "cpu"}))
    assert isinstance(evaluated, Policy)
    assert evaluated.chunk_size == 4 and evaluated.n_action_steps == 2
    evaluated.reset()
    actions = evaluated.predict_chunk(eval_batch(3))
    assert actions.shape == (3, 4, 4) and actions.dtype == np.float32
    assert actions.min() >= -1.0 and actions.max() <= 1.0


@pytest.fixture
def saved_policy(tiny_backbone, vla_config, fake_stats, tmp_path) -> Path:
    """A train-policy-like run directory: <tmp>/run/policy holds a saved VLAPolicy."""
    config = replace(vla_config, max_prompt_length=160)  # room for Meta-World's instructions in eval
    VLAPolicy.build(config, tiny_backbone, fake_stats).save_pretrained(tmp_path / "run" / "policy")
    return tmp_path / "run" / "policy"


def test_unknown_kwargs_and_missing_path_are_refused(saved_policy):
    with pytest.raises(ValueError, match="policy.path"):
        make_policy(PolicyConfig(type="vla"))
    with pytest.raises(ValueError, match="temperature"):
        make_policy(PolicyConfig(type="vla", path=str(saved_policy), kwargs={"temperature": 1.0}))


def test_auto_type_comes_from_the_folder_and_a_run_directory_means_its_policy(saved_policy):
    for given in (saved_policy, saved_policy.parent):
        resolved = resolve_policy_config(PolicyConfig(path=str(given)))
        assert (resolved.type, resolved.path) == ("vla", str(saved_policy.resolve()))
    assert resolve_policy_config(PolicyConfig()).type == "expert"  # no path: the scripted expert
    assert isinstance(make_policy(PolicyConfig(path=str(saved_policy.parent))), VLAEvalPolicy)


def test_a_path_is_never_ignored(saved_policy, tmp_path):
    with pytest.raises(ValueError, match="policy.type=expert loads no folder"):
        make_policy(PolicyConfig(type="expert", path=str(saved_policy)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no saved policy"):
        make_policy(PolicyConfig(path=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="does not exist"):
        make_policy(PolicyConfig(type="vla", path=str(tmp_path / "nowhere")))


def test_eval_names_the_policy_it_measured(saved_policy, tmp_path, caplog):
    run_dir = tmp_path / "eval"
    with caplog.at_level(logging.INFO):
        code = main(["eval", f"run_dir={run_dir}", f"policy.path={saved_policy.parent}", "tasks=[reach]",
                     "episodes_per_task=1", "sim.image_size=32", "sim.max_episode_steps=8", "video_episodes=0",
                     "num_envs=1", "progress=false", "policy.kwargs={device: cpu}"])
    assert code == 0
    measured = {"type": "vla", "path": str(saved_policy.resolve())}
    assert json.loads((run_dir / "results.json").read_text())["policy"] == measured
    rows = list(csv.DictReader((run_dir / "per_task.csv").open()))
    assert [(r["policy_type"], r["policy_path"]) for r in rows] == [("vla", measured["path"])]
    assert json.loads((run_dir / "manifest.json").read_text())["inputs"]["policy"] == measured
    assert f"Evaluating policy vla from {measured['path']}" in caplog.text


def test_the_vla_type_is_recognised_by_the_file_save_pretrained_writes():
    from vlm2vla.evaluation.policy_interface import POLICIES
    from vlm2vla.policies.policy import CONFIG_FILE

    assert POLICIES.entry("vla").info["folder_marker"] == CONFIG_FILE
