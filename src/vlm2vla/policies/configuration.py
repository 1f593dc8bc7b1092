"""Typed configuration of a VLA policy: the shared fields and one options block per head type.

A policy is a VLM backbone plus one action head:

    head=vlm4vla   one learnable action-query token after the prompt; its last hidden state goes
                   through a small MLP to an action chunk (VLM4VLA). Huber on the arm, BCE on the gripper.
    head=pi0       a smaller transformer whose tokens (state, noisy action chunk, flow time) attend to
                   the VLM's per-layer keys/values; flow matching (pi0).
    head=gr00t     DiT blocks with adaptive-norm time conditioning that cross-attend to the VLM's
                   hidden states at one layer; flow matching (GR00T N1).

Either expert can take APT's two-stage layout (`apt.stage`, see APTOptions and policies/apt.py).

The config is saved next to the weights (policy_config.json) so a checkpoint rebuilds itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm2vla.config import check_choices, choice
from vlm2vla.registry import Registry

# Head type -> its ActionHead class, imported when a policy with that head is built. A new head is its
# module plus one line here (and an options block below if it has options).
HEADS = Registry("action head")
HEADS.register("vlm4vla", "vlm2vla.policies.vlm4vla:ActionQueryHead")
HEADS.register("pi0", "vlm2vla.policies.pi0_expert:Pi0Expert")
HEADS.register("gr00t", "vlm2vla.policies.gr00t_expert:Gr00tExpert")
HEAD_TYPES = tuple(HEADS.names())
NORMALIZATION_MODES = ("mean_std", "min_max", "quantile", "identity")


@dataclass(frozen=True)
class VLM4VLAOptions:
    """The VLM4VLA action-query head."""

    # hidden width of the MLP decoder (0 = the backbone's hidden size)
    mlp_hidden: int = 0
    # layers of the MLP decoder (>= 1; 1 = a single linear map)
    mlp_layers: int = 2
    # Huber loss threshold on the (normalised) arm actions
    huber_delta: float = 1.0
    # weight of the gripper BCE relative to the arm Huber loss
    gripper_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mlp_layers < 1 or self.mlp_hidden < 0:
            raise ValueError("vlm4vla.mlp_layers must be >= 1 and vlm4vla.mlp_hidden >= 0")
        if self.huber_delta <= 0 or self.gripper_loss_weight < 0:
            raise ValueError("vlm4vla.huber_delta must be > 0 and vlm4vla.gripper_loss_weight >= 0")


@dataclass(frozen=True)
class FlowMatchingOptions:
    """Flow matching shared by the action experts (pi0's convention: t=1 is noise, t=0 is data)."""

    # alpha of the Beta(alpha, beta) distribution of the training time t (pi0: Beta(1.5, 1), more weight on noisy t)
    time_alpha: float = 1.5
    # beta of that distribution
    time_beta: float = 1.0
    # t is squeezed into [min_time, 1] so the target velocity stays defined
    min_time: float = 0.001

    def __post_init__(self) -> None:
        if self.time_alpha <= 0 or self.time_beta <= 0 or not 0 <= self.min_time < 1:
            raise ValueError("flow.time_alpha/time_beta must be > 0 and flow.min_time in [0, 1)")


@dataclass(frozen=True)
class Pi0Options:
    """The pi0-style action expert: its tokens attend to the VLM's keys/values layer by layer."""

    # expert width as a fraction of the VLM's hidden size (pi0: 1024 / 2048 = 0.5)
    width_ratio: float = 0.5
    # expert layers (0 = as many as the VLM); each reads the keys/values of an evenly spaced VLM layer
    num_layers: int = 0
    # MLP width as a multiple of the expert width
    mlp_ratio: float = 4.0
    # Euler steps at inference
    num_steps: int = 10
    # hide the prompt's language tokens from the expert (APT stage 1: language-agnostic prior)
    mask_language: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.width_ratio <= 4 or self.num_layers < 0 or self.mlp_ratio <= 0 or self.num_steps < 1:
            raise ValueError("pi0: width_ratio in (0, 4], num_layers >= 0, mlp_ratio > 0, num_steps >= 1")


@dataclass(frozen=True)
class Gr00tOptions:
    """The GR00T-style action expert: a DiT cross-attending to VLM features of one layer."""

    # DiT width (0 = half the VLM's hidden size)
    width: int = 0
    # DiT blocks
    num_layers: int = 4
    # attention heads per block (width must divide by it)
    num_heads: int = 4
    # MLP width as a multiple of the DiT width
    mlp_ratio: float = 4.0
    # which VLM hidden state the DiT reads: an index into hidden_states (0 = embeddings, -1 = last layer);
    # GR00T N1 reads a middle layer
    feature_layer: int = -1
    # Euler steps at inference
    num_steps: int = 4
    # hide the prompt's language tokens from the expert (APT stage 1)
    mask_language: bool = False

    def __post_init__(self) -> None:
        if self.width < 0 or self.num_layers < 1 or self.num_heads < 1 or self.mlp_ratio <= 0 or self.num_steps < 1:
            raise ValueError("gr00t: width >= 0, num_layers >= 1, num_heads >= 1, mlp_ratio > 0, num_steps >= 1")
        if self.width and self.width % self.num_heads:
            raise ValueError(f"gr00t.width {self.width} must be a multiple of gr00t.num_heads {self.num_heads}")


APT_STAGES = (0, 1, 2)


@dataclass(frozen=True)
class APTOptions:
    """APT's two-stage layout of a flow-matching expert (pi0 or gr00t); the expert's num_layers is the final depth N.

    stage 1: the vision-action prior, N/2 layers, language hidden from the expert (whatever mask_language says).
    stage 2: a freshly initialised layer after each stage-1 layer (stage-1 layer k sits at 2k, keeping the
             VLM layer it reads); each inserted layer reads its vision-language stream through a gate,
             g * vl + (1 - g) * proj(VLM hidden state at an evenly spaced depth), g = sigmoid(w) per channel.
    """

    # 0 = the plain expert (no APT); 1 = the stage-1 prior; 2 = the fused stage-2 expert
    stage: int = 0
    # initial gate logit w of every inserted layer and channel (0 -> g = 0.5); the paper's value is not public
    gate_init: float = 0.0
    # start each inserted layer's output projections at zero, so a stage-2 expert starts as its stage-1 prior
    zero_init_inserted: bool = False

    def __post_init__(self) -> None:
        if self.stage not in APT_STAGES:
            raise ValueError(f"apt.stage must be one of {APT_STAGES} (0 = no APT), got {self.stage}")


@dataclass(frozen=True)
class VLAConfig:
    """What a VLA policy reads and predicts, and which head it uses."""

    # action head: the VLM4VLA action query + MLP, or a pi0- / GR00T-style flow-matching expert
    head: str = choice(*HEAD_TYPES)
    # camera names; the policy reads observation.images.<camera> for each, in this order
    cameras: tuple[str, ...] = ("corner2",)
    # action dimension (Meta-World: 3 arm deltas + 1 gripper)
    action_dim: int = 4
    # proprio state dimension read from observation.state (0 = no state input)
    state_dim: int = 4
    # action indices that are a gripper command (binary open/close: BCE in the vlm4vla head)
    gripper_dims: tuple[int, ...] = (3,)
    # actions predicted per call
    chunk_size: int = 8
    # actions executed before the policy is asked again (<= chunk_size)
    n_action_steps: int = 4
    # how the state is normalised from the dataset's stats.json
    state_normalization: str = choice(*NORMALIZATION_MODES, default="mean_std")
    # how actions are normalised from the dataset's stats.json (predictions are mapped back to dataset units)
    action_normalization: str = choice(*NORMALIZATION_MODES, default="min_max")
    # the user prompt; {task} is replaced by the instruction
    prompt: str = "What action should the robot take to {task}?"
    # prompt tokens kept per sample (longer prompts are cut from the left of the text)
    max_prompt_length: int = 128
    vlm4vla: VLM4VLAOptions = field(default_factory=VLM4VLAOptions)
    pi0: Pi0Options = field(default_factory=Pi0Options)
    gr00t: Gr00tOptions = field(default_factory=Gr00tOptions)
    flow: FlowMatchingOptions = field(default_factory=FlowMatchingOptions)
    apt: APTOptions = field(default_factory=APTOptions)

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.cameras:
            raise ValueError("cameras must name at least one camera, e.g. [corner2]")
        if self.action_dim < 1 or self.state_dim < 0:
            raise ValueError(f"action_dim must be >= 1 and state_dim >= 0 (got {self.action_dim}, {self.state_dim})")
        bad = [d for d in self.gripper_dims if not 0 <= d < self.action_dim]
        if bad:
            raise ValueError(f"gripper_dims {bad} out of range for action_dim {self.action_dim}")
        if self.chunk_size < 1 or not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"need chunk_size >= 1 and 1 <= n_action_steps <= chunk_size "
                             f"(got {self.chunk_size}, {self.n_action_steps})")
        if self.apt.stage and self.head not in ("pi0", "gr00t"):
            raise ValueError(f"apt.stage={self.apt.stage} needs a flow-matching action expert (head=pi0 or "
                             f"head=gr00t), not head={self.head}")
        if "{task}" not in self.prompt:
            raise ValueError(f"prompt must contain {{task}} (the instruction), got {self.prompt!r}")

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Observation keys of the cameras, LeRobot style."""
        return tuple(f"observation.images.{c}" for c in self.cameras)

    @property
    def arm_dims(self) -> tuple[int, ...]:
        """Action indices that are not gripper commands."""
        return tuple(d for d in range(self.action_dim) if d not in self.gripper_dims)

    # Fake data of this config's shapes (as openpi's model configs make fake observations): tests,
    # benchmarks and shape checks build a policy's inputs from the config instead of by hand.
    def fake_items(self, n: int, *, tasks: Sequence[str] = ("push the button",), image_size: int = 32,
                   seed: int = 0) -> list[dict[str, Any]]:
        """`n` training items as RobotEpisodeDataset yields them, in the units `fake_stats` describes.

        Each holds a float [3, H, W] image in [0, 1] per camera, the state (when state_dim > 0), an
        action chunk in [-1, 1] (gripper dims at -1 or 1) with its padding mask (the last action of every
        second item is padding), and the instruction (`tasks` in turn).
        """
        import torch

        gen = torch.Generator().manual_seed(seed)
        items = []
        for i in range(n):
            item: dict[str, Any] = {key: torch.rand(3, image_size, image_size, generator=gen)
                                    for key in self.image_keys}
            if self.state_dim:
                item["observation.state"] = torch.randn(self.state_dim, generator=gen)
            action = torch.rand(self.chunk_size, self.action_dim, generator=gen) * 2 - 1
            for d in self.gripper_dims:
                action[:, d] = torch.where(action[:, d] > 0, 1.0, -1.0)
            item.update({"action": action, "action_is_pad": torch.arange(self.chunk_size) >= self.chunk_size - (i % 2),
                         "task": tasks[i % len(tasks)]})
            items.append(item)
        return items

    def fake_observation(self, batch_size: int, *, tasks: Sequence[str] = ("push the button",), image_size: int = 48,
                         seed: int = 0) -> dict[str, Any]:
        """An evaluation observation batch: uint8 [B, H, W, 3] images per camera, float32 state, instructions."""
        import numpy as np

        rng = np.random.default_rng(seed)
        batch: dict[str, Any] = {key: rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
                                 for key in self.image_keys}
        if self.state_dim:
            batch["observation.state"] = rng.standard_normal((batch_size, self.state_dim)).astype(np.float32)
        batch["task"] = [tasks[i % len(tasks)] for i in range(batch_size)]
        return batch

    def fake_stats(self) -> dict[str, dict[str, Any]]:
        """reader.stats-like statistics of the fake data: state ~ N(0, 1), actions in [-1, 1]."""
        import numpy as np

        def stats(dim: int, low: float, high: float, std: float) -> dict[str, Any]:
            lo, hi = np.full(dim, low), np.full(dim, high)
            return {"min": lo, "max": hi, "mean": np.zeros(dim), "std": np.full(dim, std), "q01": lo * 0.98,
                    "q99": hi * 0.98, "count": np.array([1000])}

        out = {"action": stats(self.action_dim, -1.0, 1.0, 0.58)}
        if self.state_dim:
            out["observation.state"] = stats(self.state_dim, -3.0, 3.0, 1.0)
        return out
