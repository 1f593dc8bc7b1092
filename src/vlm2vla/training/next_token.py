"""`vlm2vla pretrain` and `vlm2vla midtrain`: one next-token trainer (answer tokens only), two presets.

    vlm2vla pretrain --config pretrain_tiny                     # the tiny default on the embedded pool
    vlm2vla midtrain model=runs/pretrain/model data=runs/select/mixture.jsonl
    accelerate launch --num_processes 2 -m vlm2vla.cli pretrain ...   # or torchrun; DDP / FSDP

Pretraining builds the tiny default (model=tiny) and trains all of it at a high learning rate;
mid-training (EmbodiedMidtrain) continues a VLM on a curated mixture with all parameters, AdamW, a
cosine schedule and 10% warmup. Both write <run_dir>/model, a folder later stages load with
VLMBackbone.from_pretrained; see vlm2vla.training.session for every output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlm2vla.runs import Run
from vlm2vla.training.config import TrainConfig
from vlm2vla.training.session import train_next_token


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pretraining: the tiny default from scratch on a pool (see TrainConfig for every field)."""

    # where config, manifest, checkpoints, metrics and the final model go; re-running resumes
    run_dir: str = "runs/pretrain"
    # "tiny" (build the built-in tiny VLM from the data's text, then train it), a local folder, or a hub id
    model: str = "tiny"
    # AdamW peak learning rate (high: the tiny model starts from random weights)
    lr: float = 1e-3
    # passes over the training data when max_steps is 0
    epochs: float = 3.0


@dataclass(frozen=True)
class MidtrainConfig(TrainConfig):
    """Mid-training: a pretrained VLM on a curated mixture (see TrainConfig for every field)."""

    # where config, manifest, checkpoints, metrics and the final model go; re-running resumes
    run_dir: str = "runs/midtrain"
    # the VLM to continue: a folder (e.g. runs/pretrain/model) or a hub id
    model: str = "runs/pretrain/model"
    # the curated mixture (LLaVA JSON/JSONL/parquet from `vlm2vla select`) or a pool
    data: str = "runs/select/mixture.jsonl"
    # AdamW peak learning rate
    lr: float = 2e-5


def pretrain(cfg: PretrainConfig, run: Run) -> dict[str, Any]:
    """Stage entry of `vlm2vla pretrain`; returns the final metrics (also in the manifest)."""
    return train_next_token(cfg, run)


def midtrain(cfg: MidtrainConfig, run: Run) -> dict[str, Any]:
    """Stage entry of `vlm2vla midtrain`; returns the final metrics (also in the manifest)."""
    return train_next_token(cfg, run)
