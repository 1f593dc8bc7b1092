"""Optimisation settings every training stage shares, and what is built from them.

    optim:            # in pretrain, midtrain and train-policy configs alike (`optim.lr=3e-4`)
      batch_size, grad_accum, lr, weight_decay, betas, warmup_ratio, max_steps, epochs,
      max_grad_norm, mixed_precision

AdamW (no decay on biases and norm weights), linear warmup then cosine decay to 0, and an accelerate
Accelerator that picks bf16 on GPUs that support it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from vlm2vla.config import check_choices, choice

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass(frozen=True)
class OptimConfig:
    """Batch, accumulation, AdamW, schedule, run length, clipping and precision of a training run."""

    # per-device micro-batch size (samples; frames for a policy)
    batch_size: int = 8
    # micro-batches per optimizer step (global batch = batch_size * processes * grad_accum)
    grad_accum: int = 1
    # AdamW peak learning rate
    lr: float = 1e-4
    # AdamW weight decay (not applied to biases and norm weights)
    weight_decay: float = 0.01
    # AdamW betas
    betas: tuple[float, float] = (0.9, 0.999)
    # fraction of the steps spent warming the learning rate up linearly, then cosine decay to 0
    warmup_ratio: float = 0.1
    # optimizer steps; 0 derives them from `epochs`
    max_steps: int = 0
    # passes over the training data when max_steps is 0
    epochs: float = 1.0
    # gradient-norm clipping (0 = off)
    max_grad_norm: float = 1.0
    # "auto" picks bf16 on GPUs that support it and "no" elsewhere
    mixed_precision: str = choice(*MIXED_PRECISION)

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps == 0 and self.epochs <= 0:
            raise ValueError(f"set optim.max_steps > 0 or optim.epochs > 0 (got max_steps=0, epochs={self.epochs})")


def make_accelerator(optim: OptimConfig) -> Accelerator:
    """An Accelerator for this machine: bf16 on GPUs that support it when mixed_precision is auto."""
    cpu = not torch.cuda.is_available()
    precision = optim.mixed_precision
    if precision == "auto":
        precision = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    # cpu=True lets a CPU-only torchrun/accelerate launch run as a gloo process group; the scheduler
    # is stepped by hand once per optimizer step (accelerate would step it once per process).
    return Accelerator(cpu=cpu, mixed_precision=precision, step_scheduler_with_optimizer=False)


def build_optimizer(model: torch.nn.Module, optim: OptimConfig,
                    lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases, norm weights (1-D) and APT's gate logits get no weight decay.

    Args:
        lr_scales: parameter-name suffix -> multiplier of optim.lr for the parameters whose names end with it
            (the schedule scales every group alike).
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("Nothing to train: every parameter is frozen (check `freeze` and `lora`).")
    scales = {suffix: scale for suffix, scale in (lr_scales or {}).items() if scale != 1.0}

    # Decay would pull a gate logit w toward 0 (g = 0.5) whatever its configured start.
    def decays(name: str, p: torch.nn.Parameter) -> bool:
        return p.ndim >= 2 and not name.endswith("gate_logits")

    def scale(name: str) -> float:
        return next((s for suffix, s in scales.items() if name.endswith(suffix)), 1.0)

    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for n, p in params:
        groups.setdefault((decays(n, p), scale(n)), []).append(p)
    # Decayed first, then the rest, then the scaled groups: a checkpoint's optimizer state lists its groups
    # in this order, so runs without scales keep the layout earlier checkpoints were saved with.
    order = sorted(groups, key=lambda key: (key[1] != 1.0, not key[0], key[1]))
    return torch.optim.AdamW(
        [{"params": groups[key], "weight_decay": optim.weight_decay if key[0] else 0.0, "lr": optim.lr * key[1]}
         for key in order], lr=optim.lr, betas=tuple(optim.betas))


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int) -> Any:
    """Linear warmup over warmup_ratio of the steps, then cosine decay to 0."""
    return get_cosine_schedule_with_warmup(optimizer, math.ceil(optim.warmup_ratio * total_steps), total_steps)


def total_steps(optim: OptimConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of the run: max_steps, else epochs over the data."""
    if optim.max_steps:
        return optim.max_steps
    return max(1, math.ceil(optim.epochs * batches_per_epoch / optim.grad_accum))
