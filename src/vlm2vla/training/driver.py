"""One training-run driver for every training stage (pretrain, midtrain, train-policy, and the next).

A stage supplies a small *task* (TrainingTask): what to build, the loss of a batch, how to evaluate,
what to save. The driver owns the rest, the same for every stage:

    accelerator, seed -> task.setup -> resumable batch stream, AdamW, warmup + cosine, accelerate.prepare
    resume from the newest complete checkpoint (weights, optimizer, scheduler, RNG, data position)
    evaluate at step 0 (if the task asks), then the step loop: a metrics line every log_interval steps,
      evaluation every task.eval_interval, an atomic checkpoint every checkpoint.interval
    final checkpoint, final evaluation, task.save_final, run.finish(metrics)

One optimizer step:

    fetch grad_accum micro-batches  (timed: the data-wait share of the step)
    W = the step's total weight, summed over micro-batches and processes (task.weight: answer tokens
        for next-token training, 1 per micro-batch for a policy's batch-mean loss)
    for each micro-batch: task.loss(...) * world_size / W -> backward   (no gradient sync until the last)
    clip gradients, AdamW step, cosine-schedule step

Dividing by the step's global weight gives every weight unit the same say whatever the split into
micro-batches and processes; `* world_size` undoes DDP's mean over processes. The same code runs on
one CPU, one GPU, or many processes under `accelerate launch` / torchrun (DDP, or FSDP from an
accelerate config file).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device, set_seed
from torch.utils.data import Dataset
from tqdm import tqdm

from vlm2vla.fileio import atomic_write_json, read_json
from vlm2vla.runs import Run
from vlm2vla.training import checkpoint as ckpt
from vlm2vla.training.checkpoint import CheckpointConfig
from vlm2vla.training.data import BatchStream, make_stream
from vlm2vla.training.metrics import MetricsWriter, read_metrics
from vlm2vla.training.optim import OptimConfig, build_optimizer, build_scheduler, make_accelerator, total_steps

log = logging.getLogger(__name__)


class RunSettings(Protocol):
    """The fields every training stage's config has (the driver reads nothing else)."""

    run_dir: str
    optim: OptimConfig
    checkpoint: CheckpointConfig
    log_interval: int
    seed: int
    num_workers: int
    report_to: tuple[str, ...]
    progress: bool


@dataclass
class TaskSetup:
    """What a task builds before the first step."""

    model: torch.nn.Module  # the module to optimise (unwrapped); accelerate wraps it
    dataset: Dataset  # training items
    collator: Callable[[list[Any]], dict[str, Any]]  # items -> model batch (runs in the loader workers)
    inputs: dict[str, Any] = field(default_factory=dict)  # manifest inputs
    metrics: dict[str, Any] = field(default_factory=dict)  # manifest metrics known before training
    # learning-rate multipliers by parameter-name suffix (APT's gate logits: apt.gate_lr_scale)
    lr_scales: dict[str, float] = field(default_factory=dict)


class TrainingTask(Protocol):
    """One kind of training. The driver calls these, in this order, on every process."""

    label: str  # the progress bar's label
    weight_name: str | None  # the metrics lines' name for the summed weight ("tokens"), None to leave it out
    eval_file: str  # the evaluation file in the run directory ({"by_step": {step: result}, ...})
    eval_interval: int  # steps between evaluations (0 = only at the end)
    eval_at_start: bool  # also evaluate before the first step
    prepared_model: Any  # set by the driver after accelerate.prepare (the DDP/FSDP-wrapped model)

    def setup(self, accelerator: Accelerator) -> TaskSetup:
        """Build data and model (after the seed is set; nothing is prepared yet)."""

    def weight(self, batch: dict[str, Any]) -> int:
        """Units the loss of `batch` is summed over (tokens; 1 for a batch-mean loss)."""

    def samples(self, batch: dict[str, Any]) -> int:
        """Samples in `batch`."""

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss summed over its weight units, and named part losses to log (may be empty)."""

    def has_evaluation(self) -> bool:
        """Whether there is held-out data to evaluate on."""

    def evaluate(self, step: int, evals: dict[str, Any]) -> dict[str, Any]:
        """Held-out figures at `step` (every process calls it; `evals` holds the earlier ones)."""

    def eval_document(self, evals: dict[str, Any]) -> dict[str, Any]:
        """The evaluation file's content for results by step (a "by_step" key plus summaries)."""

    def save_model(self, path: Path) -> None:
        """A checkpoint's loadable model folder; every process calls it, the main one writes."""

    def save_final(self, run_dir: Path) -> dict[str, Path]:
        """The final model into the run directory (atomically; skipped if there); returns the outputs."""

    def final_metrics(self, evals: dict[str, Any]) -> dict[str, Any]:
        """The task's own final metrics (the driver adds steps, samples seen, time and final loss)."""


@dataclass
class StepStats:
    """Running sums between two metrics lines."""

    loss_sum: float = 0.0
    weight: int = 0
    samples: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    steps: int = 0
    grad_norms: list[float] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)
    part_batches: int = 0

    def record(self, step: int, lr: float) -> dict[str, Any]:
        """The metrics line for these steps: the weighted mean loss, the mean of each part loss."""
        out = {
            "step": step, "loss": self.loss_sum / max(1, self.weight), "lr": lr,
            "grad_norm": sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else None,
            "samples_per_s": self.samples / max(self.seconds, 1e-9),
            "data_wait_frac": self.data_seconds / max(self.seconds, 1e-9),
            "step_time_s": self.seconds / max(1, self.steps),
        }
        out.update({f"loss_{k}": v / max(1, self.part_batches) for k, v in self.parts.items() if k != "loss"})
        return out


@dataclass
class Trainer:
    """The prepared objects and the position of a run; `train_step` takes one optimizer step."""

    task: TrainingTask
    optim: OptimConfig
    accelerator: Accelerator
    model: torch.nn.Module  # prepared (DDP/FSDP-wrapped where distributed)
    optimizer: Any
    scheduler: Any
    stream: BatchStream
    step: int = 0
    samples_seen: int = 0
    wall_time_s: float = 0.0  # training time over every invocation of the run (kept in checkpoints)

    def _fetch(self) -> tuple[list[dict[str, Any]], float]:
        """grad_accum micro-batches moved to the device, and the seconds spent waiting for them."""
        batches, waited = [], 0.0
        for _ in range(self.optim.grad_accum):
            start = time.perf_counter()
            batch = next(self.stream)
            waited += time.perf_counter() - start
            batches.append(send_to_device(batch, self.accelerator.device))  # nested dicts too (policy prefixes)
        return batches, waited

    def train_step(self, stats: StepStats) -> None:
        """One optimizer step over grad_accum micro-batches per process; adds its figures to `stats`."""
        start = time.perf_counter()
        batches, waited = self._fetch()
        acc, task = self.accelerator, self.task
        local = torch.tensor([sum(task.weight(b) for b in batches), sum(task.samples(b) for b in batches)],
                             device=acc.device)
        weight, samples = (int(x) for x in acc.reduce(local, reduction="sum").tolist())
        scale = acc.num_processes / max(1, weight)
        loss_total = torch.zeros((), device=acc.device)
        self.model.train()
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                loss_sum, parts = task.loss(self.model, batch)
                acc.backward(loss_sum * scale)
            loss_total += loss_sum.detach()
            for key, value in parts.items():  # this process's parts (a logging figure, not reduced)
                stats.parts[key] = stats.parts.get(key, 0.0) + float(value)
        stats.part_batches += len(batches)
        if self.optim.max_grad_norm > 0:
            stats.grad_norms.append(float(acc.clip_grad_norm_(self.model.parameters(), self.optim.max_grad_norm)))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.samples_seen += samples
        stats.loss_sum += float(acc.reduce(loss_total, reduction="sum"))
        stats.weight, stats.samples, stats.steps = stats.weight + weight, stats.samples + samples, stats.steps + 1
        elapsed = time.perf_counter() - start
        stats.seconds += elapsed
        stats.data_seconds += waited
        self.wall_time_s += elapsed

    def state(self) -> dict[str, Any]:
        """The loop's own resumable state (the checkpoint's trainer_state.json)."""
        return {"step": self.step, "samples_seen": self.samples_seen, "data": self.stream.position.as_dict(),
                "world_size": self.accelerator.num_processes, "wall_time_s": self.wall_time_s}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's trainer state."""
        self.step, self.samples_seen = state["step"], state["samples_seen"]
        self.wall_time_s = float(state.get("wall_time_s", 0.0))
        if state.get("world_size", 1) != self.accelerator.num_processes:
            log.warning("Resuming a %d-process run with %d processes: the global batch and data order change",
                        state.get("world_size", 1), self.accelerator.num_processes)
        self.stream.seek(state["data"]["epoch"], state["data"]["index"])


@dataclass
class Session:
    """A built run: the task, its settings and run directory, the trainer and the run's length."""

    task: TrainingTask
    cfg: RunSettings
    run: Run
    accelerator: Accelerator
    trainer: Trainer
    total_steps: int


def build(task: TrainingTask, cfg: RunSettings, run: Run, *,
          find_unused_parameters: bool = False) -> Session:
    """Accelerator, the task's data and model, optimizer and schedule, all prepared; nothing resumed yet.

    Args:
        find_unused_parameters: under DDP, do not wait for gradients of trainable weights the loss may
            leave out (a policy head that reads only some of the VLM's outputs).
    """
    from accelerate.utils import DistributedDataParallelKwargs

    acc = make_accelerator(cfg.optim)
    if find_unused_parameters and acc.num_processes > 1:
        acc.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
    set_seed(cfg.seed)  # model init, LoRA adapters, dropout; data order and splits have their own seeds
    setup = task.setup(acc)
    stream = make_stream(setup.dataset, setup.collator, cfg.optim.batch_size, acc.num_processes, acc.process_index,
                         cfg.seed, cfg.num_workers)
    steps = total_steps(cfg.optim, stream.sampler.batches_per_epoch)
    # raises "Nothing to train" when everything is frozen
    optimizer = build_optimizer(setup.model, cfg.optim, setup.lr_scales)
    scheduler = build_scheduler(optimizer, cfg.optim, steps)
    model, optimizer = acc.prepare(setup.model, optimizer)
    acc.register_for_checkpointing(scheduler)
    task.prepared_model = model
    trainer = Trainer(task, cfg.optim, acc, model, optimizer, scheduler, stream)
    if acc.is_main_process:
        run.update(inputs=setup.inputs, metrics={**setup.metrics, "total_steps": steps,
                                                 "processes": acc.num_processes})
    return Session(task, cfg, run, acc, trainer, steps)


def train(session: Session, stop_after: int | None = None) -> dict[str, Any]:
    """Resume (when there is a checkpoint), train to the end, evaluate, save the final model, finish the run.

    Args:
        session: from `build`.
        stop_after: stop with a checkpoint once this many steps are done (to split a run into jobs);
            None trains to the end and writes the final model.

    Returns:
        Final metrics (also in the manifest), or {"step", "stopped_early": True} when stopped early.
    """
    acc, trainer, task, run = session.accelerator, session.trainer, session.task, session.run
    resume_from_checkpoint(session)
    evals = _read_evals(run.dir / task.eval_file)
    if task.eval_at_start and task.has_evaluation() and trainer.step == 0 and "0" not in evals:
        evaluate(session, 0, evals)
    end = session.total_steps if stop_after is None else min(stop_after, session.total_steps)
    _train_until(session, end, evals)
    save_checkpoint(session)
    if trainer.step < session.total_steps:
        return {"step": trainer.step, "stopped_early": True}
    if task.has_evaluation() and str(trainer.step) not in evals:
        evaluate(session, trainer.step, evals)
    outputs = task.save_final(run.dir)
    acc.wait_for_everyone()
    metrics = {**_run_metrics(session), **task.final_metrics(evals)}
    if acc.is_main_process:
        run.finish(metrics=metrics, outputs={**outputs, "metrics": run.dir / "metrics.jsonl"})
    acc.wait_for_everyone()
    return metrics


def run_training(task: TrainingTask, cfg: RunSettings, run: Run, stop_after: int | None = None, *,
                 find_unused_parameters: bool = False) -> dict[str, Any]:
    """`build` then `train`: one whole training run of `task` as `cfg` describes, into `run.dir`."""
    return train(build(task, cfg, run, find_unused_parameters=find_unused_parameters), stop_after)


def resume_from_checkpoint(session: Session) -> None:
    """Load the newest complete checkpoint, if any, and drop metrics logged after it."""
    acc, trainer, root = session.accelerator, session.trainer, session.run.dir / "checkpoints"
    if acc.is_main_process:
        ckpt.remove_partial(root)
    acc.wait_for_everyone()
    latest = ckpt.latest_checkpoint(root)
    if latest is None:
        return
    state = ckpt.load_checkpoint(acc, latest)
    trainer.load(state)
    MetricsWriter(session.run.dir / "metrics.jsonl", enabled=acc.is_main_process).truncate_after(trainer.step)
    log.info("Resumed from %s: step %d, epoch %d, micro-batch %d", latest, trainer.step,
             state["data"]["epoch"], state["data"]["index"])


def evaluate(session: Session, step: int, evals: dict[str, Any]) -> dict[str, Any]:
    """The task's held-out figures at `step`, added to `evals` and written to its evaluation file."""
    # Keep the training RNG untouched, so a run with more evaluations takes exactly the same steps.
    with torch.random.fork_rng(devices=[]):
        result = session.task.evaluate(step, evals)
    evals[str(step)] = result
    if session.accelerator.is_main_process:
        ordered = {s: evals[s] for s in sorted(evals, key=int)}
        atomic_write_json(session.run.dir / session.task.eval_file, session.task.eval_document(ordered))
    return result


def save_checkpoint(session: Session) -> Path:
    """Checkpoint the current step (every process takes part)."""
    trainer = session.trainer
    return ckpt.save_checkpoint(session.accelerator, session.run.dir / "checkpoints", trainer.step, trainer.state(),
                                session.task.save_model, session.cfg.checkpoint.keep)


def _train_until(session: Session, end: int, evals: dict[str, Any]) -> None:
    """Take optimizer steps until `end`: a progress bar, metrics lines, evaluations and checkpoints."""
    acc, trainer, task, cfg = session.accelerator, session.trainer, session.task, session.cfg
    writer = MetricsWriter(session.run.dir / "metrics.jsonl", cfg.report_to, session.run.dir.name,
                           enabled=acc.is_main_process)
    bar = tqdm(total=session.total_steps, initial=trainer.step, desc=task.label, unit="step",
               disable=not (cfg.progress and acc.is_main_process))
    stats = StepStats()
    try:
        while trainer.step < end:
            trainer.train_step(stats)
            bar.update(1)
            step = trainer.step
            if step % cfg.log_interval == 0 or step == end:
                record = stats.record(step, trainer.scheduler.get_last_lr()[0])
                if task.weight_name:
                    record[task.weight_name] = stats.weight
                record["epoch"] = trainer.stream.position.epoch
                writer.log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", data=f"{record['data_wait_frac']:.0%}")
                stats = StepStats()
            if task.eval_interval and step % task.eval_interval == 0 and step < session.total_steps \
                    and task.has_evaluation() and str(step) not in evals:
                evaluate(session, step, evals)
            if cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0 and step < end:
                save_checkpoint(session)
    finally:
        bar.close()
        writer.close()


def _read_evals(path: Path) -> dict[str, Any]:
    return read_json(path)["by_step"] if path.is_file() else {}


def _run_metrics(session: Session) -> dict[str, Any]:
    records = read_metrics(session.run.dir / "metrics.jsonl") if session.accelerator.is_main_process else []
    trainer = session.trainer
    return {"steps": trainer.step, "samples_seen": trainer.samples_seen,
            "final_loss": records[-1]["loss"] if records else None, "wall_time_s": round(trainer.wall_time_s, 2)}
