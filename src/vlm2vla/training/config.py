"""The next-token trainer's config, shared by `vlm2vla pretrain` and `vlm2vla midtrain`.

`TrainConfig` holds every knob of one training run; the stage configs in next_token.py only change
defaults (pretrain starts the tiny default from scratch at a high learning rate, midtrain fine-tunes a
given VLM on a curated mixture at a low one). Nested sub-configs group LoRA and evaluation settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlm2vla.backbones.families import FREEZE_GROUPS
from vlm2vla.config import check_choices, choice

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
REPORTERS = ("tensorboard", "wandb")
# Projection names shared by Llama/Qwen/Gemma/SmolLM-style language models.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraOptions:
    """LoRA adapters (peft) instead of full-parameter training."""

    # train LoRA adapters only; the base weights stay frozen
    enabled: bool = False
    # adapter rank
    r: int = 16
    # scaling numerator (the update is scaled by alpha / r)
    alpha: int = 32
    # dropout on the adapter input
    dropout: float = 0.0
    # module-name suffixes that get adapters (matched against the last component of the module name)
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    # only put adapters inside the language model (the vision encoder reuses names such as q_proj)
    language_model_only: bool = True
    # the final <run_dir>/model folder holds merged weights (loadable without peft); the adapter is kept too
    merge_on_save: bool = True

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module, e.g. [q_proj, v_proj]")


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
    # per-device micro-batch size
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
    # gradient-norm clipping (0 = off)
    max_grad_norm: float = 1.0
    # optimizer steps; 0 derives them from `epochs`
    max_steps: int = 0
    # passes over the training data when max_steps is 0
    epochs: float = 1.0
    # prompt+answer tokens per sample (longer samples are truncated)
    max_length: int = 512
    # parameter groups frozen during training
    freeze: tuple[str, ...] = choice(*FREEZE_GROUPS, default=())
    # LoRA adapters instead of full-parameter training
    lora: LoraOptions = field(default_factory=LoraOptions)
    # held-out evaluation
    eval: EvalOptions = field(default_factory=EvalOptions)
    # "auto" picks bf16 on GPUs that support it and "no" elsewhere
    mixed_precision: str = choice(*MIXED_PRECISION)
    # recompute activations in backward to save memory (large models)
    gradient_checkpointing: bool = False
    # steps between metrics lines
    log_interval: int = 10
    # steps between held-out evaluations (0 = only before and after training)
    eval_interval: int = 0
    # steps between checkpoints (0 = only the final one)
    save_interval: int = 100
    # checkpoints kept (the oldest are deleted)
    keep_checkpoints: int = 2
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
        check_optimization(self, at_least_one=("batch_size", "grad_accum", "max_length", "log_interval",
                                               "keep_checkpoints"),
                           non_negative=("max_steps", "eval_interval", "save_interval", "num_workers",
                                         "weight_decay", "max_grad_norm"))
        if not self.model:
            raise ValueError("model must be 'tiny', a local folder or a hub id")
        if not self.data:
            raise ValueError("data must name a pool.parquet, a pool run directory or a LLaVA JSON/JSONL file")


def check_optimization(cfg: object, at_least_one: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """Checks every trainer's config shares: counts, intervals, lr, warmup, run length.

    Args:
        cfg: a config with lr, warmup_ratio, max_steps and epochs fields.
        at_least_one: fields that must be >= 1.
        non_negative: fields that must be >= 0.

    Raises:
        ValueError: naming the first bad field and its value.
    """
    for name in at_least_one:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.max_steps == 0 and cfg.epochs <= 0:
        raise ValueError(f"set max_steps > 0 or epochs > 0 (got max_steps=0, epochs={cfg.epochs})")
