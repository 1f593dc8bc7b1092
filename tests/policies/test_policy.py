"""VLAPolicy: collation, dataset checks, save/load, and the errors it raises."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from vlm2vla.policies import PolicyCheckpointError, PolicyInputError, VLAPolicy
from vlm2vla.policies.policy import observation_items


@pytest.fixture
def policy(tiny_backbone, vla_config, fake_stats) -> VLAPolicy:
    torch.manual_seed(0)
    return VLAPolicy.build(vla_config, tiny_backbone, fake_stats)


def test_collator_is_picklable_and_normalises(policy, make_items):
    collate = pickle.loads(pickle.dumps(policy.collator()))
    items = make_items(3)
    batch = collate(items)
    assert batch["prefix"]["query_mask"].sum(dim=1).tolist() == [1, 1, 1]
    assert batch["state"].shape == (3, 4) and batch["action"].shape == (3, 4, 4)
    assert batch["action_is_pad"].dtype == torch.bool
    # min_max on actions in [-3, 5]: (a - 1) / 4, so the range maps to [-1, 1]; mean_std on the state: (s - 10) / 3
    raw_action = torch.stack([i["action"] for i in items])
    raw_state = torch.stack([i["observation.state"] for i in items])
    assert not torch.allclose(batch["action"], raw_action)
    assert torch.allclose(batch["action"], (raw_action - 1.0) / 4.0, atol=1e-6)
    assert batch["action"].abs().max() <= 1.0 + 1e-6
    assert torch.allclose(batch["state"], (raw_state - 10.0) / 3.0, atol=1e-6)


def test_predicted_actions_come_back_in_dataset_units(policy, eval_batch):
    with torch.no_grad():
        policy.head.decoder[-1].bias.add_(0.3)
    batch = eval_batch(3)
    actions = policy.predict_action_chunk(batch)
    normalised = policy.head.predict(policy.backbone, policy.prefix(policy.collator()(
        observation_items(batch))))
    assert torch.allclose(actions, normalised * 4.0 + 1.0, atol=1e-5)
    assert set(actions[..., 3].unique().tolist()) <= {-3.0, 5.0}  # the gripper: the dataset's min or max


def test_language_mask_covers_the_instruction_only(policy, make_items):
    batch = policy.collator()(make_items(2))
    tok = policy.backbone.processor.tokenizer
    for row in range(2):
        ids = batch["prefix"]["input_ids"][row][batch["language_mask"][row]].tolist()
        text = tok.decode(ids)
        assert text == policy.config.prompt.format(task=make_items(2)[row]["task"])


def test_missing_camera_and_state_name_keys(policy, make_items):
    items = make_items(1)
    del items[0]["observation.images.corner2"]
    with pytest.raises(PolicyInputError, match=r"observation.images.corner2.*available keys.*cameras"):
        policy.collator()(items)
    items = make_items(1)
    del items[0]["observation.state"]
    with pytest.raises(PolicyInputError, match=r"observation.state.*state_dim=4"):
        policy.collator()(items)


def test_wrong_chunk_length_is_refused(policy, make_items):
    with pytest.raises(PolicyInputError, match="chunk_size=4"):
        policy.compute_loss(policy.collator()(make_items(2, chunk=3)))


def test_check_dataset_names_both_sides(policy):
    features = {"action": {"dtype": "float32", "shape": [4]}, "observation.state": {"dtype": "float32", "shape": [4]},
                "observation.images.corner2": {"dtype": "image", "shape": [32, 32, 3]}}
    policy.check_dataset(features, "data/ok")
    bad_action = {**features, "action": {"dtype": "float32", "shape": [7]}}
    with pytest.raises(PolicyInputError, match=r"dataset data/x has action dim 7, policy config action_dim=4"):
        policy.check_dataset(bad_action, "data/x")
    bad_state = {**features, "observation.state": {"dtype": "float32", "shape": [39]}}
    with pytest.raises(PolicyInputError, match=r"dataset data/x has state dim 39, policy config state_dim=4"):
        policy.check_dataset(bad_state, "data/x")
    no_camera = {k: v for k, v in features.items() if "images" not in k}
    no_camera["observation.images.top"] = features["observation.images.corner2"]
    with pytest.raises(PolicyInputError, match=r"has cameras \['top'\], policy config cameras=\['corner2'\]"):
        policy.check_dataset(no_camera, "data/x")


def test_save_load_gives_identical_actions(policy, eval_batch, tmp_path):
    with torch.no_grad():
        policy.head.decoder[-1].bias.add_(0.3)  # not the init, so a lost weight would show
    batch = eval_batch(3)
    policy.train()
    before = policy.predict_action_chunk(batch)
    assert policy.training  # predicting mid-training leaves the mode as it was
    assert before.shape == (3, 4, 4)
    policy.save_pretrained(tmp_path / "policy")
    policy.save_pretrained(tmp_path / "policy")  # replacing an existing folder works too
    again = VLAPolicy.from_pretrained(tmp_path / "policy", head="vlm4vla")
    assert again.config == policy.config
    assert torch.equal(again.predict_action_chunk(batch), before)
    assert not list(tmp_path.glob(".*tmp"))


def test_loading_another_head_names_both(policy, tmp_path):
    policy.save_pretrained(tmp_path / "policy")
    with pytest.raises(PolicyCheckpointError, match=r"holds a 'vlm4vla' head, but 'pi0' was asked"):
        VLAPolicy.from_pretrained(tmp_path / "policy", head="pi0")


def test_missing_checkpoint_files_name_the_path(tmp_path):
    with pytest.raises(PolicyCheckpointError, match="policy_config.json is missing"):
        VLAPolicy.from_pretrained(tmp_path / "nothing")


def test_no_state_policy(tiny_backbone, vla_config, fake_stats, eval_batch):
    cfg = replace(vla_config, state_dim=0)
    policy = VLAPolicy.build(cfg, tiny_backbone, {"action": fake_stats["action"]})
    batch = eval_batch(2)
    del batch["observation.state"]
    out = policy.predict_action_chunk(batch)
    assert out.shape == (2, 4, 4) and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("head", ["vlm4vla", "pi0", "gr00t"])
def test_the_config_makes_fake_data_of_its_own_shapes(tiny_backbone, head):
    from vlm2vla.policies.configuration import VLAConfig
    from vlm2vla.policies.policy import VLAPolicy

    cfg = VLAConfig(head=head, cameras=("corner2", "wrist"), state_dim=3, action_dim=5, gripper_dims=(4,),
                    chunk_size=6, n_action_steps=2)
    items = cfg.fake_items(3, tasks=("open the drawer", "press the button"), seed=1)
    assert items[0]["action"].shape == (6, 5) and items[0]["observation.state"].shape == (3,)
    assert {"observation.images.corner2", "observation.images.wrist"} <= set(items[0])
    assert set(items[0]["action"][:, 4].tolist()) <= {-1.0, 1.0} and items[1]["action_is_pad"][-1]
    assert [it["task"] for it in items] == ["open the drawer", "press the button", "open the drawer"]
    policy = VLAPolicy.build(cfg, tiny_backbone, cfg.fake_stats())
    loss, _ = policy(policy.collator()(items))
    assert loss.ndim == 0 and torch.isfinite(loss)
    actions = policy.predict_action_chunk(cfg.fake_observation(2, seed=1))
    assert actions.shape == (2, 6, 5)
