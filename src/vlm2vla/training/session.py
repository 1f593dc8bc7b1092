"""One next-token training run from config to final model: set-up, resume, loop, evaluation, saving.

Outputs in the run directory:

    tiny_init/          the random-init tiny default (model=tiny only), built once
    checkpoints/step-N/ the last `keep_checkpoints` checkpoints (see checkpoint.py)
    metrics.jsonl       one line per `log_interval` steps: step, loss, lr, samples/s, data-wait fraction
    eval.json           held-out loss and accuracy per source at step 0, every eval_interval, and the end
    model/              the final model (a transformers folder VLMBackbone.from_pretrained loads)
    adapter/            the LoRA adapter (lora.enabled only)

Re-running with the same run_dir continues from the newest checkpoint: weights, optimizer, scheduler,
RNG states and data position come back, so the run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed

from vlm2vla.backbones.loading import TINY_MODEL
from vlm2vla.fileio import atomic_write_json
from vlm2vla.runs import Run
from vlm2vla.training import checkpoint as ckpt
from vlm2vla.training.config import TrainConfig
from vlm2vla.training.data import ChatCollator, make_stream
from vlm2vla.training.evaluate_vlm import HeldoutItem, evaluate_heldout, format_eval_table, select_items
from vlm2vla.training.loop import (
    StepStats,
    Trainer,
    build_optimizer,
    build_scheduler,
    forward_loss,
    make_accelerator,
    run_steps,
    total_steps,
)
from vlm2vla.training.metrics import MetricsWriter
from vlm2vla.training.model_setup import add_lora, build_tiny, count_parameters, load_backbone, tiny_texts
from vlm2vla.training.samples import load_heldout, load_samples

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything a run builds before its first step."""

    accelerator: Accelerator
    backbone: Any  # VLMBackbone (unwrapped)
    peft_model: Any  # peft wrapper when LoRA is on, else None
    trainer: Trainer
    heldout: list[HeldoutItem]
    total_steps: int


def train_next_token(cfg: TrainConfig, run: Run, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume training) the model of `cfg` into `run.dir`.

    Args:
        cfg: the run's settings.
        run: the open run directory.
        stop_after: stop with a checkpoint once this many steps are done (to split a run into jobs);
            None trains to the end and writes the final model.

    Returns:
        Final metrics: steps, held-out figures before and after, parameter counts.
    """
    parts = build_parts(cfg, run)
    acc, trainer = parts.accelerator, parts.trainer
    ckpt_root = run.dir / "checkpoints"
    resume_from_checkpoint(acc, trainer, ckpt_root, run.dir)
    evals = _read_evals(run.dir)
    if cfg.eval.at_start and parts.heldout and trainer.step == 0 and "0" not in evals:
        evals["0"] = run_eval(parts, cfg, 0, run.dir, evals)
    end = parts.total_steps if stop_after is None else min(stop_after, parts.total_steps)
    train_until(parts, cfg, run, end, evals)
    save_checkpoint(parts, cfg, ckpt_root)
    if trainer.step < parts.total_steps:
        return {"step": trainer.step, "stopped_early": True}
    if parts.heldout and str(trainer.step) not in evals:
        evals[str(trainer.step)] = run_eval(parts, cfg, trainer.step, run.dir, evals)
    save_final_model(parts, cfg, run.dir)
    metrics = _final_metrics(parts, evals)
    if acc.is_main_process:
        run.finish(metrics=metrics, outputs={"model": run.dir / "model", "metrics": run.dir / "metrics.jsonl"})
    acc.wait_for_everyone()
    return metrics


def build_parts(cfg: TrainConfig, run: Run) -> Parts:
    """Accelerator, data, model (+LoRA, freezing), optimizer and schedule, all prepared."""
    acc = make_accelerator(cfg)
    set_seed(cfg.seed)  # model init (LoRA adapters) and dropout; data order has its own seeds
    train_samples, heldout_samples = load_samples(cfg.data)
    if cfg.eval.data:
        heldout_samples = load_heldout(cfg.eval.data)
    backbone = _load_model(cfg, run.dir, acc, train_samples)
    peft_model = add_lora(backbone.model, cfg.lora) if cfg.lora.enabled else None
    backbone.freeze(cfg.freeze)
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing works with DDP and with frozen inputs (LoRA, frozen embeddings).
        backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    from vlm2vla.backbones import ChatExample
    from vlm2vla.vlm_data.dataset import VLMChatDataset

    collator = ChatCollator(backbone.collate, ChatExample, cfg.max_length)
    stream = make_stream(VLMChatDataset(train_samples, on_bad_image="none"), collator, cfg.batch_size,
                         acc.num_processes, acc.process_index, cfg.seed, cfg.num_workers)
    steps = total_steps(cfg, stream.sampler.batches_per_epoch)
    optimizer = build_optimizer(backbone, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    model, optimizer = acc.prepare(backbone, optimizer)
    acc.register_for_checkpointing(scheduler)
    trainer = Trainer(cfg, acc, model, optimizer, scheduler, stream)
    heldout = _heldout_items(heldout_samples, cfg)
    if acc.is_main_process:
        run.update(inputs={"data": cfg.data, "model": cfg.model}, metrics={
            "parameters": count_parameters(backbone), "train_samples": len(train_samples),
            "heldout_samples": len(heldout), "total_steps": steps, "processes": acc.num_processes})
    return Parts(acc, backbone, peft_model, trainer, heldout, steps)


def _load_model(cfg: TrainConfig, run_dir: Path, acc: Accelerator, train_samples: list) -> Any:
    """The backbone named by cfg.model; the tiny default is built once, by the main process."""
    name = cfg.model
    if cfg.model == TINY_MODEL:
        folder = run_dir / "tiny_init"
        if acc.is_main_process:
            build_tiny(folder, lambda: tiny_texts(train_samples), cfg.tiny_image_size, cfg.seed)
        acc.wait_for_everyone()
        name = str(folder)
    return load_backbone(name, cfg)


def _heldout_items(samples: list, cfg: TrainConfig) -> list[HeldoutItem]:
    """Held-out questions (capped per source) with their images loaded."""
    from vlm2vla.vlm_data.dataset import VLMChatDataset

    chosen = select_items(samples, cfg.eval.max_samples_per_source)
    dataset = VLMChatDataset(chosen, on_bad_image="none")
    items = (dataset[i] for i in range(len(dataset)))
    return [HeldoutItem(it["source"], it["images"], it["messages"]) for it in items if it is not None]


def resume_from_checkpoint(acc: Accelerator, trainer: Trainer, root: Path, run_dir: Path) -> None:
    """Load the newest complete checkpoint, if any, and drop metrics logged after it."""
    if acc.is_main_process:
        ckpt.remove_partial(root)
    acc.wait_for_everyone()
    latest = ckpt.latest_checkpoint(root)
    if latest is None:
        return
    state = ckpt.load_checkpoint(acc, latest)
    trainer.load(state)
    MetricsWriter(run_dir / "metrics.jsonl", enabled=acc.is_main_process).truncate_after(trainer.step)
    log.info("Resumed from %s: step %d, epoch %d, micro-batch %d", latest, trainer.step,
             state["data"]["epoch"], state["data"]["index"])


def train_until(parts: Parts, cfg: TrainConfig, run: Run, end: int, evals: dict[str, Any]) -> None:
    """Take optimizer steps until `end`, logging, evaluating and checkpointing on their intervals."""
    acc, trainer = parts.accelerator, parts.trainer

    def after_step(step: int) -> None:
        if cfg.eval_interval and step % cfg.eval_interval == 0 and step < parts.total_steps and parts.heldout:
            evals[str(step)] = run_eval(parts, cfg, step, run.dir, evals)
        if cfg.save_interval and step % cfg.save_interval == 0 and step < end:
            save_checkpoint(parts, cfg, run.dir / "checkpoints")

    writer = MetricsWriter(run.dir / "metrics.jsonl", cfg.report_to, run.dir.name, enabled=acc.is_main_process)
    run_steps(trainer, end, parts.total_steps, writer, new_stats=StepStats, log_interval=cfg.log_interval,
              progress=cfg.progress and acc.is_main_process, desc="train", after_step=after_step)


def save_checkpoint(parts: Parts, cfg: TrainConfig, root: Path) -> Path:
    """Checkpoint the current step (every process takes part)."""
    trainer = parts.trainer
    return ckpt.save_checkpoint(parts.accelerator, root, trainer.step, trainer.state(),
                                lambda path: write_model_folder(parts, path, merge=False), cfg.keep_checkpoints)


def write_model_folder(parts: Parts, path: Path, merge: bool) -> None:
    """Write the model as a transformers folder (with the processor); every process must call this.

    With LoRA, `merge=False` writes the adapter only (peft format) and `merge=True` folds the adapter
    into the base weights first, so the folder loads without peft.
    """
    acc, backbone = parts.accelerator, parts.backbone
    # FSDP shards the weights: gather a full state dict collectively, then one process writes it.
    state = acc.get_state_dict(parts.trainer.model) if acc.distributed_type == DistributedType.FSDP else None
    if not acc.is_main_process:
        return
    if parts.peft_model is not None and not merge:
        parts.peft_model.save_pretrained(path)
    elif parts.peft_model is not None:
        parts.peft_model.merge_and_unload().save_pretrained(path)
    else:
        inner = {k.removeprefix("model."): v for k, v in state.items()} if state is not None else None
        backbone.model.save_pretrained(path, state_dict=inner)
    backbone.processor.save_pretrained(path)


def save_final_model(parts: Parts, cfg: TrainConfig, run_dir: Path) -> None:
    """Write <run_dir>/model (and <run_dir>/adapter with LoRA), each atomically."""
    acc = parts.accelerator
    targets = [("adapter", False)] if parts.peft_model is not None else []
    targets.append(("model", cfg.lora.merge_on_save))
    for name, merge in targets:
        final = run_dir / name
        if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
            continue
        tmp = run_dir / f".tmp-{name}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        write_model_folder(parts, tmp, merge=merge)
        if acc.is_main_process:
            tmp.rename(final)
        acc.wait_for_everyone()
    log.info("Final model in %s", run_dir / "model")


def run_eval(parts: Parts, cfg: TrainConfig, step: int, run_dir: Path, evals: dict[str, Any]) -> dict[str, Any]:
    """Held-out loss and accuracy at `step`; logged as a table and saved in eval.json."""
    from vlm2vla.backbones import ChatExample

    backbone = parts.backbone
    was_training = backbone.training
    backbone.eval()

    def loss_fn(items: list[HeldoutItem]) -> tuple[float, int]:
        batch = backbone.collate([ChatExample(it.images, it.messages) for it in items], max_length=cfg.max_length)
        loss, tokens = forward_loss(backbone, batch)
        return float(loss), tokens

    def generate_fn(items: list[HeldoutItem]) -> list[str]:
        return backbone.generate([ChatExample(it.images, it.prompt) for it in items], cfg.eval.max_new_tokens)

    # Greedy generation draws no random numbers, but keep the training RNG untouched regardless, so a
    # run with more evaluations takes exactly the same training steps.
    with torch.random.fork_rng(devices=[]):
        result = evaluate_heldout(parts.accelerator, parts.heldout, loss_fn, generate_fn, cfg.eval.batch_size)
    backbone.train(was_training)
    result["step"] = step
    evals = {**evals, str(step): result}
    if parts.accelerator.is_main_process:
        _write_evals(run_dir, evals)
        log.info("Held-out evaluation at step %d:\n%s", step, format_eval_table(
            {k: v for k, v in evals.items() if k in ("0", str(step))}))
    return result


def _read_evals(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "eval.json"
    return json.loads(path.read_text())["by_step"] if path.is_file() else {}


def _write_evals(run_dir: Path, evals: dict[str, Any]) -> None:
    steps = sorted(evals, key=int)
    atomic_write_json(run_dir / "eval.json", {"before": evals[steps[0]], "after": evals[steps[-1]],
                                              "by_step": {s: evals[s] for s in steps}})


def _final_metrics(parts: Parts, evals: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": parts.trainer.step, "samples_seen": parts.trainer.samples_seen}
    if evals:
        steps = sorted(evals, key=int)
        before, after = evals[steps[0]], evals[steps[-1]]
        out["heldout"] = {
            "loss_before": before["loss"], "loss_after": after["loss"],
            "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
            "majority_accuracy": after["majority_accuracy"],
            "per_source_after": {s: v["accuracy"] for s, v in after["per_source"].items()},
        }
    return out
