"""pi0-style action expert: a narrow transformer whose tokens attend to the VLM's keys/values, layer by layer.

    VLM layer m(j):  [ prefix K/V (cached, rotary-embedded by the VLM) ]
                                  |  joint attention (same head_dim, GQA)
    expert layer j:  [ state | a_1 + t ... a_T + t ] -> RMSNorm -> q,k,v -> attn -> o -> +res
                                                     -> RMSNorm -> SwiGLU -> +res
    output:          RMSNorm -> linear -> velocity [B, T, A]

Expert tokens sit where the VLM would put the next tokens: right after the row's last real position, in
the VLM's own numbering (recorded from its rotary embedding during the prefix forward: Idefics3 counts
padding, Qwen2-VL does not and numbers an image by its grid), so rotary offsets between an expert token
and the last prompt token do not depend on the padding a batch gives a row. Attention is block-causal as
in pi0: the state token sees the prefix and itself, action tokens see the prefix, the state and each
other. The prefix never sees the expert, so its keys/values are computed once per observation and reused
at every Euler step.

At inference (`predict`, through `step_velocity`) the Euler steps run `CachedSteps`, which does the work
that does not change between steps once per chunk; `velocity` stays the reference it must match (and
the training path).

Expert layer j reads VLM layer `vlm_layer_map(n, N)[j]`, evenly spaced over the VLM (first and last VLM
layer included). Under APT (`config.apt`, policies/apt.py) the stack follows `layer_plan`: stage-1
layers keep the VLM layer they read in stage 2, and each inserted layer reads its VLM layer's keys/values
gated with a projection of that layer's output hidden state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vlm2vla.policies.action_head import BackboneDims, Prefix
from vlm2vla.policies.apt import GatedFusion, layer_plan, zero_outputs
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.policies.flow_expert import FlowMatchingExpert, StateActionEncoder, SwiGLU, prefix_key_mask
from vlm2vla.policies.flow_matching import VelocityFn, time_embedding


def expert_width(width_ratio: float, hidden_size: int, multiple: int = 8) -> int:
    """round(width_ratio * D) to a multiple of `multiple` (at least `multiple`)."""
    return max(multiple, multiple * round(width_ratio * hidden_size / multiple))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's RoPE convention (halves rotated), cos/sin [B, T, head_dim], x [B, H, T, head_dim]."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


def text_rotary(backbone: Any) -> nn.Module | None:
    """The language model's `rotary_emb` module (it knows the checkpoint's RoPE type and scaling), or None."""
    modules = [(n, m) for n, m in backbone.model.named_modules() if n.split(".")[-1] == "rotary_emb"]
    text = [m for n, m in modules if "text" in n or "language" in n] or [m for _, m in modules]
    return text[0] if text else None


def rotary_tables(backbone: Any, positions: torch.Tensor, head_dim: int, module: nn.Module | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the VLM's own rotary embedding at `positions`, so expert and prefix keys agree.

    Uses `text_rotary`; falls back to standard RoPE with the text config's rope_theta when there is none.

    Args:
        backbone: the VLMBackbone.
        positions: [B, T] integer positions, or the [3, B, T] of a multimodal RoPE (Qwen2-VL's M-RoPE),
            as the VLM numbers its own tokens.
        head_dim: per-head width.
        module: `text_rotary(backbone)` when the caller has it already (it walks every module).

    Returns:
        cos, sin: [B, T, head_dim] float32.
    """
    if module is None:  # not `or`: a module's truth value is its length when it defines one
        module = text_rotary(backbone)
    if module is not None:
        probe = torch.zeros(1, device=positions.device, dtype=torch.float32)
        cos, sin = module(probe, positions)
        return cos.float(), sin.float()
    if positions.ndim == 3:
        positions = positions[0]
    config = backbone.model.config.get_text_config()
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or getattr(config, "rope_theta", 1e4)
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


class RecordedPositions:
    """Within `with`, records the position ids the VLM's text rotary embedding is first called with.

    The VLMs number their tokens differently: Idefics3 (Llama) counts every row 0..L-1, padding included;
    Qwen2-VL counts only real tokens, an image as max(h, w) steps, in three M-RoPE components; PaliGemma
    from the attention mask. The expert's tokens and APT's fused keys must sit where the VLM's next tokens
    would, so their offsets to the prefix keys do not depend on the padding a batch gives a row.
    """

    def __init__(self, backbone: Any) -> None:
        self.module = text_rotary(backbone)
        self.positions: torch.Tensor | None = None
        self._handle = None

    def _record(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.positions is None:
            positions = args[1] if len(args) > 1 else kwargs.get("position_ids")
            self.positions = positions.detach() if positions is not None else None

    def __enter__(self) -> RecordedPositions:
        if self.module is not None:
            self._handle = self.module.register_forward_pre_hook(self._record, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    def get(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """[B, L] (or [3, B, L]) positions of the prefix rows; 0..L-1 when none were recorded."""
        positions = self.positions
        if positions is None:
            return torch.arange(length, device=device).expand(batch, length)
        positions = positions.to(device)
        if positions.ndim == 3 and positions.shape[0] == 1:
            positions = positions[0]
        return positions.expand(*positions.shape[:-2], batch, length)


class Pi0ExpertLayer(nn.Module):
    """One expert layer: joint attention over [prefix K/V of `vlm_layer`; expert K/V], then a SwiGLU MLP."""

    def __init__(self, width: int, dims: BackboneDims, mlp_hidden: int, vlm_layer: int) -> None:
        super().__init__()
        self.vlm_layer = vlm_layer
        self.heads, self.kv_heads, self.head_dim = dims.num_attention_heads, dims.num_key_value_heads, dims.head_dim
        self.attn_norm = nn.RMSNorm(width, eps=1e-6)
        self.q = nn.Linear(width, self.heads * self.head_dim, bias=False)
        self.k = nn.Linear(width, self.kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(width, self.kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(self.heads * self.head_dim, width, bias=False)
        self.mlp_norm = nn.RMSNorm(width, eps=1e-6)
        self.mlp = SwiGLU(width, mlp_hidden)

    def forward(self, x: torch.Tensor, prefix_kv: tuple[torch.Tensor, torch.Tensor],
                rotary: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Update the expert tokens.

        Args:
            x: [B, T, w] expert tokens.
            prefix_kv: keys, values [B, KV, L, head_dim] of the VLM layer this layer reads.
            rotary: cos, sin [B, T, head_dim] at the expert tokens' positions.
            mask: [B, 1, T, L + T] bool, True where a query may attend.

        Returns:
            [B, T, w].
        """
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)
        k = torch.cat([prefix_kv[0].to(k.dtype), k], dim=2)
        v = torch.cat([prefix_kv[1].to(v.dtype), v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        x = x + self.o(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
        return x + self.mlp(self.mlp_norm(x))


class Pi0Expert(FlowMatchingExpert):
    """pi0-style action expert (see the module docstring); width round(width_ratio * D) to a multiple of 8."""

    stack_name = "layers"

    def __init__(self, config: VLAConfig, dims: BackboneDims) -> None:
        super().__init__(config, dims)
        options, apt = config.pi0, config.apt
        self.width = expert_width(options.width_ratio, dims.hidden_size)
        self.mask_language = options.mask_language or apt.stage == 1
        self.plan = layer_plan(apt.stage, options.num_layers or dims.num_layers, dims.num_layers)
        mlp_hidden = int(round(options.mlp_ratio * self.width))
        self.tokens = StateActionEncoder(config.state_dim, config.action_dim, self.width)
        self.layers = nn.ModuleList(Pi0ExpertLayer(self.width, dims, mlp_hidden, slot.vlm_layer) for slot in self.plan)
        self.norm = nn.RMSNorm(self.width, eps=1e-6)
        self.action_out = nn.Linear(self.width, config.action_dim)
        inserted = [pos for pos, _ in self.inserted_slots]
        # APT stage 2: the inserted layers read keys/values mixed, per K/V channel, with a projection of
        # the VLM's hidden state (one gate for keys and values)
        self.fusion = GatedFusion(len(inserted), dims.hidden_size, dims.num_key_value_heads * dims.head_dim,
                                  apt.gate_init, parts=2) if inserted else None
        if apt.zero_init_inserted:
            for pos in inserted:
                zero_outputs(self.layers[pos], ("o", "mlp.down"))

    @property
    def default_num_steps(self) -> int:
        """options.num_steps (pi0: 10)."""
        return self.config.pi0.num_steps

    def encode_prefix(self, backbone: Any, prefix: Prefix) -> dict[str, Any]:
        """One VLM forward with use_cache=True (and its hidden states when inserted layers fuse them).

        Returns:
            {"kv": {vlm layer: (keys, values) [B, KV, L, head_dim]}, "fused": {stack position: (keys,
            values)} of the inserted layers, "keep": [B, L] bool visible prefix tokens, "rotary": (cos,
            sin) [B, T, head_dim] at the expert tokens' positions}.
        """
        batch = {k: v for k, v in prefix.batch.items() if k != "labels"}
        with RecordedPositions(backbone) as recorded:
            out = backbone(batch, use_cache=True, output_hidden_states=self.fusion is not None)
        cache = out.past_key_values
        wanted = {slot.vlm_layer for slot in self.plan if not slot.inserted}
        kv = {i: (cache.layers[i].keys, cache.layers[i].values) for i in wanted}
        device = self._device()
        keep = prefix_key_mask(prefix, self.mask_language, device)
        b, length = keep.shape
        prefix_positions = recorded.get(b, length, device)
        n = self.tokens.num_state_tokens + self.config.chunk_size
        start = self._start_positions(prefix, prefix_positions, device)
        positions = start[:, None] + torch.arange(n, device=device)
        fused = self._fuse(backbone, cache, out.hidden_states, prefix_positions, recorded.module) \
            if self.fusion is not None else {}
        rotary = rotary_tables(backbone, positions, self.dims.head_dim, recorded.module)
        return {"kv": kv, "fused": fused, "keep": keep, "rotary": rotary}

    def _start_positions(self, prefix: Prefix, prefix_positions: torch.Tensor, device: torch.device) -> torch.Tensor:
        """[B] position of each row's first expert token, in the VLM's numbering (`RecordedPositions`).

        pi0's layout: right after the prompt (the row's last real position + 1; L for a VLM that numbers
        rows 0..L-1). Under APT (both stages) the expert tokens sit max_prompt_length positions after the
        instruction's first token instead: then in stage 1, with the instruction hidden, their rotary
        offsets to the image tokens do not tell the instruction's length (nor the padding it causes in a
        batch), and stage 2 keeps the offsets stage 1 learnt.
        """
        per_token = prefix_positions.amax(dim=0) if prefix_positions.ndim == 3 else prefix_positions  # [B, L]
        real = prefix.batch["attention_mask"].to(device).bool()
        start = per_token.masked_fill(~real, torch.iinfo(per_token.dtype).min).amax(dim=1) + 1
        if not self.config.apt.stage:
            return start
        language = prefix.language_mask.to(device).bool()
        first = per_token.gather(1, language.int().argmax(dim=1, keepdim=True))[:, 0]
        anchor = torch.where(language.any(dim=1), first, start)
        return anchor + self.config.max_prompt_length

    def _fuse(self, backbone: Any, cache: Any, hidden: tuple[torch.Tensor, ...], prefix_positions: torch.Tensor,
              rotary: nn.Module | None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Keys/values of each inserted layer: g * (VLM K/V) + (1 - g) * projected hidden state.

        The projected keys are rotated at the positions the VLM gave the prefix rows before mixing, so both
        parts carry the key's position.
        """
        kv_heads, head_dim = self.dims.num_key_value_heads, self.dims.head_dim
        b, length = hidden[0].shape[:2]
        cos, sin = rotary_tables(backbone, prefix_positions.to(hidden[0].device), head_dim, rotary)
        fused = {}
        for k, (pos, slot) in enumerate(self.inserted_slots):
            layer = cache.layers[slot.vlm_layer]
            projected = self.fusion.project(k, hidden[slot.vlm_layer + 1])  # [B, L, 2 * KV * hd]
            pk, pv = projected.view(b, length, 2, kv_heads, head_dim).permute(2, 0, 3, 1, 4)
            pk = _apply_rotary(pk, cos.to(pk.dtype), sin.to(pk.dtype))
            g = self.fusion.gate(k).view(kv_heads, 1, head_dim)
            fused[pos] = (g * layer.keys.to(g.dtype) + (1 - g) * pk, g * layer.values.to(g.dtype) + (1 - g) * pv)
        return fused

    def _attention_mask(self, keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """[B, 1, T, L + T] bool: visible prefix tokens, then pi0's block-causal pattern among expert tokens."""
        b = keep.shape[0]
        expert = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=keep.device)
        if self.tokens.num_state_tokens:
            expert[0, 1:] = False  # the state token does not see the (noisy) actions
        prefix = keep[:, None, None, :].expand(b, 1, num_tokens, keep.shape[1])
        return torch.cat([prefix, expert.expand(b, 1, num_tokens, num_tokens)], dim=-1)

    def step_velocity(self, context: dict[str, Any], prefix: Prefix) -> VelocityFn:
        """`predict`'s Euler steps run `CachedSteps` (same actions as stepping `velocity`, to float rounding;
        tested to 1e-5)."""
        return CachedSteps(self, context, prefix).velocity

    def velocity(self, context: dict[str, Any], prefix: Prefix, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted velocity [B, T, A] of x_t [B, T, A] at times t [B], from the cached prefix K/V."""
        x = self.tokens(prefix.state, x_t, t)
        mask = self._attention_mask(context["keep"], x.shape[1])
        for pos, (slot, layer) in enumerate(zip(self.plan, self.layers, strict=True)):
            if slot.inserted and self.bypass_inserted:
                continue
            kv = context["fused"][pos] if slot.inserted else context["kv"][slot.vlm_layer]
            x = layer(x, kv, context["rotary"], mask)
        return self.action_out(self.norm(x))[:, self.tokens.num_state_tokens:]


class CachedSteps:
    """`Pi0Expert.velocity` for one chunk, with what every Euler step shares done once.

    pi0 at inference pays eager per-op overhead at every step, in every layer, on tiny matrices: at batch 1
    on the tiny default a 10-step chunk cost 2.9x the VLM prefix forward. Hoisted out of the steps here:
    the block-causal mask (as the additive float mask SDPA would build from the boolean one at every
    call), the rotary tables, the prefix keys/values (copied once into buffers the expert's own keys/values
    are written after, instead of concatenated anew), the weights fused per layer (q|k|v in one matmul,
    gate|up in one; queries and keys are rotated together), and the state token: it sees only the prefix
    and itself, so its path through every layer is the same at every step; it runs once here, leaves its
    keys/values in the buffers, and each step carries the action tokens alone. Same arithmetic as
    `velocity` up to the rounding of the fused matmuls.

    Measured (benchmarks/bench_policy.py, tiny default, 2 threads, batch 1): 3.11x -> 2.78x the prefix
    forward. The <= 1.5x target is not reached on a 2-core CPU: the expert's matmuls alone would allow
    1.28x (bench_policy's `floor`), but the ~25 other small ops per layer and step cost ~2 ms of eager
    dispatch per step.
    """

    def __init__(self, expert: Pi0Expert, context: dict[str, Any], prefix: Prefix) -> None:
        self.expert = expert
        tokens = expert.tokens
        dims = expert.dims
        self.heads, self.kv_heads, self.head_dim = dims.num_attention_heads, dims.num_key_value_heads, dims.head_dim
        s = self.num_state = tokens.num_state_tokens
        n = s + expert.config.chunk_size
        dtype = tokens.action_in.weight.dtype
        visible = expert._attention_mask(context["keep"], n)
        mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, float("-inf"))
        cos, sin = context["rotary"]
        cos, sin = cos[:, :, None].to(dtype), sin[:, :, None].to(dtype)  # [B, n, 1, head_dim]
        self.layers = []
        for pos, (slot, layer) in enumerate(zip(expert.plan, expert.layers, strict=True)):
            if slot.inserted and expert.bypass_inserted:
                continue
            keys, values = context["fused"][pos] if slot.inserted else context["kv"][slot.vlm_layer]
            b, kv, length, hd = keys.shape
            k_buffer = torch.empty(b, kv, length + n, hd, dtype=dtype, device=keys.device)
            v_buffer = torch.empty_like(k_buffer)
            k_buffer[:, :, :length] = keys
            v_buffer[:, :, :length] = values
            self.layers.append({
                "layer": layer, "k": k_buffer, "v": v_buffer, "start": length + s,
                "qkv": torch.cat([layer.q.weight, layer.k.weight, layer.v.weight]),
                "gate_up": torch.cat([layer.mlp.gate.weight, layer.mlp.up.weight]),
            })
        if s:
            x = tokens.state_in(prefix.state.to(dtype))[:, None]
            for cached in self.layers:
                length = cached["start"] - s
                # the state rows see the prefix and themselves: the buffers up to them, nothing after
                x = self._layer(cached, x, cos[:, :s], sin[:, :s], mask[:, :, :s, :length + s], length,
                                cached["k"][:, :, :length + s], cached["v"][:, :, :length + s])
        self.cos, self.sin, self.mask = cos[:, s:], sin[:, s:], mask[:, :, s:]

    def _layer(self, cached: dict[str, Any], x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               mask: torch.Tensor, at: int, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """One expert layer over the rows x [B, t, w]: their keys/values go into the buffers at `at`, then
        they attend to `keys`/`values` (views of the buffers) under `mask`."""
        layer = cached["layer"]
        b, t, _ = x.shape
        heads, kv, hd = self.heads, self.kv_heads, self.head_dim
        width_qk = (heads + kv) * hd
        projected = F.linear(layer.attn_norm(x), cached["qkv"])
        qk = projected[..., :width_qk].view(b, t, heads + kv, hd)
        qk = torch.addcmul(qk * cos, _rotate_half(qk), sin)
        cached["k"][:, :, at:at + t] = qk[:, :, heads:].transpose(1, 2)
        cached["v"][:, :, at:at + t] = projected[..., width_qk:].view(b, t, kv, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(qk[:, :, :heads].transpose(1, 2), keys, values, attn_mask=mask,
                                             enable_gqa=heads != kv)
        x = x + layer.o(out.transpose(1, 2).reshape(b, t, heads * hd))
        gate, up = F.linear(layer.mlp_norm(x), cached["gate_up"]).chunk(2, dim=-1)
        return x + layer.mlp.down(F.silu(gate) * up)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted velocity [B, T, A] of x_t [B, T, A] at times t [B] (what `Pi0Expert.velocity` returns)."""
        tokens = self.expert.tokens
        actions = tokens.action_in(x_t)
        times = time_embedding(t, tokens.width).to(actions.dtype)[:, None].expand_as(actions)
        x = tokens.fuse(torch.cat([actions, times], dim=-1))
        for cached in self.layers:
            x = self._layer(cached, x, self.cos, self.sin, self.mask, cached["start"], cached["k"], cached["v"])
        return self.expert.action_out(self.expert.norm(x))
