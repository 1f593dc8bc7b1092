"""Getting a loaded model ready to train: build the tiny default, add LoRA adapters, count parameters.

    backbone = load_backbone(name, ...)          # vlm2vla.backbones.loading (one loader for every stage)
    peft_model = add_lora(backbone.model, cfg.lora) if cfg.lora.enabled else None
    backbone.freeze(cfg.freeze)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

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
