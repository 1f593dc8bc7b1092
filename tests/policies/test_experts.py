"""The flow-matching action experts (pi0-style, GR00T-style) on the tiny VLM."""

from __future__ import annotations

import pytest
import torch

from vlm2vla.backbones import VLMBackbone, build_tiny_vlm
from vlm2vla.policies.action_head import BackboneDims, Prefix, build_head
from vlm2vla.policies.apt import vlm_layer_map
from vlm2vla.policies.configuration import Gr00tOptions, Pi0Options, VLAConfig
from vlm2vla.policies.flow_matching import euler_integrate, noisy_actions, sample_time, time_embedding
from vlm2vla.policies.gr00t_expert import Gr00tExpert
from vlm2vla.policies.pi0_expert import Pi0Expert
from vlm2vla.policies.policy import VLAPolicy

CORPUS = [f"pick up the {c} {o} and place it {w}" for c in ("red", "blue", "green")
          for o in ("cube", "ball", "block") for w in ("left", "right", "in the bin")] * 10
HEADS = ("pi0", "gr00t")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> VLMBackbone:
    folder = build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "vlm", CORPUS, vocab_size=512)
    return VLMBackbone.from_pretrained(str(folder))


def _config(head: str, **options) -> VLAConfig:
    pi0 = Pi0Options(num_layers=2, **options) if head == "pi0" else Pi0Options()
    gr00t = Gr00tOptions(num_layers=2, **options) if head == "gr00t" else Gr00tOptions()
    return VLAConfig(head=head, chunk_size=4, action_dim=4, state_dim=3, pi0=pi0, gr00t=gr00t)


def _head(backbone, head: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_head(_config(head, **options), BackboneDims.of(backbone)).eval()


def _prefix(backbone, tasks: list[str], seed: int = 0) -> Prefix:
    """The head's input for fake items of the config's shapes, built the way training builds it."""
    cfg = _config("pi0")
    policy = VLAPolicy.build(cfg, backbone, cfg.fake_stats())
    return policy.prefix(policy.collator()(cfg.fake_items(len(tasks), tasks=tasks, image_size=128, seed=seed)))


def _noise(batch_size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch_size, 4, 4, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ flow matching
def test_flow_matching_pieces():
    from vlm2vla.policies.configuration import FlowMatchingOptions

    t = sample_time(1000, FlowMatchingOptions(min_time=0.1))
    assert t.shape == (1000,) and 0.1 <= t.min() and t.max() <= 1
    actions, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    x_t, u = noisy_actions(actions, noise, torch.tensor([0.0, 1.0]))
    assert torch.equal(x_t[0], actions[0]) and torch.equal(x_t[1], noise[1]) and torch.equal(u, noise - actions)
    # the exact velocity of the straight path takes noise back to the actions in any number of steps
    assert torch.allclose(euler_integrate(lambda x, s: noise - actions, noise, 3), actions, atol=1e-5)
    emb = time_embedding(torch.tensor([0.0, 0.5]), 16)
    assert emb.shape == (2, 16) and torch.equal(emb[0, 8:], torch.ones(8))


def test_layer_map_and_sizes(backbone):
    assert vlm_layer_map(2, 4) == [0, 3] and vlm_layer_map(4, 4) == [0, 1, 2, 3] and vlm_layer_map(1, 30) == [29]
    dims = BackboneDims.of(backbone)
    pi0 = Pi0Expert(VLAConfig(head="pi0"), dims)
    assert pi0.width == 128 and len(pi0.layers) == dims.num_layers
    assert Gr00tExpert(VLAConfig(head="gr00t"), dims).width == 128


# ------------------------------------------------------------------------------------------ both experts
@pytest.mark.parametrize("head", HEADS)
def test_shapes_and_loss(backbone, head):
    expert = _head(backbone, head)
    prefix = _prefix(backbone, ["pick up the red cube", "place it left"])
    assert expert.predict(backbone, prefix).shape == (2, 4, 4)
    assert expert.predict(backbone, prefix, num_steps=2).shape == (2, 4, 4)
    loss, metrics = expert.loss(backbone, prefix, torch.randn(2, 4, 4), torch.zeros(2, 4, dtype=torch.bool))
    assert loss.ndim == 0 and torch.isfinite(loss) and set(metrics) == {"flow_mse"}


@pytest.mark.parametrize("head", HEADS)
def test_cached_prefix_matches_recomputed_prefix(backbone, head):
    expert = _head(backbone, head)
    _open_gates(expert)
    prefix = _prefix(backbone, ["pick up the red cube", "place the blue ball in the bin"])
    noise = _noise(2)
    cached = expert.predict(backbone, prefix, noise=noise, num_steps=4)
    fresh = expert.predict(backbone, prefix, noise=noise, num_steps=4, cache_prefix=False)
    assert torch.allclose(cached, fresh, atol=1e-5)
    assert not torch.allclose(cached, noise)  # the steps did move the sample


@pytest.mark.parametrize("head", HEADS)
def test_padding_does_not_change_a_rows_actions(backbone, head):
    expert = _head(backbone, head)
    _open_gates(expert)
    alone = _prefix(backbone, ["pick up the red cube"])
    both = _prefix(backbone, ["pick up the red cube", "place the green block in the bin on the right now"])
    both.state[0] = alone.state[0]
    assert both.batch["attention_mask"][0].sum() < both.batch["attention_mask"].shape[1]  # row 0 is padded
    noise = _noise(2)
    single = expert.predict(backbone, alone, noise=noise[:1])
    batched = expert.predict(backbone, both, noise=noise)
    assert torch.allclose(single[0], batched[0], atol=1e-4)


@pytest.mark.parametrize("head", HEADS)
def test_masked_language_is_invisible(backbone, head):
    """Perturbing the prefix at language positions changes nothing with mask_language, something without."""
    prefix = _prefix(backbone, ["pick up the red cube", "place it left"])
    noise = _noise(2)
    changed = {}
    for mask_language in (True, False):
        expert = _head(backbone, head, mask_language=mask_language)
        _open_gates(expert)
        clean = expert.predict(backbone, prefix, noise=noise)
        encode = expert.encode_prefix

        def perturbed(bb, pf, encode=encode):
            context = encode(bb, pf)
            lang = pf.language_mask
            if "kv" in context:  # pi0: keys/values [B, KV, L, hd] of every read layer
                context["kv"] = {i: tuple(x + 5 * lang[:, None, :, None] * torch.randn_like(x) for x in kv)
                                 for i, kv in context["kv"].items()}
            else:  # gr00t: projected features [B, L, w]
                context["features"] = context["features"] + 5 * lang[..., None] * torch.randn_like(
                    context["features"])
            return context

        expert.encode_prefix = perturbed
        changed[mask_language] = (expert.predict(backbone, prefix, noise=noise) - clean).abs().max().item()
    assert changed[True] < 1e-6 < 1e-3 < changed[False]


@pytest.mark.parametrize("head", HEADS)
def test_masked_expert_output_does_not_depend_on_the_instruction(backbone, head):
    """Another instruction (same token count, so positions match) leaves a masked expert's actions
    unchanged and changes an unmasked one's: nothing after the text (turn markers) leaks it either."""
    tasks = ["pick up the red cube", "pick up the green ball"]
    prefixes = [_prefix(backbone, [t, t]) for t in tasks]
    assert prefixes[0].batch["input_ids"].shape == prefixes[1].batch["input_ids"].shape
    noise = _noise(2)
    changed = {}
    for mask_language in (True, False):
        expert = _head(backbone, head, mask_language=mask_language)
        _open_gates(expert)
        a, b = (expert.predict(backbone, p, noise=noise) for p in prefixes)
        changed[mask_language] = (a - b).abs().max().item()
    assert changed[True] < 1e-5 < 1e-3 < changed[False]


@pytest.mark.parametrize("head", HEADS)
def test_loss_falls_on_a_fixed_batch(backbone, head):
    expert = _head(backbone, head).train()
    prefix = _prefix(backbone, ["pick up the red cube", "place it left"])
    actions = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(3))
    is_pad = torch.tensor([[False] * 4, [False, False, True, True]])
    frozen = [p.requires_grad_(False) for p in backbone.parameters()]
    # the backbone is frozen, so its output is the same every step: compute it once to keep the test fast
    with torch.no_grad():
        context = expert.encode_prefix(backbone, prefix)
    expert.encode_prefix = lambda *_: context
    try:
        optimizer = torch.optim.Adam(expert.parameters(), lr=3e-3)
        losses = []
        for _ in range(40):
            torch.manual_seed(0)  # the same noise and times each step: a fixed objective that must fall
            loss, _ = expert.loss(backbone, prefix, actions, is_pad)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, losses


@pytest.mark.parametrize("head", HEADS)
def test_gradients_reach_the_backbone(backbone, head):
    expert = _head(backbone, head).train()
    _open_gates(expert)
    prefix = _prefix(backbone, ["pick up the red cube"])
    backbone.zero_grad()
    loss, _ = expert.loss(backbone, prefix, torch.randn(1, 4, 4), torch.zeros(1, 4, dtype=torch.bool))
    loss.backward()
    layers = [p for n, p in backbone.model.named_parameters() if "text_model.layers" in n]
    assert layers and any(p.grad is not None and p.grad.abs().sum() > 0 for p in layers)
    backbone.zero_grad()


def test_padded_steps_carry_no_loss(backbone):
    expert = _head(backbone, "pi0")
    expert.velocity = lambda context, prefix, x_t, t: torch.zeros_like(x_t)  # loss = mean |noise - actions|^2
    prefix = _prefix(backbone, ["pick up the red cube"])
    actions = torch.randn(1, 4, 4)
    is_pad = torch.tensor([[False, False, True, True]])
    torch.manual_seed(5)
    a, _ = expert.loss(backbone, prefix, actions, is_pad)
    torch.manual_seed(5)
    b, _ = expert.loss(backbone, prefix, torch.cat([actions[:, :2], 100 + actions[:, 2:]], dim=1), is_pad)
    assert torch.allclose(a, b) and a < 100


def _open_gates(expert) -> None:
    """GR00T's AdaLN-zero blocks start as the identity (blind to the VLM); give them random modulation."""
    if isinstance(expert, Gr00tExpert):
        generator = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for block in expert.blocks:
                block.ada.weight.copy_(0.05 * torch.randn(block.ada.weight.shape, generator=generator))
                block.ada.bias.copy_(0.5 + 0.05 * torch.randn(block.ada.bias.shape, generator=generator))



def test_expert_rope_matches_the_vlms_cached_keys(backbone):
    """Rotating layer 0's keys with the expert's RoPE at positions 0..L-1 reproduces the VLM's cached keys."""
    from vlm2vla.policies.pi0_expert import _apply_rotary, rotary_tables

    prefix = _prefix(backbone, ["pick up the red cube", "place the blue ball in the bin"])
    batch = {k: v for k, v in prefix.batch.items() if k != "labels"}
    with torch.no_grad():
        out = backbone(batch, use_cache=True, output_hidden_states=True)
        layer = backbone.model.model.text_model.layers[0]
        dims = BackboneDims.of(backbone)
        b, length, _ = out.hidden_states[0].shape
        keys = layer.self_attn.k_proj(layer.input_layernorm(out.hidden_states[0]))
        keys = keys.view(b, length, dims.num_key_value_heads, dims.head_dim).transpose(1, 2)
        positions = torch.arange(length).expand(b, length)
        rotated = _apply_rotary(keys, *rotary_tables(backbone, positions, dims.head_dim))
    assert torch.allclose(rotated, out.past_key_values.layers[0].keys, atol=1e-5)


# ------------------------------------------------------------------------------------------ pi0 specifics
def test_training_time_follows_beta_1_5_1():
    from scipy import stats

    from vlm2vla.policies.configuration import FlowMatchingOptions

    options = FlowMatchingOptions()
    assert (options.time_alpha, options.time_beta) == (1.5, 1.0)  # pi0's choice
    torch.manual_seed(0)
    t = sample_time(20000, options).double()
    u = (t - options.min_time) / (1 - options.min_time)  # undo the squeeze into [min_time, 1]
    assert stats.kstest(u.numpy(), stats.beta(1.5, 1.0).cdf).pvalue > 0.01
    assert stats.kstest(u.numpy(), stats.uniform().cdf).pvalue < 1e-6  # and it is not uniform


def test_pi0_state_token_does_not_see_the_actions(backbone):
    expert = _head(backbone, "pi0")
    prefix = _prefix(backbone, ["pick up the red cube"])
    context = expert.encode_prefix(backbone, prefix)
    t = torch.tensor([0.5])

    def expert_tokens(x_t: torch.Tensor) -> torch.Tensor:  # [T, width] after every expert layer
        x = expert.tokens(prefix.state, x_t, t)
        mask = expert._attention_mask(context["keep"], x.shape[1])
        for layer in expert.layers:
            x = layer(x, context["kv"][layer.vlm_layer], context["rotary"], mask)
        return x[0]

    a = _noise(1, seed=1)
    b = a.clone()
    b[0, -1] += 3.0  # change only the last action of the chunk
    with torch.no_grad():
        out_a, out_b = expert_tokens(a), expert_tokens(b)
    assert torch.allclose(out_a[0], out_b[0], atol=1e-6)  # the state token is blind to every action
    assert not torch.allclose(out_a[1], out_b[1], atol=1e-4)  # the first action sees the last one


@pytest.mark.parametrize("head", HEADS)
def test_the_vlm_prefix_runs_once_per_observation(backbone, head, monkeypatch):
    expert = _head(backbone, head)
    prefix = _prefix(backbone, ["pick up the red cube"])
    calls = []
    original = expert.encode_prefix
    monkeypatch.setattr(expert, "encode_prefix", lambda *a, **k: calls.append(1) or original(*a, **k))
    expert.predict(backbone, prefix, noise=_noise(1), num_steps=10)
    assert len(calls) == 1  # ten Euler steps, one VLM forward
    expert.predict(backbone, prefix, noise=_noise(1), num_steps=10, cache_prefix=False)
    assert len(calls) == 11


@pytest.mark.parametrize("layout", ["plain", "no state", "language masked", "apt stage 2", "apt bypassed"])
def test_pi0_inference_steps_give_the_reference_samplers_actions(backbone, layout):
    """predict's hoisted steps (CachedSteps) vs Euler steps over `velocity`, the sampler they replace."""
    from dataclasses import replace

    from vlm2vla.policies.configuration import APTOptions

    cfg = _config("pi0", mask_language=layout == "language masked")
    if layout == "no state":
        cfg = replace(cfg, state_dim=0)
    if layout.startswith("apt"):
        cfg = replace(cfg, apt=APTOptions(stage=2, gate_init=0.3))
    torch.manual_seed(3)
    expert = build_head(cfg, BackboneDims.of(backbone)).eval()
    expert.bypass_inserted = layout == "apt bypassed"
    prefix = _prefix(backbone, ["pick up the red cube", "place the blue ball in the bin on the left", "go"])
    noise = _noise(3)
    with torch.no_grad():
        context = expert.encode_prefix(backbone, prefix)
        reference = euler_integrate(lambda x, t: expert.velocity(context, prefix, x, t), noise, 10)
        fast = expert.predict(backbone, prefix, noise=noise, num_steps=10)
    assert (fast - reference).abs().max() < 1e-5
    assert (fast - noise).abs().max() > 0.1  # the steps moved the sample


@pytest.fixture(scope="module", params=["idefics3", "qwen2_vl", "paligemma"])
def family_backbone(request, tmp_path_factory) -> VLMBackbone:
    """A tiny random VLM of each tested family: they number their prompt tokens differently."""
    from vlm2vla.backbones.random_models import build_family

    texts = ("open the drawer", "push the red button now, then pick up the red block on the left")
    folder = build_family(request.param, tmp_path_factory.mktemp(request.param), texts=texts, image_size=32,
                          vocab_size=300)
    return VLMBackbone.from_pretrained(str(folder))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("apt_stage", [0, 2], ids=["plain", "apt-stage2"])
def test_a_rows_actions_do_not_depend_on_the_padding_its_batch_adds(family_backbone, head, apt_stage):
    """The expert's tokens (and APT's fused keys) sit at the VLM's own positions: Qwen2-VL numbers only real
    tokens, so placing them after the padded length moved them by the padding a longer prompt added."""
    from dataclasses import replace

    from vlm2vla.policies.configuration import APTOptions

    cfg = replace(_config(head), max_prompt_length=160, apt=APTOptions(stage=apt_stage, gate_init=0.3))
    torch.manual_seed(0)
    policy = VLAPolicy.build(cfg, family_backbone, cfg.fake_stats()).eval()
    items = cfg.fake_items(2, tasks=["open the drawer", "push the red button now, then pick up the red block on "
                                     "the left"], image_size=32)
    noise = _noise(2)
    with torch.no_grad():
        batched = policy.head.predict(family_backbone, policy.prefix(policy.collator()(items)), noise=noise,
                                      num_steps=3)
        alone = policy.head.predict(family_backbone, policy.prefix(policy.collator()(items[:1])), noise=noise[:1],
                                    num_steps=3)
    assert (batched[:1] - alone).abs().max() < 1e-5
