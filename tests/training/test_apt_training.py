"""`vlm2vla train-policy` with APT: stage 1 then stage 2 from one config, what the run directories record,
and the settings that do not make an APT run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_policy import _backbone_weights, _config, _run, _write_dataset

from vlm2vla.backbones import VLMBackbone

APT_POLICY = {"head": "pi0", "chunk_size": 4, "n_action_steps": 2, "pi0": {"num_layers": 2}, "apt": {"stage": 2}}


@pytest.fixture(scope="module")
def apt_vlm(tmp_path_factory) -> Path:
    from vlm2vla.backbones.random_models import build_family

    texts = ["reach the red goal", "push the puck to the goal", "What action should the robot take to", "?"] * 20
    return build_family("idefics3", tmp_path_factory.mktemp("apt_vlm"), texts=texts, image_size=32, vocab_size=200)


@pytest.fixture(scope="module")
def apt_data(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("apt_robot") / "data")


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _expert(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "policy" / "head.safetensors"))


def test_one_config_runs_stage1_then_stage2(tmp_path, apt_vlm, apt_data):
    run_dir = tmp_path / "apt"
    cfg = _config(run_dir, apt_vlm, apt_data, policy=APT_POLICY, max_steps=2, apt={"stage1_steps": 3})
    _run(cfg)
    stage1 = run_dir / "stage1"
    first, second = _manifest(stage1), _manifest(run_dir)
    assert first["status"] == second["status"] == "complete"
    assert first["config"]["policy"]["apt"]["stage"] == 1 and first["config"]["optim"]["max_steps"] == 3
    assert first["metrics"]["apt"] == {"stage": 1, "vlm_frozen": True} and first["metrics"]["steps"] == 3
    apt = second["metrics"]["apt"]
    assert apt["stage"] == 2 and apt["init"] == "stage1" and apt["stage1"] == str(stage1 / "policy")
    assert apt["fresh_parameters"] > 0 and second["inputs"]["stage1"] == str(stage1 / "policy")
    # The VLM stayed frozen in both stages, and stage 2 started from the prior (2 AdamW steps of lr 1e-3 away).
    vlm = VLMBackbone.from_pretrained(str(apt_vlm)).model.state_dict()
    for folder in (stage1, run_dir):
        weights = _backbone_weights(folder)
        assert all(torch.equal(weights[k], vlm[k]) for k in weights if k in vlm)
    prior, fused = _expert(stage1), _expert(run_dir)  # 1 layer, then 2: the prior's and an inserted one
    assert not any(k.startswith("head.layers.1.") for k in prior) and "head.fusion.gate_logits" in fused
    assert (fused["head.layers.0.q.weight"] - prior["head.layers.0.q.weight"]).abs().max() < 3e-3
    assert (fused["head.layers.1.q.weight"] - prior["head.layers.0.q.weight"]).abs().max() > 0.05

    # Re-running the finished run trains nothing again: stage 1 is not even reopened.
    before = (stage1 / "manifest.json").read_text()
    _run(cfg)
    assert (stage1 / "manifest.json").read_text() == before
    assert _manifest(run_dir)["metrics"]["steps"] == 2


@pytest.mark.parametrize("freeze_vlm", [True, False], ids=["vlm-frozen", "vlm-fine-tuned"])
def test_stage2_without_a_prior_is_the_joint_baseline(tmp_path, apt_vlm, apt_data, freeze_vlm):
    run_dir = tmp_path / "joint"
    _run(_config(run_dir, apt_vlm, apt_data, policy=APT_POLICY, max_steps=2, apt={"freeze_vlm": freeze_vlm}))
    apt = _manifest(run_dir)["metrics"]["apt"]
    assert apt == {"stage": 2, "init": "random", "vlm_frozen": freeze_vlm}
    assert not (run_dir / "stage1").exists()
    vlm = VLMBackbone.from_pretrained(str(apt_vlm)).model.state_dict()
    weights = _backbone_weights(run_dir)
    unchanged = all(torch.equal(weights[k], vlm[k]) for k in weights if k in vlm)
    assert unchanged == freeze_vlm


def test_a_sequenced_run_that_trains_the_vlm_goes_on_from_stage_1s_vlm(tmp_path, apt_vlm, apt_data):
    run_dir = tmp_path / "apt"
    _run(_config(run_dir, apt_vlm, apt_data, policy=APT_POLICY, max_steps=1,
                 apt={"stage1_steps": 2, "freeze_vlm": False}))
    stage1_vlm = run_dir / "stage1" / "policy" / "backbone"
    manifest = _manifest(run_dir)
    assert manifest["inputs"]["model"] == str(stage1_vlm) and manifest["metrics"]["apt"]["vlm_frozen"] is False
    trained = _backbone_weights(run_dir / "stage1")
    original = VLMBackbone.from_pretrained(str(apt_vlm)).model.state_dict()
    assert not all(torch.equal(trained[k], original[k]) for k in trained if k in original)


def test_settings_that_are_no_apt_run(tmp_path, apt_vlm, apt_data):
    plain = {**APT_POLICY, "apt": {"stage": 0}}
    with pytest.raises(ValueError, match="set policy.apt.stage=2"):
        _config(tmp_path / "x", apt_vlm, apt_data, policy=plain, apt={"stage1_steps": 3})
    with pytest.raises(ValueError, match="not both"):
        _config(tmp_path / "x", apt_vlm, apt_data, policy=APT_POLICY, apt={"stage1_steps": 3, "stage1": "runs/s1"})
    with pytest.raises(ValueError, match="LoRA adapters would train it"):
        _config(tmp_path / "x", apt_vlm, apt_data, policy=APT_POLICY, lora={"enabled": True})
    with pytest.raises(ValueError, match="head=pi0 or head=gr00t"):
        _config(tmp_path / "x", apt_vlm, apt_data, policy={**APT_POLICY, "head": "vlm4vla"})


def test_gate_lr_scale_reaches_the_run(tmp_path, apt_vlm, apt_data):
    moved = {}
    for scale in (1.0, 50.0):
        run_dir = tmp_path / f"scale{scale:g}"
        _run(_config(run_dir, apt_vlm, apt_data, policy=APT_POLICY, max_steps=2, apt={"gate_lr_scale": scale}))
        assert _manifest(run_dir)["config"]["apt"]["gate_lr_scale"] == scale
        moved[scale] = _expert(run_dir)["head.fusion.gate_logits"].abs().mean().item()  # they start at 0
    # Adam moves each logit by about the learning rate per step, so 50x the rate moves them ~50x as far
    assert 0 < moved[1.0] < 3e-3 and moved[50.0] > 20 * moved[1.0]


def test_a_sequenced_run_split_into_jobs_ends_as_one_run(tmp_path, apt_vlm, apt_data):
    """stop_after counts the whole run (stage 1's steps, then stage 2's), and every job resumes where the last
    stopped: the final expert equals an uninterrupted run's."""
    def config(name: str):
        return _config(tmp_path / name, apt_vlm, apt_data, policy=APT_POLICY, max_steps=3, val_episodes=0,
                       apt={"stage1_steps": 3})

    _run(config("whole"))
    split = config("split")
    assert _run(split, stop_after=2) == {"step": 2, "stopped_early": True, "apt_stage": 1}
    assert _run(split, stop_after=3) == {"step": 3, "stopped_early": True, "apt_stage": 1}
    assert _manifest(tmp_path / "split" / "stage1")["status"] == "complete"
    assert _run(split, stop_after=5) == {"step": 5, "stopped_early": True, "apt_stage": 2}
    assert not (tmp_path / "split" / "policy").exists()
    assert _run(split)["steps"] == 3
    whole, parts = _expert(tmp_path / "whole"), _expert(tmp_path / "split")
    assert whole.keys() == parts.keys()
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=0, atol=1e-6, msg=key)
