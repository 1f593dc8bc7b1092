"""GR00T-style action expert: a DiT over state/action tokens that cross-attends to one layer of VLM features.

    VLM hidden state [B, L, D] at options.feature_layer -> LayerNorm -> Linear -> features [B, L, w]
    tokens [state | a_1 + t ... a_T + t] + learned positions -> DiT blocks -> AdaLN -> linear -> velocity

    DiT block (c = MLP(sinusoid(t)), AdaLN-zero: shift/scale/gate from SiLU(c) -> Linear, zero-initialised):
        x += gate1 * SelfAttn(modulate(LN(x)))                  bidirectional among expert tokens
        x += gate2 * CrossAttn(modulate(LN(x)), features)       padding (and language under APT) hidden
        x += gate3 * MLP(modulate(LN(x)))

Zero-initialised gates make every block start as the identity (DiT's AdaLN-zero), so at initialisation
the output does not depend on the VLM yet and no gradient reaches the backbone; that changes after the
first optimiser step opens the gates. The features do not depend on the flow time, so `predict` computes
them once per observation. Under APT (`config.apt`, policies/apt.py) the blocks follow `layer_plan`; an
inserted block cross-attends to g * features + (1 - g) * proj(the VLM hidden state at its own depth).
Inserted blocks start as the identity (AdaLN-zero), so a stage-2 expert starts as its stage-1 prior.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vlm2vla.policies.action_head import BackboneDims, Prefix
from vlm2vla.policies.apt import GatedFusion, layer_plan, zero_outputs
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.policies.flow_expert import FlowMatchingExpert, StateActionEncoder, prefix_key_mask
from vlm2vla.policies.flow_matching import time_embedding


def dit_width(width: int, hidden_size: int, num_heads: int) -> int:
    """The configured width, or half the VLM width rounded up to a multiple of num_heads."""
    if width:
        return width
    return num_heads * -(-(hidden_size // 2) // num_heads)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, T, w] * (1 + scale) + shift, with shift/scale [B, w] broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention of queries x over a context (itself for self-attention), via SDPA."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, w], context [B, S, w], mask [B, S] bool (True = visible) -> [B, T, w]."""
        b, t, w = x.shape
        heads = self.num_heads
        q = self.q(x).view(b, t, heads, w // heads).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, heads, w // heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(out.transpose(1, 2).reshape(b, t, w))


class DiTBlock(nn.Module):
    """Self-attention, cross-attention to VLM features and an MLP, each AdaLN-zero modulated by the time."""

    def __init__(self, width: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) for _ in range(3))
        self.self_attn = Attention(width, num_heads)
        self.cross_attn = Attention(width, num_heads)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_hidden, width))
        self.ada = nn.Linear(width, 9 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, features: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x [B, T, w], cond [B, w], features [B, L, w], keep [B, L] bool -> [B, T, w]."""
        mods = self.ada(F.silu(cond)).chunk(9, dim=-1)
        h = _modulate(self.norms[0](x), mods[0], mods[1])
        x = x + mods[2][:, None] * self.self_attn(h, h)
        h = _modulate(self.norms[1](x), mods[3], mods[4])
        x = x + mods[5][:, None] * self.cross_attn(h, features, keep)
        h = _modulate(self.norms[2](x), mods[6], mods[7])
        return x + mods[8][:, None] * self.mlp(h)


class Gr00tExpert(FlowMatchingExpert):
    """GR00T-style action expert (see the module docstring)."""

    stack_name = "blocks"

    def __init__(self, config: VLAConfig, dims: BackboneDims) -> None:
        super().__init__(config, dims)
        options, apt = config.gr00t, config.apt
        self.width = width = dit_width(options.width, dims.hidden_size, options.num_heads)
        self.mask_language = options.mask_language or apt.stage == 1
        self.plan = layer_plan(apt.stage, options.num_layers, dims.num_layers)
        self.feature_layer = options.feature_layer
        self.feature_proj = nn.Sequential(nn.LayerNorm(dims.hidden_size), nn.Linear(dims.hidden_size, width))
        self.tokens = StateActionEncoder(config.state_dim, config.action_dim, width)
        self.positions = nn.Parameter(torch.randn(self.tokens.num_state_tokens + config.chunk_size, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        mlp_hidden = int(round(options.mlp_ratio * width))
        self.blocks = nn.ModuleList(DiTBlock(width, options.num_heads, mlp_hidden) for _ in self.plan)
        inserted = sum(slot.inserted for slot in self.plan)
        self.fusion = GatedFusion(inserted, dims.hidden_size, width, apt.gate_init) if inserted else None
        if apt.zero_init_inserted:  # AdaLN-zero already starts every block as the identity; said explicitly here
            for slot, block in zip(self.plan, self.blocks, strict=True):
                if slot.inserted:
                    zero_outputs(block, ("ada",))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.final_ada.weight)
        nn.init.zeros_(self.final_ada.bias)
        self.action_out = nn.Linear(width, config.action_dim)

    @property
    def default_num_steps(self) -> int:
        """options.num_steps (GR00T N1: 4)."""
        return self.config.gr00t.num_steps

    def encode_prefix(self, backbone: Any, prefix: Prefix) -> dict[str, Any]:
        """One VLM forward; project the chosen layer's hidden states (and fuse the inserted blocks' streams).

        Returns:
            {"features": [B, L, w], "fused": {stack position: [B, L, w]} of the inserted blocks, "keep":
            [B, L] bool visible prefix tokens}.
        """
        hidden = backbone.hidden_states(prefix.batch)
        device = self._device()
        features = self.feature_proj(hidden[self.feature_layer].to(device, self.positions.dtype))
        fused = {}
        for k, (pos, slot) in enumerate(self.inserted_slots):
            fused[pos] = self.fusion(k, features, hidden[slot.vlm_layer + 1].to(device))
        return {"features": features, "fused": fused, "keep": prefix_key_mask(prefix, self.mask_language, device)}

    def velocity(self, context: dict[str, torch.Tensor], prefix: Prefix, x_t: torch.Tensor, t: torch.Tensor
                 ) -> torch.Tensor:
        """Predicted velocity [B, T, A] of x_t [B, T, A] at times t [B], from the projected VLM features."""
        x = self.tokens(prefix.state, x_t, t) + self.positions
        cond = self.time_mlp(time_embedding(t, self.width).to(x.dtype))
        for pos, (slot, block) in enumerate(zip(self.plan, self.blocks, strict=True)):
            if slot.inserted and self.bypass_inserted:
                continue
            features = context["fused"][pos] if slot.inserted else context["features"]
            x = block(x, cond, features, context["keep"])
        shift, scale = self.final_ada(F.silu(cond)).chunk(2, dim=-1)
        x = _modulate(self.final_norm(x), shift, scale)
        return self.action_out(x)[:, self.tokens.num_state_tokens:]
