"""`vlm2vla pretrain` and `vlm2vla midtrain`: next-token training (answer tokens only) on the training driver.

    vlm2vla pretrain --config pretrain_tiny                     # the tiny default on the embedded pool
    vlm2vla midtrain model=runs/pretrain/model data=runs/select/mixture.jsonl optim.lr=2e-5
    accelerate launch --num_processes 2 -m vlm2vla.cli pretrain ...   # or torchrun; DDP / FSDP

The driver (driver.py) owns resume, the step loop, checkpoints and metrics; the task here supplies the
answer-token loss, held-out accuracy and the model folders. Settings: next_token_config.py.

Outputs in the run directory (besides the driver's checkpoints/ and metrics.jsonl):

    tiny_init/   the random-init tiny default (model=tiny only), built once
    eval.json    held-out loss and accuracy per source at step 0, every eval_interval, and the end
    model/       the final model (a transformers folder VLMBackbone.from_pretrained loads)
    adapter/     the LoRA adapter (lora.enabled only)

Every answer token weighs the same in a step, whatever its split into micro-batches and processes:
the loss of a batch is its summed token loss and its weight is its answer-token count (driver.py).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from vlm2vla.backbones.loading import TINY_MODEL
from vlm2vla.runs import Run
from vlm2vla.training.data import ChatCollator
from vlm2vla.training.driver import TaskSetup, run_training
from vlm2vla.training.evaluate_vlm import HeldoutItem, evaluate_heldout, format_eval_table, select_items
from vlm2vla.training.loss import answer_loss_sum, count_answer_tokens
from vlm2vla.training.model_setup import add_lora, build_tiny, count_parameters, tiny_texts
from vlm2vla.training.next_token_config import MidtrainConfig, PretrainConfig, TrainConfig
from vlm2vla.training.samples import load_heldout, load_samples

log = logging.getLogger(__name__)


def forward_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Summed answer-token loss and answer-token count of one collated batch.

    Args:
        model: a VLMBackbone, or its DDP/FSDP wrapper (called as `model(batch)`).
        batch: the backbone's collate output.
    """
    labels = batch["labels"]
    # Without labels the model skips its own (mean) loss; ours is the token sum.
    logits = model({k: v for k, v in batch.items() if k != "labels"}).logits  # [B, T, V]
    return answer_loss_sum(logits, labels), count_answer_tokens(labels)


class NextTokenTask:
    """What pretrain and midtrain add to the training driver."""

    label = "train"
    weight_name = "tokens"
    eval_file = "eval.json"

    def __init__(self, cfg: TrainConfig, run: Run):
        self.cfg, self.run = cfg, run
        self.eval_interval, self.eval_at_start = cfg.eval_interval, cfg.eval.at_start
        self.accelerator: Accelerator | None = None
        self.backbone: Any = None  # VLMBackbone (unwrapped)
        self.peft_model: Any = None  # peft wrapper when LoRA is on
        self.heldout: list[HeldoutItem] = []
        self.prepared_model: Any = None  # set by the driver: the DDP/FSDP-wrapped backbone

    def setup(self, accelerator: Accelerator) -> TaskSetup:
        """Samples, the backbone (+LoRA, freezing, gradient checkpointing), held-out items."""
        from vlm2vla.backbones import ChatExample
        from vlm2vla.vlm_data.dataset import VLMChatDataset

        cfg = self.cfg
        self.accelerator = accelerator
        train_samples, heldout_samples = load_samples(cfg.data)
        if cfg.eval.data:
            heldout_samples = load_heldout(cfg.eval.data)
        backbone = self._load_model(train_samples)
        self.peft_model = add_lora(backbone.model, cfg.lora) if cfg.lora.enabled else None
        backbone.freeze(cfg.freeze)
        if cfg.gradient_checkpointing:
            # Non-reentrant checkpointing works with DDP and with frozen inputs (LoRA, frozen embeddings).
            backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.backbone = backbone
        self.heldout = _heldout_items(heldout_samples, cfg)
        return TaskSetup(
            model=backbone, dataset=VLMChatDataset(train_samples, on_bad_image="none"),
            collator=ChatCollator(backbone.collate, ChatExample, cfg.max_length),
            inputs={"data": cfg.data, "model": cfg.model},
            metrics={"parameters": count_parameters(backbone), "train_samples": len(train_samples),
                     "heldout_samples": len(self.heldout)})

    def _load_model(self, train_samples: list) -> Any:
        """The backbone named by cfg.model; the tiny default is built once, by the main process."""
        from vlm2vla.backbones import load_backbone

        cfg, acc = self.cfg, self.accelerator
        name = cfg.model
        if cfg.model == TINY_MODEL:
            folder = self.run.dir / "tiny_init"
            if acc.is_main_process:
                build_tiny(folder, lambda: tiny_texts(train_samples), cfg.tiny_image_size, cfg.seed)
            acc.wait_for_everyone()
            name = str(folder)
        return load_backbone(name, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)

    def weight(self, batch: dict[str, Any]) -> int:
        """Answer tokens of the batch."""
        return count_answer_tokens(batch["labels"])

    def samples(self, batch: dict[str, Any]) -> int:
        """Samples of the batch."""
        return len(batch["labels"])

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed answer-token loss (no part losses)."""
        return forward_loss(model, batch)[0], {}

    def has_evaluation(self) -> bool:
        """Held-out items exist."""
        return bool(self.heldout)

    def evaluate(self, step: int, evals: dict[str, Any]) -> dict[str, Any]:
        """Held-out loss and accuracy per source at `step` (sharded over processes); logged as a table."""
        from vlm2vla.backbones import ChatExample

        cfg, backbone = self.cfg, self.backbone
        was_training = backbone.training
        backbone.eval()

        def loss_fn(items: list[HeldoutItem]) -> tuple[float, int]:
            batch = backbone.collate([ChatExample(it.images, it.messages) for it in items], max_length=cfg.max_length)
            loss, tokens = forward_loss(backbone, batch)
            return float(loss), tokens

        def generate_fn(items: list[HeldoutItem]) -> list[str]:
            return backbone.generate([ChatExample(it.images, it.prompt) for it in items], cfg.eval.max_new_tokens)

        result = evaluate_heldout(self.accelerator, self.heldout, loss_fn, generate_fn, cfg.eval.batch_size)
        backbone.train(was_training)
        result["step"] = step
        if self.accelerator.is_main_process:
            shown = {k: v for k, v in {**evals, str(step): result}.items() if k in ("0", str(step))}
            log.info("Held-out evaluation at step %d:\n%s", step, format_eval_table(shown))
        return result

    def eval_document(self, evals: dict[str, Any]) -> dict[str, Any]:
        """eval.json: the first and last evaluation, and every one by step."""
        steps = list(evals)
        return {"before": evals[steps[0]], "after": evals[steps[-1]], "by_step": evals}

    def save_model(self, path: Path) -> None:
        """A checkpoint's model/: the transformers folder (the adapter alone with LoRA)."""
        self._write_model_folder(path, merge=False)

    def _write_model_folder(self, path: Path, merge: bool) -> None:
        """Write the model as a transformers folder (with the processor); every process must call this.

        With LoRA, `merge=False` writes the adapter only (peft format) and `merge=True` folds the adapter
        into the base weights first, so the folder loads without peft.
        """
        acc, backbone = self.accelerator, self.backbone
        # FSDP shards the weights: gather a full state dict collectively, then one process writes it.
        state = acc.get_state_dict(self.prepared_model) if acc.distributed_type == DistributedType.FSDP else None
        if not acc.is_main_process:
            return
        if self.peft_model is not None and not merge:
            self.peft_model.save_pretrained(path)
        elif self.peft_model is not None:
            self.peft_model.merge_and_unload().save_pretrained(path)
        else:
            inner = {k.removeprefix("model."): v for k, v in state.items()} if state is not None else None
            backbone.model.save_pretrained(path, state_dict=inner)
        backbone.processor.save_pretrained(path)

    def save_final(self, run_dir: Path) -> dict[str, Path]:
        """Write <run_dir>/model (and <run_dir>/adapter with LoRA), each atomically."""
        acc = self.accelerator
        targets = [("adapter", False)] if self.peft_model is not None else []
        targets.append(("model", self.cfg.lora.merge_on_save))
        for name, merge in targets:
            final = run_dir / name
            if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
                continue
            tmp = run_dir / f".tmp-{name}"
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            self._write_model_folder(tmp, merge=merge)
            if acc.is_main_process:
                tmp.rename(final)
            acc.wait_for_everyone()
        log.info("Final model in %s", run_dir / "model")
        return {"model": run_dir / "model"}

    def final_metrics(self, evals: dict[str, Any]) -> dict[str, Any]:
        """Held-out loss and accuracy before and after training."""
        if not evals:
            return {}
        steps = sorted(evals, key=int)
        before, after = evals[steps[0]], evals[steps[-1]]
        return {"heldout": {
            "loss_before": before["loss"], "loss_after": after["loss"],
            "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
            "majority_accuracy": after["majority_accuracy"],
            "per_source_after": {s: v["accuracy"] for s, v in after["per_source"].items()},
        }}


def _heldout_items(samples: list, cfg: TrainConfig) -> list[HeldoutItem]:
    """Held-out questions (capped per source) with their images loaded."""
    from vlm2vla.vlm_data.dataset import VLMChatDataset

    chosen = select_items(samples, cfg.eval.max_samples_per_source)
    dataset = VLMChatDataset(chosen, on_bad_image="none")
    items = (dataset[i] for i in range(len(dataset)))
    return [HeldoutItem(it["source"], it["images"], it["messages"]) for it in items if it is not None]


def train_next_token(cfg: TrainConfig, run: Run, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume training) the model of `cfg` into `run.dir` (outputs: see the module docstring).

    Args:
        cfg: the run's settings.
        run: the open run directory.
        stop_after: stop with a checkpoint once this many steps are done (to split a run into jobs);
            None trains to the end and writes the final model.

    Returns:
        Final metrics: steps, held-out figures before and after, parameter counts.
    """
    return run_training(NextTokenTask(cfg, run), cfg, run, stop_after)


def pretrain(cfg: PretrainConfig, run: Run) -> dict[str, Any]:
    """Stage entry of `vlm2vla pretrain`; returns the final metrics (also in the manifest)."""
    return train_next_token(cfg, run)


def midtrain(cfg: MidtrainConfig, run: Run) -> dict[str, Any]:
    """Stage entry of `vlm2vla midtrain`; returns the final metrics (also in the manifest)."""
    return train_next_token(cfg, run)
