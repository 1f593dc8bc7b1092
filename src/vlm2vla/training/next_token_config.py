"""Settings of `vlm2vla pretrain` and `vlm2vla midtrain`: one next-token trainer, two presets of defaults.

    vlm2vla pretrain --config pretrain_tiny                     # the tiny default on the embedded pool
    vlm2vla midtrain model=runs/pretrain/model data=runs/select/mixture.jsonl optim.lr=2e-5
    accelerate launch --num_processes 2 -m vlm2vla.cli pretrain ...   # or torchrun; DDP / FSDP

Pretraining builds the tiny default (model=tiny) and trains all of it at a high learning rate;
mid-training (EmbodiedMidtrain) continues a VLM on a curated mixture with all parameters, AdamW, a
cosine schedule and 10% warmup. Both write <run_dir>/model, a folder later stages load with
VLMBackbone.from_pretrained. The run itself (resume, steps, checkpoints, metrics) is the shared
training driver (driver.py); what is particular to next-token training is in next_token.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vlm2vla.backbones.families import FREEZE_GROUPS
from vlm2vla.config import check_choices, choice
from vlm2vla.training.checkpoint import CheckpointConfig
from vlm2vla.training.metrics import REPORTERS
from vlm2vla.training.model_setup import LoraOptions
from vlm2vla.training.optim import OptimConfig

# Flat names of the settings that moved into the nested configs (answered with "did you mean").
MOVED_FIELDS = {"save_interval": "checkpoint.interval", "keep_checkpoints": "checkpoint.keep",
                **{name: f"optim.{name}" for name in ("batch_size", "grad_accum", "lr", "weight_decay", "betas",
                                                      "warmup_ratio", "max_steps", "epochs", "max_grad_norm",
                                                      "mixed_precision")}}


@dataclass(frozen=True)
class EvalOptions:
    """Held-out evaluation: next-token loss and greedy answer accuracy per source."""

    # held-out data; "" uses the held-out split of `data` when it has one
    data: str = ""
    # held-out samples used per source (0 = all)
    max_samples_per_source: int = 64
    # samples per forward / generate call
    batch_size: int = 16
    # tokens generated per answer
    max_new_tokens: int = 24
    # evaluate before the first step (step 0) as the "before" figure
    at_start: bool = True

    def __post_init__(self) -> None:
        if self.max_samples_per_source < 0:
            raise ValueError(f"eval.max_samples_per_source must be >= 0, got {self.max_samples_per_source}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("eval.batch_size and eval.max_new_tokens must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one next-token training run (answer tokens only)."""

    moved_fields: ClassVar[dict[str, str]] = MOVED_FIELDS

    # where config, manifest, checkpoints, metrics and the final model go; re-running resumes
    run_dir: str = "runs/train"
    # "tiny" (build the built-in tiny VLM from the data's text, then train it), a local folder, or a hub id
    model: str = "tiny"
    # training data: a pool.parquet, a pool run directory, or a LLaVA JSON/JSONL mixture
    data: str = "runs/pool"
    # allow model repositories to run their own Python code (off unless you trust the repository)
    trust_remote_code: bool = False
    # dtype the weights are loaded in ("" = the checkpoint's own; training keeps float32 master weights)
    dtype: str = ""
    # image side of the tiny default (its processor resizes to this)
    tiny_image_size: int = 128
    # batch, accumulation, AdamW, schedule, run length, clipping, precision
    optim: OptimConfig = field(default_factory=OptimConfig)
    # prompt+answer tokens per sample (longer samples are truncated)
    max_length: int = 512
    # parameter groups frozen during training
    freeze: tuple[str, ...] = choice(*FREEZE_GROUPS, default=())
    # LoRA adapters instead of full-parameter training
    lora: LoraOptions = field(default_factory=LoraOptions)
    # held-out evaluation
    eval: EvalOptions = field(default_factory=EvalOptions)
    # recompute activations in backward to save memory (large models)
    gradient_checkpointing: bool = False
    # steps between metrics lines
    log_interval: int = 10
    # steps between held-out evaluations (0 = only before and after training)
    eval_interval: int = 0
    # checkpoint interval and how many are kept
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # seed of initialisation, data order and dropout
    seed: int = 0
    # dataloader worker processes (decoding and tokenisation happen there)
    num_workers: int = 2
    # also log to these when installed
    report_to: tuple[str, ...] = choice(*REPORTERS, default=())
    # show a progress bar (main process only)
    progress: bool = True

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("max_length", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_interval", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.model:
            raise ValueError("model must be 'tiny', a local folder or a hub id")
        if not self.data:
            raise ValueError("data must name a pool.parquet, a pool run directory or a LLaVA JSON/JSONL file")


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pretraining: the tiny default from scratch on a pool (see TrainConfig for every field)."""

    # where config, manifest, checkpoints, metrics and the final model go; re-running resumes
    run_dir: str = "runs/pretrain"
    # "tiny" (build the built-in tiny VLM from the data's text, then train it), a local folder, or a hub id
    model: str = "tiny"
    # batch, accumulation, AdamW, schedule, run length, clipping, precision (a high learning rate: the tiny
    # model starts from random weights)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, epochs=3.0))


@dataclass(frozen=True)
class MidtrainConfig(TrainConfig):
    """Mid-training: a pretrained VLM on a curated mixture (see TrainConfig for every field)."""

    # where config, manifest, checkpoints, metrics and the final model go; re-running resumes
    run_dir: str = "runs/midtrain"
    # the VLM to continue: a folder (e.g. runs/pretrain/model) or a hub id
    model: str = "runs/pretrain/model"
    # the curated mixture (LLaVA JSON/JSONL/parquet from `vlm2vla select`) or a pool
    data: str = "runs/select/mixture.jsonl"
    # batch, accumulation, AdamW, schedule, run length, clipping, precision
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5))
