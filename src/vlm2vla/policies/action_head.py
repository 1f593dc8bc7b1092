"""The contract between a VLA policy and its action head (the registry of heads is configuration.HEADS).

The policy (policy.py) turns observations into a `Prefix`: the backbone's collated prompt batch
(images + instruction, assistant prompt appended, `num_queries` query slots when the head asks for
them), a mask of the prompt's language tokens, and the normalised proprio state. A head gets the
backbone and that prefix and either returns a training loss or predicts a normalised action chunk.
Each head runs the backbone itself, because each reads it differently: the VLM4VLA head reads the
query slot's last hidden state, the pi0-style expert the per-layer keys/values, the GR00T-style expert
one layer's hidden states. Actions are normalised by the policy before `loss` and after `predict`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlm2vla.policies.configuration import HEADS, VLAConfig


@dataclass(frozen=True)
class BackboneDims:
    """Sizes of the backbone's language model a head builds itself around."""

    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    @classmethod
    def of(cls, backbone: Any) -> BackboneDims:
        """Read the sizes from a VLMBackbone's text config."""
        text = backbone.model.config.get_text_config()
        heads = int(text.num_attention_heads)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(hidden_size=int(text.hidden_size), num_layers=int(text.num_hidden_layers),
                   num_attention_heads=heads, num_key_value_heads=int(getattr(text, "num_key_value_heads", None)
                                                                      or heads),
                   head_dim=int(head_dim))


@dataclass
class Prefix:
    """One batch of observations, ready for the backbone.

    Attributes:
        batch: VLMBackbone.collate output for the prompts (left padded; `query_mask` when the head
            has query slots).
        language_mask: [B, L] bool, True at the instruction's text tokens (not image, padding or
            template tokens) — APT's stage 1 hides these from the expert.
        state: [B, state_dim] normalised proprio state, or None when the policy reads no state.
    """

    batch: dict[str, Any]
    language_mask: torch.Tensor
    state: torch.Tensor | None


class ActionHead(nn.Module, abc.ABC):
    """Maps (backbone, prefix) to normalised action chunks [B, chunk_size, action_dim]."""

    #: query slots the head needs appended after the prompt (VLM4VLA: 1)
    num_queries: int = 0

    def __init__(self, config: VLAConfig, dims: BackboneDims) -> None:
        super().__init__()
        self.config = config
        self.dims = dims

    @abc.abstractmethod
    def loss(self, backbone: Any, prefix: Prefix, actions: torch.Tensor, action_is_pad: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on a batch.

        Args:
            backbone: the VLMBackbone (trainable or frozen; gradients flow through it when it trains).
            prefix: the observations.
            actions: [B, chunk_size, action_dim] normalised target chunk.
            action_is_pad: [B, chunk_size] bool, True for steps past the episode end (no loss there).

        Returns:
            The scalar loss and detached per-part figures for logging (e.g. {"arm": .., "gripper": ..}).
        """

    @abc.abstractmethod
    def predict(self, backbone: Any, prefix: Prefix, *, noise: torch.Tensor | None = None,
                num_steps: int | None = None) -> torch.Tensor:
        """Normalised action chunk [B, chunk_size, action_dim] for each observation (no gradients needed).

        Args:
            backbone: the VLMBackbone.
            prefix: the observations.
            noise: flow-matching heads start from this [B, chunk_size, action_dim] sample (None = draw one).
            num_steps: flow-matching heads integrate with this many Euler steps (None = the config's).
        """

    def new_parameter_count(self) -> int:
        """Parameters the head adds to the backbone."""
        return sum(p.numel() for p in self.parameters())


def build_head(config: VLAConfig, dims: BackboneDims) -> ActionHead:
    """Build the head named by `config.head` (configuration.HEADS; only that head's module is imported)."""
    return HEADS.load(config.head)(config, dims)
