"""APT on both flow-matching experts: the stage-1 prior is blind to the instruction, stage 2 inserts gated
layers around the prior's weights, and a stage-1 -> stage-2 -> save -> load chain keeps its actions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vlm2vla.backbones import VLMBackbone, build_tiny_vlm
from vlm2vla.policies.action_head import BackboneDims, Prefix
from vlm2vla.policies.apt import LayerSlot, layer_plan
from vlm2vla.policies.configuration import APTOptions, Gr00tOptions, Pi0Options, VLAConfig
from vlm2vla.policies.errors import PolicyCheckpointError
from vlm2vla.policies.gr00t_expert import Gr00tExpert
from vlm2vla.policies.policy import VLAPolicy

CORPUS = [f"pick up the {c} {o} and place it {w}" for c in ("red", "blue", "green")
          for o in ("cube", "ball", "block") for w in ("left", "right", "in the bin")] * 10
HEADS = ("pi0", "gr00t")
DEPTH = 4  # the final expert depth N: stage 1 has 2 layers


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory) -> str:
    return str(build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "vlm", CORPUS, vocab_size=512))


@pytest.fixture(scope="module")
def backbone(vlm_dir) -> VLMBackbone:
    return VLMBackbone.from_pretrained(vlm_dir)


def _config(head: str, stage: int, **apt) -> VLAConfig:
    return VLAConfig(head=head, chunk_size=4, action_dim=4, state_dim=3, pi0=Pi0Options(num_layers=DEPTH),
                     gr00t=Gr00tOptions(num_layers=DEPTH), apt=APTOptions(stage=stage, **apt))


def _policy(backbone, head: str, stage: int, seed: int = 0, **apt) -> VLAPolicy:
    torch.manual_seed(seed)
    cfg = _config(head, stage, **apt)
    policy = VLAPolicy.build(cfg, backbone, cfg.fake_stats()).eval()
    _open_adaln(policy.head)
    return policy


def _open_adaln(expert) -> None:
    """GR00T's AdaLN-zero blocks start as the identity (blind to the VLM); give them random modulation."""
    if isinstance(expert, Gr00tExpert):
        generator = torch.Generator().manual_seed(7)
        zero_inserted = expert.config.apt.zero_init_inserted
        with torch.no_grad():
            for slot, block in zip(expert.plan, expert.blocks, strict=True):
                if slot.inserted and zero_inserted:
                    continue
                block.ada.weight.copy_(0.05 * torch.randn(block.ada.weight.shape, generator=generator))
                block.ada.bias.copy_(0.5 + 0.05 * torch.randn(block.ada.bias.shape, generator=generator))


def _prefix(policy: VLAPolicy, tasks: list[str], seed: int = 0) -> Prefix:
    items = policy.config.fake_items(len(tasks), tasks=tasks, image_size=128, seed=seed)
    return policy.prefix(policy.collator()(items))


def _predict(policy: VLAPolicy, prefix: Prefix) -> torch.Tensor:
    noise = torch.randn(prefix.state.shape[0], 4, 4, generator=torch.Generator().manual_seed(1))
    return policy.head.predict(policy.backbone, prefix, noise=noise)


def _stage2_from(prior: VLAPolicy, seed: int = 1, **apt) -> VLAPolicy:
    """A stage-2 policy of the prior's style whose expert got the prior's weights (in memory)."""
    policy = _policy(prior.backbone, prior.config.head, 2, seed=seed, **apt)
    policy.head.load_prior(prior.head.state_dict(), "the stage-1 expert")
    return policy


def test_layer_plan():
    assert [s.vlm_layer for s in layer_plan(0, 4, 4)] == [0, 1, 2, 3]
    assert layer_plan(1, 4, 4) == [LayerSlot(False, 0, 0), LayerSlot(False, 1, 3)]
    # stage-1 layers keep their VLM layer; inserted ones read the depth an N-layer expert would give them
    assert layer_plan(2, 4, 4) == [LayerSlot(False, 0, 0), LayerSlot(True, None, 1), LayerSlot(False, 1, 3),
                                   LayerSlot(True, None, 3)]
    assert [s.inserted for s in layer_plan(2, 6, 12)] == [False, True] * 3
    with pytest.raises(ValueError, match="even expert depth"):
        layer_plan(1, 3, 4)


def test_apt_needs_an_expert():
    with pytest.raises(ValueError, match="head=pi0 or head=gr00t"):
        VLAConfig(head="vlm4vla", apt=APTOptions(stage=1))
    with pytest.raises(ValueError, match="apt.stage"):
        APTOptions(stage=3)


@pytest.mark.parametrize("head", HEADS)
def test_stage_depths_and_gates(backbone, head):
    dims = BackboneDims.of(backbone)
    stage1, stage2 = _policy(backbone, head, 1).head, _policy(backbone, head, 2, gate_init=1.5).head
    stack = stage1.stack_name
    assert len(getattr(stage1, stack)) == DEPTH // 2 and stage1.fusion is None and stage1.mask_language
    assert len(getattr(stage2, stack)) == DEPTH and not stage2.mask_language
    width = dims.num_key_value_heads * dims.head_dim if head == "pi0" else stage2.width
    gates = stage2.fusion.gate_logits
    assert gates.shape == (DEPTH // 2, width) and torch.all(gates == 1.5)
    assert torch.allclose(stage2.fusion.gate(0), torch.sigmoid(torch.tensor(1.5)))
    assert _policy(backbone, head, 0).head.fusion is None


@pytest.mark.parametrize("head", HEADS)
def test_stage1_is_blind_to_the_instruction_and_stage2_is_not(backbone, head):
    """Other instructions (same and different token counts, so also other padding) leave the stage-1
    expert's actions as they are; the stage-2 expert built on the same weights reads them."""
    prior = _policy(backbone, head, 1)
    fused = _stage2_from(prior)
    tasks = [["pick up the red cube", "place it left"], ["pick up the blue ball", "place it right"],
             ["place the green block in the bin", "pick up the cube"]]
    changes = {}
    for name, policy in (("stage1", prior), ("stage2", fused)):
        first, *others = [_predict(policy, _prefix(policy, t)) for t in tasks]
        changes[name] = max((first - other).abs().max().item() for other in others)
    assert changes["stage1"] < 1e-5 < 1e-3 < changes["stage2"], changes


@pytest.mark.parametrize("head", HEADS)
def test_prior_weights_land_in_the_stage1_slots(backbone, head):
    prior = _policy(backbone, head, 1)
    fused = _stage2_from(prior)
    stack = prior.head.stack_name
    for k, layer in enumerate(getattr(prior.head, stack)):
        placed = getattr(fused.head, stack)[2 * k].state_dict()
        assert all(torch.equal(v, placed[n]) for n, v in layer.state_dict().items())
    # Bypassing the inserted layers gives the prior's actions, with the language hidden or shown to both.
    prefix = _prefix(prior, ["pick up the red cube", "place it in the bin"])
    fused.head.bypass_inserted = True
    for masked in (True, False):
        prior.head.mask_language = fused.head.mask_language = masked
        assert torch.allclose(_predict(prior, prefix), _predict(fused, prefix), atol=1e-5)
    fused.head.bypass_inserted = False
    assert not torch.allclose(_predict(prior, prefix), _predict(fused, prefix), atol=1e-3)


def test_pi0_stage2_keeps_the_positions_stage1_learnt(backbone):
    """Expert tokens sit at the same rotary positions in stage 1 (instruction hidden) and stage 2 (shown),
    whatever the instruction's length; the plain expert keeps pi0's layout, right after the prompt."""
    prior = _policy(backbone, "pi0", 1)
    fused, plain = _stage2_from(prior), _policy(backbone, "pi0", 0)
    short, long = (_prefix(prior, t) for t in (["place it left"], ["place the green block in the bin now"]))
    cos = {name: [p.head.encode_prefix(backbone, pf)["rotary"][0] for pf in (short, long)]
           for name, p in (("stage1", prior), ("stage2", fused), ("plain", plain))}
    for stage1, stage2 in zip(cos["stage1"], cos["stage2"], strict=True):
        assert torch.equal(stage1, stage2)
    assert not torch.equal(cos["plain"][0], cos["stage1"][0])
    length = short.batch["attention_mask"].shape[1]
    assert torch.allclose(cos["plain"][0], _rotary_at(backbone, torch.arange(length, length + 5)), atol=1e-6)


def _rotary_at(backbone, positions: torch.Tensor) -> torch.Tensor:
    from vlm2vla.policies.pi0_expert import rotary_tables

    return rotary_tables(backbone, positions[None], BackboneDims.of(backbone).head_dim)[0]


@pytest.mark.parametrize("head", HEADS)
def test_zero_initialised_inserted_layers_start_as_the_prior(backbone, head):
    prior = _policy(backbone, head, 1)
    fused = _stage2_from(prior, zero_init_inserted=True)
    fused.head.mask_language = True  # the same view of the prefix as the prior
    prefix = _prefix(prior, ["pick up the red cube", "place it in the bin"])
    assert torch.allclose(_predict(prior, prefix), _predict(fused, prefix), atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_fusion_parameters_get_gradients_in_stage2(backbone, head):
    fused = _stage2_from(_policy(backbone, head, 1)).train()
    prefix = _prefix(fused, ["pick up the red cube", "place it left"])
    loss, _ = fused.head.loss(backbone, prefix, torch.randn(2, 4, 4), torch.zeros(2, 4, dtype=torch.bool))
    loss.backward()
    grads = [p.grad for p in fused.head.fusion.parameters()]
    assert all(g is not None for g in grads) and fused.head.fusion.gate_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("head", HEADS)
def test_stage1_to_stage2_to_disk_and_back(tmp_path, backbone, head):
    prior = _policy(backbone, head, 1)
    prior.save_pretrained(tmp_path / "stage1-run" / "policy")
    fused = _policy(backbone, head, 2, seed=1)
    record = fused.load_apt_prior(tmp_path / "stage1-run")  # the run directory holding policy/
    assert record["stage1"] == str(tmp_path / "stage1-run" / "policy")
    expected = sum(p.numel() for n, p in fused.head.named_parameters()
                   if n.startswith("fusion.") or any(n.startswith(f"{fused.head.stack_name}.{i}.") for i in (1, 3)))
    assert record["fresh_parameters"] == expected > 0
    assert record["renormalised"] == []
    fused.save_pretrained(tmp_path / "stage2")
    loaded = VLAPolicy.from_pretrained(tmp_path / "stage2")
    assert loaded.config.apt.stage == 2
    obs = fused.config.fake_observation(2, tasks=["pick up the red cube", "place it left"])
    torch.manual_seed(5)
    want = fused.predict_action_chunk(obs)
    torch.manual_seed(5)
    assert torch.equal(loaded.predict_action_chunk(obs), want)


def test_loading_the_wrong_prior_names_both_sides(tmp_path, vlm_dir, backbone):
    fused = _policy(backbone, "pi0", 2)
    _policy(backbone, "pi0", 2, seed=3).save_pretrained(tmp_path / "stage2")
    with pytest.raises(PolicyCheckpointError, match=r"stage2 holds an APT stage-2 policy \(apt.stage=2\).*stage-1"):
        fused.load_apt_prior(tmp_path / "stage2")
    _policy(backbone, "pi0", 0).save_pretrained(tmp_path / "plain")
    with pytest.raises(PolicyCheckpointError, match="plain expert"):
        fused.load_apt_prior(tmp_path / "plain")
    _policy(backbone, "gr00t", 1).save_pretrained(tmp_path / "gr00t")
    with pytest.raises(PolicyCheckpointError, match="stage-1 gr00t expert, but this run trains policy.head=pi0"):
        fused.load_apt_prior(tmp_path / "gr00t")
    # same architecture, other weights: a VLM fine-tuned (or initialised) differently from this one
    other = VLMBackbone.from_pretrained(vlm_dir)
    with torch.no_grad():
        next(other.model.parameters()).add_(0.1)
    prior = _policy(other, "pi0", 1)
    prior.save_pretrained(tmp_path / "other-vlm")
    with pytest.raises(PolicyCheckpointError, match=r"another VLM .* than this run's model .*differs"):
        fused.load_apt_prior(tmp_path / "other-vlm")
    wide = VLAConfig(head="pi0", chunk_size=4, action_dim=4, state_dim=3, pi0=Pi0Options(num_layers=DEPTH,
                     width_ratio=1.0), apt=APTOptions(stage=1))
    VLAPolicy.build(wide, backbone, wide.fake_stats()).save_pretrained(tmp_path / "wide")
    with pytest.raises(PolicyCheckpointError, match=r"pi0.width_ratio: 1.0 vs 0.5"):
        fused.load_apt_prior(tmp_path / "wide")
    with pytest.raises(PolicyCheckpointError, match="only an APT stage-2 policy"):
        _policy(backbone, "pi0", 1).load_apt_prior(tmp_path / "wide")
    with pytest.raises(PolicyCheckpointError, match="holds no policy"):
        fused.load_apt_prior(tmp_path / "nowhere")


def test_the_priors_vlm_is_compared_from_disk_without_loading_it(tmp_path, vlm_dir, backbone, monkeypatch):
    from safetensors.torch import load_file, save_file

    from vlm2vla.policies.apt import first_difference_on_disk

    prior = _policy(backbone, "pi0", 1)
    prior.save_pretrained(tmp_path / "stage1")
    folder = tmp_path / "stage1" / "backbone"
    assert first_difference_on_disk(folder, backbone.model) == ""

    def no_second_vlm(*args, **kwargs):
        raise AssertionError("the prior's VLM was loaded as a model")

    monkeypatch.setattr(VLMBackbone, "from_pretrained", no_second_vlm)
    assert _policy(backbone, "pi0", 2).load_apt_prior(tmp_path / "stage1")["fresh_parameters"] > 0
    monkeypatch.undo()
    # one weight changed on disk is found, named and measured
    (weights,) = folder.glob("*.safetensors")
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert first_difference_on_disk(folder, backbone.model) == f"{name} differs (max |difference| 0.5)"
    # files saved under other tensor names: the caller must load and compare the model instead
    save_file({f"renamed.{k}": v for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    assert first_difference_on_disk(folder, backbone.model) is None
    with pytest.raises(PolicyCheckpointError, match="another VLM"):
        _policy(backbone, "pi0", 2).load_apt_prior(tmp_path / "stage1")


def test_stage2_config_round_trips(backbone):
    cfg = replace(_config("gr00t", 2), apt=APTOptions(stage=2, gate_init=-2.0, zero_init_inserted=True))
    from vlm2vla.config import config_to_dict
    from vlm2vla.policies.policy import config_from_dict

    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_gates_get_no_weight_decay(backbone):
    from vlm2vla.training.optim import OptimConfig, build_optimizer

    policy = _policy(backbone, "pi0", 2, gate_init=2.0)
    optimizer = build_optimizer(policy.head, OptimConfig(weight_decay=0.1))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(policy.head.fusion.gate_logits) not in decayed
    assert id(policy.head.layers[1].q.weight) in decayed


def test_gate_lr_scale_moves_only_the_gates_faster(backbone):
    from vlm2vla.training.optim import OptimConfig, build_optimizer

    def one_step(scale: float) -> tuple[float, float]:
        policy = _policy(backbone, "pi0", 2)
        head = policy.head
        before = head.fusion.gate_logits.detach().clone(), head.layers[1].q.weight.detach().clone()
        optimizer = build_optimizer(head, OptimConfig(lr=1e-3, weight_decay=0.0), {"gate_logits": scale})
        head.train()
        # Adam's first step moves every parameter with a gradient by ~lr, whatever the gradient's size
        loss = sum(p.float().pow(2).sum() for p in (head.fusion.gate_logits + 1.0, head.layers[1].q.weight))
        loss.backward()
        optimizer.step()
        return ((head.fusion.gate_logits - before[0]).abs().mean().item(),
                (head.layers[1].q.weight - before[1]).abs().mean().item())

    gates_1, q_1 = one_step(1.0)
    gates_50, q_50 = one_step(50.0)
    assert gates_1 == pytest.approx(1e-3, rel=1e-3) and q_1 == pytest.approx(1e-3, rel=0.05)
    assert gates_50 == pytest.approx(50 * gates_1, rel=1e-3)
    assert q_50 == pytest.approx(q_1, rel=1e-6)


def test_optimizer_groups_keep_the_checkpointed_order(backbone):
    from vlm2vla.training.optim import OptimConfig, build_optimizer

    head = _policy(backbone, "pi0", 2).head
    plain = build_optimizer(head, OptimConfig(weight_decay=0.1), {"gate_logits": 1.0}).param_groups
    assert [g["weight_decay"] for g in plain] == [0.1, 0.0]  # the two groups runs were always saved with
    scaled = build_optimizer(head, OptimConfig(weight_decay=0.1), {"gate_logits": 10.0}).param_groups
    assert [g["weight_decay"] for g in scaled] == [0.1, 0.0, 0.0]
    assert [p is head.fusion.gate_logits for p in scaled[2]["params"]] == [True]
    assert scaled[2]["lr"] == pytest.approx(10 * scaled[0]["lr"])


def test_prior_trained_on_other_statistics_is_named(tmp_path, backbone, caplog):
    prior = _policy(backbone, "pi0", 1)
    prior.save_pretrained(tmp_path / "stage1")
    cfg = _config("pi0", 2)
    stats = cfg.fake_stats()
    stats["observation.state"] = {k: np.asarray(v) * 3.0 + 1.0 for k, v in stats["observation.state"].items()}
    fused = VLAPolicy.build(cfg, backbone, stats).eval()
    with caplog.at_level("WARNING", logger="vlm2vla.policies.policy"):
        record = fused.load_apt_prior(tmp_path / "stage1")
    assert record["renormalised"] and all("state" in k for k in record["renormalised"])
    assert "other normalisation statistics" in caplog.text
