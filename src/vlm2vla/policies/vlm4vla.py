"""VLM4VLA's action-query head: one learnable token after the prompt, an MLP on its last hidden state.

    [image tokens][instruction + template tokens][assistant prompt][Q]  --VLM-->  h_Q (last layer)
                                                                                    |
                                              normalised state (when state_dim > 0) -- concat
                                                                                    |
                                                     MLP (GELU) -> chunk_size * action_dim

Q is a learnable [1, D] embedding written into the single query slot the collator appends
(``num_queries = 1``); the VLM is causal, so Q sees every prompt token and no prompt token sees Q.
Concatenating the state to h_Q (instead of feeding it to the VLM as text) keeps the VLM's input
identical to a plain VQA prompt, which is what VLM4VLA compares VLMs on.

Loss: Huber on the arm dimensions; BCE-with-logits on the gripper dimensions with the target
"normalised action > 0". With min_max normalisation (the default) that is "above the dataset's
mid-range", i.e. closer to its max (e.g. closed) than its min (open). Prediction returns the
gripper as +1.0 / -1.0 in normalised units, which min_max unnormalisation maps to exactly the
dataset's max / min gripper command. Padded steps (``action_is_pad``) get no loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlm2vla.policies.action_head import ActionHead, BackboneDims, Prefix
from vlm2vla.policies.configuration import VLAConfig


class ActionQueryHead(ActionHead):
    """One action-query token + MLP decoder (VLM4VLA).

    Args:
        config: the policy config (chunk_size, action_dim, state_dim, gripper_dims, vlm4vla options).
        dims: the backbone's sizes (only hidden_size is used).
    """

    num_queries = 1

    def __init__(self, config: VLAConfig, dims: BackboneDims) -> None:
        super().__init__(config, dims)
        width = dims.hidden_size
        # Small init, like a freshly added token embedding, so the first forward passes stay in range.
        self.query = nn.Parameter(torch.randn(1, width) * 0.02)
        hidden = config.vlm4vla.mlp_hidden or width
        layers: list[nn.Module] = []
        size = width + config.state_dim
        for _ in range(config.vlm4vla.mlp_layers - 1):
            layers += [nn.Linear(size, hidden), nn.GELU()]
            size = hidden
        layers.append(nn.Linear(size, config.chunk_size * config.action_dim))
        self.decoder = nn.Sequential(*layers)
        self.register_buffer("arm_index", torch.tensor(config.arm_dims, dtype=torch.long), persistent=False)
        self.register_buffer("gripper_index", torch.tensor(config.gripper_dims, dtype=torch.long), persistent=False)

    def forward(self, backbone: Any, prefix: Prefix) -> torch.Tensor:
        """Raw head output [B, chunk_size, action_dim]: arm values and gripper logits (normalised units)."""
        hidden = backbone.hidden_states(prefix.batch, query_embeds=self.query)[-1]  # [B, L, D]
        mask = prefix.batch["query_mask"].to(hidden.device)
        h = hidden[mask].to(self.query.dtype)  # [B, D]: exactly one query slot per row
        if self.config.state_dim > 0:
            if prefix.state is None:
                raise ValueError(f"the policy config has state_dim={self.config.state_dim} but the prefix has no state")
            h = torch.cat([h, prefix.state.to(h.device, h.dtype)], dim=-1)
        return self.decoder(h).view(-1, self.config.chunk_size, self.config.action_dim)

    def loss(self, backbone: Any, prefix: Prefix, actions: torch.Tensor, action_is_pad: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Huber (arm) + weighted BCE (gripper), averaged over unpadded steps. See ActionHead.loss."""
        out = self(backbone, prefix)
        actions = actions.to(out.device, out.dtype)
        valid = (~action_is_pad.to(out.device)).unsqueeze(-1).to(out.dtype)  # [B, chunk, 1]
        parts: dict[str, torch.Tensor] = {}
        total = out.new_zeros(())
        if len(self.arm_index):
            arm = F.huber_loss(out[..., self.arm_index], actions[..., self.arm_index], reduction="none",
                               delta=self.config.vlm4vla.huber_delta)
            parts["arm"] = _masked_mean(arm, valid)
            total = total + parts["arm"]
        if len(self.gripper_index):
            target = (actions[..., self.gripper_index] > 0).to(out.dtype)
            grip = F.binary_cross_entropy_with_logits(out[..., self.gripper_index], target, reduction="none")
            parts["gripper"] = _masked_mean(grip, valid)
            total = total + self.config.vlm4vla.gripper_loss_weight * parts["gripper"]
        return total, {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def predict(self, backbone: Any, prefix: Prefix, *, noise: torch.Tensor | None = None,
                num_steps: int | None = None) -> torch.Tensor:
        """Normalised chunk: arm as regressed, gripper +1 / -1 by the logit's sign (noise/num_steps unused)."""
        out = self(backbone, prefix)
        if len(self.gripper_index):
            logits = out[..., self.gripper_index]
            out[..., self.gripper_index] = torch.where(logits > 0, 1.0, -1.0).to(out.dtype)
        return out


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [B, chunk, n] over steps where ``valid`` [B, chunk, 1] is 1."""
    count = valid.sum() * values.shape[-1]
    return (values * valid).sum() / count.clamp_min(1.0)
