"""The next-token training loop on top of accelerate.

One optimizer step:

    fetch grad_accum micro-batches  (timed: the data-wait share of the step)
    count their answer tokens, summed over processes -> N
    for each micro-batch: loss_sum / N * world_size -> backward   (no gradient sync until the last)
    clip gradients, AdamW step, cosine-schedule step

Dividing the summed token loss by the step's global token count gives every answer token the same
weight whatever the split into micro-batches and processes; the `* world_size` undoes DDP's mean
over processes. The same code runs on one CPU, one GPU, or many processes under `accelerate launch`
/ torchrun (DDP, or FSDP from an accelerate config file).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from vlm2vla.training.config import TrainConfig
from vlm2vla.training.data import BatchStream
from vlm2vla.training.loss import answer_loss_sum, count_answer_tokens
from vlm2vla.training.metrics import MetricsWriter

log = logging.getLogger(__name__)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """An Accelerator for this machine: bf16 on GPUs that support it when mixed_precision is auto."""
    cpu = not torch.cuda.is_available()
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    # cpu=True lets a CPU-only torchrun/accelerate launch run as a gloo process group; the scheduler
    # is stepped by hand once per optimizer step (accelerate would step it once per process).
    return Accelerator(cpu=cpu, mixed_precision=precision, step_scheduler_with_optimizer=False)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights (1-D) get no weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("Nothing to train: every parameter is frozen (check `freeze` and `lora`).")
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """Linear warmup over warmup_ratio of the steps, then cosine decay to 0."""
    return get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of the run: max_steps, else epochs over the data."""
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def forward_loss(model: Callable[..., Any], batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Summed answer-token loss and answer-token count of one collated batch.

    Args:
        model: a VLMBackbone, or its DDP/FSDP wrapper (called as `model(batch)`).
        batch: the backbone's collate output.
    """
    labels = batch["labels"]
    # Without labels the model skips its own (mean) loss; ours is the token sum.
    logits = model({k: v for k, v in batch.items() if k != "labels"}).logits  # [B, T, V]
    return answer_loss_sum(logits, labels), count_answer_tokens(labels)


@dataclass
class StepStats:
    """Running sums between two metrics lines."""

    loss_sum: float = 0.0
    tokens: int = 0
    samples: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    steps: int = 0
    grad_norms: list[float] = field(default_factory=list)

    def record(self, step: int, lr: float) -> dict[str, Any]:
        """The metrics line for these steps."""
        return {
            "step": step, "loss": self.loss_sum / max(1, self.tokens), "lr": lr,
            "grad_norm": sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else None,
            "samples_per_s": self.samples / max(self.seconds, 1e-9),
            "data_wait_frac": self.data_seconds / max(self.seconds, 1e-9),
            "step_time_s": self.seconds / max(1, self.steps), "tokens": self.tokens,
        }


@dataclass
class Trainer:
    """Holds the prepared objects and the position of a run; `train_step` takes one optimizer step."""

    cfg: TrainConfig
    accelerator: Accelerator
    model: torch.nn.Module  # prepared (DDP/FSDP-wrapped where distributed)
    optimizer: Any
    scheduler: Any
    stream: BatchStream
    step: int = 0
    samples_seen: int = 0

    def _fetch(self) -> tuple[list[dict[str, Any]], float]:
        """grad_accum micro-batches moved to the device, and the seconds spent waiting for them."""
        batches, waited = [], 0.0
        for _ in range(self.cfg.grad_accum):
            start = time.perf_counter()
            batch = next(self.stream)
            waited += time.perf_counter() - start
            batches.append(send_to_device(batch, self.accelerator.device))  # nested dicts too (policy prefixes)
        return batches, waited

    def train_step(self, stats: StepStats) -> None:
        """One optimizer step over grad_accum micro-batches per process; adds its figures to `stats`."""
        start = time.perf_counter()
        batches, waited = self._fetch()
        acc = self.accelerator
        local = torch.tensor([sum(count_answer_tokens(b["labels"]) for b in batches),
                              sum(len(b["labels"]) for b in batches)], device=acc.device)
        tokens, samples = (int(x) for x in acc.reduce(local, reduction="sum").tolist())
        scale = acc.num_processes / max(1, tokens)
        loss_total = torch.zeros((), device=acc.device)
        self.model.train()
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                loss_sum, _ = forward_loss(self.model, batch)
                acc.backward(loss_sum * scale)
            loss_total += loss_sum.detach()
        if self.cfg.max_grad_norm > 0:
            norm = acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            stats.grad_norms.append(float(norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.samples_seen += samples
        stats.loss_sum += float(acc.reduce(loss_total, reduction="sum"))
        stats.tokens, stats.samples, stats.steps = stats.tokens + tokens, stats.samples + samples, stats.steps + 1
        stats.seconds += time.perf_counter() - start
        stats.data_seconds += waited

    def state(self) -> dict[str, Any]:
        """The loop's own resumable state (the checkpoint's trainer_state.json)."""
        return {"step": self.step, "samples_seen": self.samples_seen, "data": self.stream.position.as_dict(),
                "world_size": self.accelerator.num_processes}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's trainer state."""
        self.step, self.samples_seen = state["step"], state["samples_seen"]
        if state.get("world_size", 1) != self.accelerator.num_processes:
            log.warning("Resuming a %d-process run with %d processes: the global batch and data order change",
                        state.get("world_size", 1), self.accelerator.num_processes)
        self.stream.seek(state["data"]["epoch"], state["data"]["index"])


def log_metrics(writer: MetricsWriter, trainer: Trainer, stats: StepStats) -> dict[str, Any]:
    """Write a metrics line for the steps in `stats` and return it."""
    record = stats.record(trainer.step, trainer.scheduler.get_last_lr()[0])
    record["epoch"] = trainer.stream.position.epoch
    writer.log(record)
    return record


def run_steps(trainer: Trainer, end: int, total: int, writer: MetricsWriter, *, new_stats: Callable[[], StepStats],
              log_interval: int, progress: bool, desc: str, after_step: Callable[[int], None]) -> None:
    """Take optimizer steps until `end`: a progress bar, a metrics line every `log_interval` steps.

    Args:
        trainer: the prepared trainer (its `step` is where the run stands).
        end: stop once this many steps are done.
        total: the run's total steps (the progress bar's length).
        writer: metrics sink; closed on the way out.
        new_stats: a fresh running-sums object (StepStats or a subclass matching `trainer.train_step`).
        log_interval: steps between metrics lines (the last step always logs).
        progress: show the bar.
        desc: the bar's label.
        after_step: called with the step number after each step (evaluation, checkpoints).
    """
    bar = tqdm(total=total, initial=trainer.step, desc=desc, unit="step", disable=not progress)
    stats = new_stats()
    try:
        while trainer.step < end:
            trainer.train_step(stats)
            bar.update(1)
            step = trainer.step
            if step % log_interval == 0 or step == end:
                record = log_metrics(writer, trainer, stats)
                bar.set_postfix(loss=f"{record['loss']:.4f}", data=f"{record['data_wait_frac']:.0%}")
                stats = new_stats()
            after_step(step)
    finally:
        bar.close()
        writer.close()
