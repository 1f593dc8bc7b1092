"""The policy training step on top of loop.Trainer: the policy's own mean-over-batch loss and its
per-part losses in the metrics lines.

One optimizer step:

    fetch grad_accum micro-batches (loop.Trainer._fetch: moved to the device, timed)
    for each: loss = policy(batch) (the head's mean over the batch) / grad_accum -> backward
              (no DDP gradient sync until the last)
    clip gradients, AdamW step, scheduler step

Batch fetching position, checkpointable state and resume come from loop.Trainer unchanged.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from vlm2vla.training.loop import StepStats, Trainer


@dataclass
class PolicyStepStats(StepStats):
    """StepStats with a sample-weighted mean loss and the head's per-part losses."""

    parts: dict[str, float] = field(default_factory=dict)

    def record(self, step: int, lr: float) -> dict[str, Any]:
        """The metrics line: loss and per-part losses are means over the samples of these steps."""
        out = super().record(step, lr)  # loss = loss_sum / tokens, where tokens counts samples here
        del out["tokens"]
        out.update({f"loss_{k}": v / max(1, self.tokens) for k, v in self.parts.items() if k != "loss"})
        return out


class PolicyTrainer(Trainer):
    """loop.Trainer (batch fetching, resumable state) with the policy's mean-over-batch loss.

    Each micro-batch loss is the policy's batch mean; dividing by grad_accum makes the step's gradient
    the mean over its micro-batches, and DDP averages over processes.
    """

    wall_time_s: float = 0.0  # training time over every invocation of the run (kept in checkpoints)

    def train_step(self, stats: PolicyStepStats) -> None:  # type: ignore[override]
        """One optimizer step over grad_accum micro-batches; adds its figures to `stats`."""
        start = time.perf_counter()
        batches, waited = self._fetch()
        acc = self.accelerator
        self.model.train()
        local = torch.zeros((), device=acc.device)
        parts: dict[str, float] = {}
        for i, batch in enumerate(batches):
            with acc.no_sync(self.model) if i < len(batches) - 1 else contextlib.nullcontext():
                loss, metrics = self.model(batch)
                acc.backward(loss / len(batches))
            local += loss.detach() / len(batches)
            for key, value in metrics.items():
                parts[key] = parts.get(key, 0.0) + float(value) / len(batches)
        if self.cfg.max_grad_norm > 0:
            stats.grad_norms.append(float(acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        samples = self.cfg.batch_size * self.cfg.grad_accum * acc.num_processes
        self.step += 1
        self.samples_seen += samples
        stats.loss_sum += float(acc.reduce(local, reduction="mean")) * samples
        for key, value in parts.items():  # main process's parts (a logging figure, not reduced)
            stats.parts[key] = stats.parts.get(key, 0.0) + value * samples
        stats.tokens, stats.samples, stats.steps = stats.tokens + samples, stats.samples + samples, stats.steps + 1
        elapsed = time.perf_counter() - start
        stats.seconds += elapsed
        stats.data_seconds += waited
        self.wall_time_s += elapsed

    def state(self) -> dict[str, Any]:
        """loop.Trainer's state plus the accumulated training time."""
        return {**super().state(), "wall_time_s": self.wall_time_s}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's trainer state."""
        super().load(state)
        self.wall_time_s = float(state.get("wall_time_s", 0.0))
