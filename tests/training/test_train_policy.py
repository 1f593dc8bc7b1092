"""`vlm2vla train-policy` on a tiny Idefics3 and a tiny LeRobotDataset: outputs, freezing, exact resume,
scratch init and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlm2vla.config import load_config
from vlm2vla.runs import Run
from vlm2vla.training.metrics import read_metrics
from vlm2vla.training.next_token_config import MOVED_FIELDS
from vlm2vla.training.train_policy import build_session, train_policy
from vlm2vla.training.train_policy_config import TrainPolicyConfig

TASKS = ["reach the red goal", "push the puck to the goal"]
CAMERA = "observation.images.corner2"


# Per-task actions for the learnable dataset: the instruction alone decides the action.
TASK_ACTIONS = np.array([[0.6, -0.4, 0.3, 1.0], [-0.5, 0.5, -0.2, -1.0]], dtype=np.float32)


def _write_dataset(root: Path, action_dim: int = 4, episodes: int = 5, length: int = 12, video: bool = False,
                   learnable: bool = False) -> Path:
    """Short random episodes: one 128x128 camera (corner2; PNG, or mp4 when `video`), 4-d state,
    `action_dim`-d action (random, or with `learnable` its task's TASK_ACTIONS row plus a little noise)."""
    from vlm2vla.robot_data.writer import LeRobotDatasetWriter

    features = {
        CAMERA: {"dtype": "video" if video else "image", "shape": [128, 128, 3],
                 "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [action_dim], "names": None},
    }
    rng = np.random.default_rng(0)
    with LeRobotDatasetWriter.create(root, fps=10, features=features, robot_type="toy", use_videos=video) as writer:
        for e in range(episodes):
            action = rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32)
            if learnable:
                action = TASK_ACTIONS[e % 2] + 0.05 * action
            action[:, -1] = np.sign(action[:, -1])  # a binary gripper command
            writer.add_episode({
                CAMERA: rng.integers(0, 255, size=(length, 128, 128, 3), dtype=np.uint8),
                "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
                "action": action,
            }, task=TASKS[e % 2])
    return root


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory) -> Path:
    from vlm2vla.backbones.random_models import build_family

    texts = [*TASKS, "What action should the robot take to", "?"] * 20
    return build_family("idefics3", tmp_path_factory.mktemp("policy_vlm"), texts=texts, image_size=32,
                        vocab_size=200)


@pytest.fixture(scope="module")
def robot_data(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("robot") / "data")


def _config(run_dir: Path, vlm_dir: Path, data: Path, **overrides) -> TrainPolicyConfig:
    base = dict(run_dir=str(run_dir), model=str(vlm_dir), data=str(data), val_episodes=1.0, val_max_samples=4,
                batch_size=4, max_steps=4, lr=1e-3, warmup_ratio=0.0, log_interval=1, save_interval=0,
                num_workers=0, progress=False, policy={"chunk_size": 4, "n_action_steps": 2})
    base.update(overrides)
    # Keyword names stay short (max_steps=...); the optimisation and checkpoint ones live in optim.* / checkpoint.*
    items = [f"{MOVED_FIELDS.get(k, k)}={json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in base.items()]
    return load_config(TrainPolicyConfig, overrides=items)


def _run(cfg: TrainPolicyConfig, stop_after: int | None = None) -> dict:
    run = Run.open(cfg.run_dir, "train-policy", cfg)
    return train_policy(cfg, run, stop_after=stop_after)


def _backbone_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted((run_dir / "policy" / "backbone").glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def test_run_writes_policy_metrics_and_validation(tmp_path, vlm_dir, robot_data):
    from vlm2vla.policies.policy import VLAPolicy

    cfg = _config(tmp_path / "run", vlm_dir, robot_data, val_interval=2)
    metrics = _run(cfg)
    run_dir = tmp_path / "run"
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"loss", "lr", "grad_norm", "samples_per_s", "data_wait_frac"} <= set(records[-1])
    assert any(k.startswith("loss_") for k in records[-1])  # the head's per-part losses
    val = json.loads((run_dir / "val.json").read_text())
    assert set(val["by_step"]) == {"2", "4"}
    assert {"l1", "mse", "loss"} <= set(val["final"]) and val["final"]["l1"] > 0
    assert metrics["steps"] == 4 and metrics["final_loss"] == records[-1]["loss"]
    assert metrics["val"]["l1"] == val["final"]["l1"]
    params = metrics["parameters"]
    assert 0 < params["new"] < params["trainable"] == params["total"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["wall_time_s"] > 0

    policy = VLAPolicy.from_pretrained(run_dir / "policy")
    obs = {CAMERA: torch.randint(0, 255, (2, 128, 128, 3), dtype=torch.uint8),
           "observation.state": torch.zeros(2, 4), "task": TASKS}
    assert policy.predict_action_chunk(obs).shape == (2, 4, 4)
    # the policy records its inputs' shapes as the dataset had them (what a server checks requests against)
    features = json.loads((robot_data / "meta" / "info.json").read_text())["features"]
    assert policy.input_features == {k: {"dtype": features[k]["dtype"], "shape": features[k]["shape"]}
                                     for k in (CAMERA, "observation.state")}


@pytest.mark.parametrize("video,cache_frames", [(False, True), (True, False)], ids=["png-cached", "mp4-uncached"])
def test_policy_learns_what_the_instruction_says(tmp_path, vlm_dir, video, cache_frames):
    from vlm2vla.robot_data.reader import LeRobotDatasetReader
    from vlm2vla.training.policy_data import split_episodes

    data = _write_dataset(tmp_path / "data", episodes=6, length=10, video=video, learnable=True)
    cfg = _config(tmp_path / "run", vlm_dir, data, val_episodes=2, val_max_samples=0, max_steps=100, batch_size=8,
                  log_interval=10, cache_frames=cache_frames, policy={"chunk_size": 4, "n_action_steps": 2})
    metrics = _run(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
    # The held-out episodes (both tasks) against the best instruction-blind answer: the training mean action.
    reader = LeRobotDatasetReader.open(data)
    train_eps, val_eps = split_episodes(reader.num_episodes, 2, cfg.seed)
    assert {e % 2 for e in val_eps} == {0, 1}
    cols = reader.frame_columns()
    train_actions = cols["action"][np.isin(cols["episode_index"], train_eps)]
    val_actions = cols["action"][np.isin(cols["episode_index"], val_eps)]
    baseline = float(np.abs(val_actions - train_actions.mean(axis=0)).mean())
    assert metrics["val"]["l1"] < 0.5 * baseline, (metrics["val"], baseline)


def test_cached_and_uncached_items_are_equal(tmp_path):
    from vlm2vla.robot_data.reader import LeRobotDatasetReader
    from vlm2vla.training.policy_data import policy_dataset

    data = _write_dataset(tmp_path / "data", episodes=3, length=6, video=True)
    reader = LeRobotDatasetReader.open(data)
    cached, _ = policy_dataset(reader, [0, 2], 4, (CAMERA,), cache=True)
    uncached, _ = policy_dataset(reader, [0, 2], 4, (CAMERA,), cache=False)
    assert len(cached) == len(uncached) == 12
    for i in range(len(cached)):
        a, b = cached[i], uncached[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key], (i, key)


def test_frozen_groups_stay_bit_identical(tmp_path, vlm_dir, robot_data):
    from vlm2vla.backbones import VLMBackbone

    cfg = _config(tmp_path / "run", vlm_dir, robot_data, max_steps=2, val_episodes=0, freeze=["vision"])
    _run(cfg)
    before = VLMBackbone.from_pretrained(str(vlm_dir))
    groups = before.parameter_groups()
    start = before.model.state_dict()
    after = _backbone_weights(tmp_path / "run")
    changed = {name for name in start if name in after and not torch.equal(start[name], after[name])}
    assert not changed & set(groups["vision"])
    assert changed & set(groups["language_model"])

    cfg = _config(tmp_path / "frozen", vlm_dir, robot_data, max_steps=2, val_episodes=0, freeze=["vlm"])
    metrics = _run(cfg)
    after = _backbone_weights(tmp_path / "frozen")
    assert all(torch.equal(start[k], after[k]) for k in after)
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["new"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_matches_uninterrupted_run(tmp_path, vlm_dir, robot_data, num_workers):
    ref = _config(tmp_path / "ref", vlm_dir, robot_data, max_steps=8, val_episodes=0, num_workers=num_workers)
    _run(ref)
    cfg = _config(tmp_path / "split", vlm_dir, robot_data, max_steps=8, val_episodes=0, save_interval=2,
                  num_workers=num_workers)
    assert _run(cfg, stop_after=4) == {"step": 4, "stopped_early": True}
    assert not (tmp_path / "split" / "policy").exists()
    _run(cfg)
    ref_losses = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]
    losses = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert [s for s, _ in losses] == list(range(1, 9))
    assert [v for _, v in losses] == pytest.approx([v for _, v in ref_losses], abs=1e-6)
    ref_w, ours = _backbone_weights(tmp_path / "ref"), _backbone_weights(tmp_path / "split")
    for key in ref_w:
        torch.testing.assert_close(ours[key], ref_w[key], rtol=0, atol=1e-6, msg=key)
    from safetensors.torch import load_file

    head_ref = load_file(str(tmp_path / "ref" / "policy" / "head.safetensors"))
    head = load_file(str(tmp_path / "split" / "policy" / "head.safetensors"))
    for key in head_ref:
        torch.testing.assert_close(head[key], head_ref[key], rtol=0, atol=1e-6, msg=key)


def test_scratch_init_same_architecture_other_weights(tmp_path, vlm_dir, robot_data):
    from vlm2vla.robot_data.reader import LeRobotDatasetReader
    from vlm2vla.training.train_policy import build_policy

    reader = LeRobotDatasetReader.open(robot_data)
    pretrained = build_policy(_config(tmp_path / "a", vlm_dir, robot_data), reader)[0].backbone
    # The test VLM is itself a random init from seed 0: another seed, or scratch would rebuild it exactly.
    scratch = build_policy(_config(tmp_path / "b", vlm_dir, robot_data, init="scratch", seed=1), reader)[0].backbone
    a, b = pretrained.model.state_dict(), scratch.model.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].ndim >= 2)


def test_action_dim_mismatch_names_both(tmp_path, vlm_dir):
    from vlm2vla.policies.errors import PolicyInputError

    data = _write_dataset(tmp_path / "data6", action_dim=6, episodes=2, length=4)
    cfg = _config(tmp_path / "run", vlm_dir, data)
    with pytest.raises(PolicyInputError, match=r"6.*action_dim=4|action_dim=4.*6"):
        build_session(cfg, Run.open(cfg.run_dir, "train-policy", cfg))


def test_config_errors(tmp_path, vlm_dir):
    from vlm2vla.config import ConfigError
    from vlm2vla.robot_data.format import DatasetFormatError

    with pytest.raises(ConfigError, match="language_model"):
        _config(tmp_path / "r", vlm_dir, tmp_path, freeze=["arm"])
    cfg = _config(tmp_path / "r", vlm_dir, tmp_path / "missing")
    with pytest.raises(DatasetFormatError, match="missing"):
        build_session(cfg, Run.open(cfg.run_dir, "train-policy", cfg))


def test_nothing_to_train(tmp_path, vlm_dir, robot_data, monkeypatch):
    from vlm2vla.training import train_policy

    original = train_policy.build_policy

    def frozen_head(cfg, reader):  # a head with no trainable parameters, on a frozen VLM
        policy, peft = original(cfg, reader)
        policy.head.requires_grad_(False)
        return policy, peft

    monkeypatch.setattr(train_policy, "build_policy", frozen_head)
    cfg = _config(tmp_path / "r", vlm_dir, robot_data, freeze=["vlm"], val_episodes=0)
    with pytest.raises(ValueError, match="Nothing to train"):
        build_session(cfg, Run.open(cfg.run_dir, "train-policy", cfg))


@pytest.mark.parametrize("cache_frames", [True, False])
def test_unreadable_episodes_are_skipped_and_counted_or_fatal(tmp_path, vlm_dir, cache_frames):
    from vlm2vla.robot_data.format import EpisodeReadError
    from vlm2vla.robot_data.reader import LeRobotDatasetReader

    data = _write_dataset(tmp_path / "video", episodes=6, length=6, video=True)
    video = next((data / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 9 // 10])  # cuts the last episode(s)
    reader = LeRobotDatasetReader.open(data)
    bad = []
    for e in range(reader.num_episodes):
        try:
            reader.load_episode(e)
        except EpisodeReadError:
            bad.append(e)
    assert 0 < len(bad) < 3
    fatal = _config(tmp_path / "fatal", vlm_dir, data, max_bad_episodes=0.0, cache_frames=cache_frames)
    with pytest.raises(ValueError, match=rf"{len(bad)} of 6 episodes cannot be read.*{video}: episode {bad[0]}"):
        build_session(fatal, Run.open(fatal.run_dir, "train-policy", fatal))
    cfg = _config(tmp_path / "skip", vlm_dir, data, max_bad_episodes=0.5, cache_frames=cache_frames,
                  val_episodes=0, max_steps=2)
    _run(cfg)
    metrics = json.loads((tmp_path / "skip" / "manifest.json").read_text())["metrics"]
    assert metrics["skipped_episodes"] == len(bad) and sorted(map(int, metrics["skipped"])) == bad
    assert metrics["train_episodes"] == 6 - len(bad) and metrics["train_frames"] == 6 * (6 - len(bad))
    assert f"episode {bad[0]}" in metrics["skipped"][str(bad[0])]


def test_split_episodes_is_deterministic_and_keeps_training_data():
    from vlm2vla.training.policy_data import split_episodes

    train, val = split_episodes(20, 0.1, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(20))
    assert split_episodes(20, 0.1, seed=0) == (train, val) and split_episodes(20, 0.1, seed=1) != (train, val)
    assert len(split_episodes(20, 3, seed=0)[1]) == 3 and split_episodes(20, 0, seed=0)[1] == []
    assert len(split_episodes(3, 0.01, seed=0)[1]) == 1  # a positive fraction holds out at least one
    with pytest.raises(ValueError, match="none to train on"):
        split_episodes(2, 2, seed=0)


def test_shipped_recipe_loads():
    cfg = load_config(TrainPolicyConfig, "train_policy_tiny")
    assert cfg.policy.cameras == ("corner2",) and 16 <= cfg.optim.batch_size <= 32 and cfg.init == "pretrained"


def test_defaults_read_what_collect_and_pretrain_write():
    from vlm2vla.engine.embed import EmbedConfig
    from vlm2vla.robot_data.collect import CollectConfig
    from vlm2vla.training.next_token_config import PretrainConfig

    dataset = f"{CollectConfig().run_dir}/dataset"
    assert TrainPolicyConfig().data == load_config(TrainPolicyConfig, "train_policy_tiny").data == dataset
    assert EmbedConfig().robot_dataset == dataset
    assert TrainPolicyConfig().model == load_config(TrainPolicyConfig, "train_policy_tiny").model \
        == f"{PretrainConfig().run_dir}/model"


def test_cli_help_lists_fields(capsys):
    from vlm2vla.cli import main

    assert main(["train-policy", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("init", "val_episodes", "cache_frames", "policy.head", "lora.r", "freeze"):
        assert name in out
