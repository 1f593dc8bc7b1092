"""VLM4VLA action-query head: one new input position, gradients to the query, loss falls, size."""

from __future__ import annotations

import torch

from vlm2vla.backbones import ChatExample
from vlm2vla.policies import VLAConfig, VLAPolicy
from vlm2vla.policies.action_head import BackboneDims
from vlm2vla.policies.collate import to_pil
from vlm2vla.policies.vlm4vla import ActionQueryHead


def test_query_is_the_only_new_position(tiny_backbone, make_items):
    items = make_items(2)
    examples = [ChatExample(images=[to_pil(i["observation.images.corner2"])],
                            messages=[{"role": "user", "content": "<image>" + i["task"]}]) for i in items]
    plain = tiny_backbone.collate(examples, add_generation_prompt=True)
    queried = tiny_backbone.collate(examples, add_generation_prompt=True, num_queries=1)
    assert queried["input_ids"].shape[1] == plain["input_ids"].shape[1] + 1
    assert torch.equal(queried["input_ids"][:, :-1], plain["input_ids"])
    assert queried["query_mask"].sum(dim=1).tolist() == [1, 1] and queried["query_mask"][:, -1].all()
    with torch.no_grad():
        a = tiny_backbone.hidden_states(queried, query_embeds=torch.randn(1, tiny_backbone.hidden_size))[-1]
        b = tiny_backbone.hidden_states(queried, query_embeds=torch.randn(1, tiny_backbone.hidden_size))[-1]
    mask = queried["attention_mask"][:, :-1].bool()
    # Causal attention: the query's value never reaches the prompt positions, only its own.
    assert torch.allclose(a[:, :-1][mask], b[:, :-1][mask], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_gradients_reach_the_query(tiny_backbone, vla_config, fake_stats, make_items):
    policy = VLAPolicy.build(vla_config, tiny_backbone, fake_stats)
    loss, logs = policy(policy.collator()(make_items(3)))
    loss.backward()
    assert set(logs) == {"loss", "arm", "gripper"}
    assert policy.head.query.grad is not None and policy.head.query.grad.abs().sum() > 0


def test_loss_falls_on_a_fixed_batch(tiny_backbone, vla_config, fake_stats, make_items):
    torch.manual_seed(0)
    policy = VLAPolicy.build(vla_config, tiny_backbone, fake_stats).train()
    batch = policy.collator()(make_items(4))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss, _ = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_predicted_gripper_is_plus_or_minus_one(tiny_backbone, vla_config, fake_stats, make_items):
    policy = VLAPolicy.build(vla_config, tiny_backbone, fake_stats)
    batch = policy.collator()(make_items(2))
    chunk = policy.head.predict(policy.backbone, policy.prefix(batch))
    assert chunk.shape == (2, 4, 4)
    assert set(chunk[..., 3].unique().tolist()) <= {-1.0, 1.0}


def test_new_parameters_under_one_percent_of_smolvlm_256m():
    dims = BackboneDims(hidden_size=576, num_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    head = ActionQueryHead(VLAConfig(), dims)
    # A lower bound of SmolVLM-256M's size: its text model alone (vocab 49280, MLP width 1536), no vision.
    attention = 576 * (2 * 9 * 64) + 576 * (2 * 3 * 64)
    text_model = 49280 * 576 + 30 * (attention + 3 * 576 * 1536)
    assert head.new_parameter_count() < 0.01 * text_model, (head.new_parameter_count(), text_model)
