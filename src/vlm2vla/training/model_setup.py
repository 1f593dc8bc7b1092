"""Getting the model ready to train: load (or build the tiny default), add LoRA, freeze groups.

    backbone = load_backbone(cfg, run_dir, tokenizer_texts)   # "tiny" is built once under run_dir
    peft_model = add_lora(backbone, cfg.lora) if cfg.lora.enabled else None
    backbone.freeze(cfg.freeze)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from vlm2vla.training.config import LoraOptions, TrainConfig

log = logging.getLogger(__name__)

# Module-name parts that mark a VLM's language model in the transformers families we support.
_LM_MARKERS = ("language_model", "text_model")


def tiny_texts(samples: Iterable[Any]) -> list[str]:
    """Text the tiny default's tokenizer is trained on: every turn of `samples` and every Meta-World
    instruction (canonical, seen and unseen paraphrases), so robot prompts tokenise well later."""
    from vlm2vla.sim import ALL_TASKS, get_instructions

    texts = [text for sample in samples for _, text in sample.conversations]
    for task in ALL_TASKS:
        inst = get_instructions(task)
        texts.extend({inst.canonical, *inst.seen, *inst.unseen})
    return texts


def build_tiny(folder: Path, texts: Callable[[], list[str]], image_size: int, seed: int) -> Path:
    """Build the random-init tiny VLM into `folder` unless it is already there (main process only).

    build_tiny_vlm writes atomically, so an interrupted build leaves no folder and is simply redone.
    """
    if (folder / "config.json").is_file():
        return folder
    from vlm2vla.backbones.tiny import build_tiny_vlm

    log.info("Building the tiny default VLM (image size %d) in %s", image_size, folder)
    return build_tiny_vlm(folder, texts(), image_size=image_size, seed=seed)


def load_backbone(name_or_path: str, cfg: TrainConfig) -> Any:
    """Load a VLMBackbone from a local folder or hub id, with a plain message when that fails.

    Raises:
        ValueError: the model cannot be loaded (no such folder, a hub id not in the local cache while
            offline, not an image-text-to-text model); the message says which and what to do.
    """
    from vlm2vla.backbones import VLMBackbone, VLMLoadError

    dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
    try:
        return VLMBackbone.from_pretrained(name_or_path, trust_remote_code=cfg.trust_remote_code, dtype=dtype)
    except VLMLoadError as err:  # already says what was wrong and what to do
        raise ValueError(f"Cannot load model {name_or_path!r}: {err}") from err
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"Cannot load model {name_or_path!r} ({type(err).__name__}: {err}). Pass a folder written by "
            "save_pretrained, a hub id already in the local cache, or model=tiny."
        ) from err


def lora_targets(model: torch.nn.Module, opts: LoraOptions) -> list[str]:
    """Full names of the Linear modules that get adapters (see LoraOptions)."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] not in opts.target_modules:
            continue
        if opts.language_model_only and not any(m in name.split(".") for m in _LM_MARKERS):
            continue
        names.append(name)
    if not names:
        raise ValueError(
            f"lora.target_modules {list(opts.target_modules)} match no Linear layer"
            f"{' inside the language model' if opts.language_model_only else ''}; "
            "set lora.target_modules to names that exist (see model.named_modules())."
        )
    return names


def add_lora(model: torch.nn.Module, opts: LoraOptions) -> Any:
    """Inject LoRA adapters into `model` in place and freeze everything else.

    Returns:
        The peft wrapper, for saving the adapter and merging it back; `model` itself is trained.
    """
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, opts)
    config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets,
                        bias="none")
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA on %d modules: %d trainable parameters", len(targets), trainable)
    return peft_model


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "total": total}
