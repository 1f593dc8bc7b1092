"""What the flow-matching action experts (pi0-style, GR00T-style) share.

A `FlowMatchingExpert` splits its work in two, so the prefix is computed once per observation:

    context = expert.encode_prefix(backbone, prefix)        # one VLM forward (K/V or features)
    v = expert.velocity(context, prefix, x_t, t)             # cheap, once per Euler step

`loss` and `predict` are written once here on top of those two methods. The module also holds the
small building blocks both experts use: the state/action-time token encoder, a SwiGLU MLP and the
mask of prefix tokens an expert may look at.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vlm2vla.policies.action_head import ActionHead, Prefix
from vlm2vla.policies.apt import LayerSlot, load_prior
from vlm2vla.policies.flow_matching import VelocityFn, euler_integrate, noisy_actions, sample_time, time_embedding


def prefix_key_mask(prefix: Prefix, mask_language: bool, device: torch.device) -> torch.Tensor:
    """Prefix tokens the expert may attend to: real (not padding) and, under APT stage 1, none that has
    seen the instruction.

    In a causal VLM every token after the instruction's first token has read it (the turn markers and
    generation prompt that follow the text carry it in their hidden states), so hiding the text tokens
    alone would leak the instruction: everything from the first language token on is hidden. The
    image tokens come before the text in our prompts, so they stay visible. (A prefix-LM backbone
    such as PaliGemma lets image tokens read the text too; there this mask hides only the text side.)

    Args:
        prefix: the observations (left-padded batch with its attention_mask, and the language mask).
        mask_language: hide the instruction and every token after it.
        device: where the mask is needed.

    Returns:
        [B, L] bool, True where the expert may look.
    """
    keep = prefix.batch["attention_mask"].to(device).bool()
    if mask_language:
        seen_language = prefix.language_mask.to(device).bool().cumsum(dim=1) > 0
        keep = keep & ~seen_language
    return keep


class SwiGLU(nn.Module):
    """Gated MLP of Llama-style models: down(silu(gate(x)) * up(x))."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., width] -> [..., width]."""
        return self.down(F.silu(self.gate(x)) * self.up(x))


class StateActionEncoder(nn.Module):
    """Expert input tokens: one state token (when state_dim > 0) then one token per chunk step.

    Action tokens carry the flow time as in pi0: concat(linear(action), sinusoid(t)) -> MLP, so the
    time reaches every token without an extra token.
    """

    def __init__(self, state_dim: int, action_dim: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.state_in = nn.Linear(state_dim, width) if state_dim > 0 else None
        self.action_in = nn.Linear(action_dim, width)
        self.fuse = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))

    @property
    def num_state_tokens(self) -> int:
        """1 when a state token leads the sequence, else 0."""
        return int(self.state_in is not None)

    def forward(self, state: torch.Tensor | None, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Embed the tokens.

        Args:
            state: [B, S] normalised state (ignored when state_dim == 0).
            x_t: [B, T, A] noisy action chunk.
            t: [B] flow times.

        Returns:
            [B, num_state_tokens + T, width].
        """
        actions = self.action_in(x_t)
        times = time_embedding(t, self.width).to(actions.dtype)[:, None].expand_as(actions)
        tokens = self.fuse(torch.cat([actions, times], dim=-1))
        if self.state_in is None:
            return tokens
        if state is None:
            raise ValueError("this expert was built with state_dim > 0 but the prefix has no state")
        return torch.cat([self.state_in(state.to(tokens.dtype))[:, None], tokens], dim=1)


class FlowMatchingExpert(ActionHead):
    """An action head trained by flow matching; subclasses define `encode_prefix` and `velocity`.

    Subclasses build their layer stack from `apt.layer_plan` (stored as `plan`) in a ModuleList named
    `stack_name`, so APT's stage-1 weights can be moved into a stage-2 expert (`load_prior`).
    """

    num_queries = 0
    stack_name = "layers"
    plan: list[LayerSlot]
    # Skip APT's inserted layers in `velocity` (a diagnostic: what the stage-1 layers alone predict).
    bypass_inserted = False

    @property
    @abc.abstractmethod
    def default_num_steps(self) -> int:
        """Euler steps used by `predict` when none are given."""

    @abc.abstractmethod
    def encode_prefix(self, backbone: Any, prefix: Prefix) -> Any:
        """Run the backbone once and keep what `velocity` needs (with gradients when the backbone trains)."""

    @abc.abstractmethod
    def velocity(self, context: Any, prefix: Prefix, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted velocity [B, T, A] of the noisy chunk x_t [B, T, A] at times t [B]."""

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def inserted_slots(self) -> list[tuple[int, LayerSlot]]:
        """(stack position, slot) of APT's inserted layers, in order: the k-th reads fusion gate k."""
        return [(pos, slot) for pos, slot in enumerate(self.plan) if slot.inserted]

    def load_prior(self, prior_state: dict[str, torch.Tensor], source: str) -> list[str]:
        """Load an APT stage-1 expert's weights into this stage-2 expert (see `apt.load_prior`).

        Returns:
            The parameters left freshly initialised (the inserted layers and the fusion).
        """
        return load_prior(self, self.stack_name, prior_state, source)

    def loss(self, backbone: Any, prefix: Prefix, actions: torch.Tensor, action_is_pad: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow-matching MSE between predicted and target velocity, averaged over non-padded steps.

        Args:
            backbone: the VLMBackbone (gradients reach it unless it is frozen).
            prefix: the observations.
            actions: [B, T, A] normalised target chunk.
            action_is_pad: [B, T] bool, True past the episode end.

        Returns:
            The loss and {"flow_mse": detached loss}.
        """
        device = self._device()
        actions = actions.to(device, torch.float32)
        context = self.encode_prefix(backbone, prefix)
        t = sample_time(actions.shape[0], self.config.flow, device)
        noise = torch.randn_like(actions)
        x_t, target = noisy_actions(actions, noise, t)
        error = (self.velocity(context, prefix, x_t, t) - target).pow(2).mean(dim=-1)  # [B, T]
        keep = (~action_is_pad.to(device).bool()).to(error.dtype)
        loss = (error * keep).sum() / keep.sum().clamp(min=1.0)
        return loss, {"flow_mse": loss.detach()}

    @torch.no_grad()
    def predict(self, backbone: Any, prefix: Prefix, *, noise: torch.Tensor | None = None,
                num_steps: int | None = None, cache_prefix: bool = True) -> torch.Tensor:
        """Sample a chunk by Euler integration from noise (t = 1) to actions (t = 0).

        Args:
            backbone: the VLMBackbone.
            prefix: the observations.
            noise: [B, T, A] starting sample (None = standard normal).
            num_steps: Euler steps (None = the options' num_steps).
            cache_prefix: run the backbone once and reuse its output at every step (True), or run it
                again at every step (False: the slow reference the cache must match).

        Returns:
            [B, chunk_size, action_dim] normalised actions.
        """
        device = self._device()
        batch_size = prefix.batch["attention_mask"].shape[0]
        if noise is None:
            noise = torch.randn(batch_size, self.config.chunk_size, self.config.action_dim, device=device)
        if cache_prefix:
            velocity = self.step_velocity(self.encode_prefix(backbone, prefix), prefix)
        else:
            def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.velocity(self.encode_prefix(backbone, prefix), prefix, x, t)

        return euler_integrate(velocity, noise.to(device, torch.float32), num_steps or self.default_num_steps)

    def step_velocity(self, context: Any, prefix: Prefix) -> VelocityFn:
        """The velocity `predict` steps with, for one encoded prefix: `velocity` itself here; an expert may
        return a faster function with the same outputs (pi0: `CachedSteps`)."""
        return lambda x, t: self.velocity(context, prefix, x, t)
