"""The built-in default VLM: a tiny Idefics3 (SmolVLM architecture) for 128x128 simulator images.

Why Idefics3: it is SmolVLM's architecture (the paper-scale recipes use SmolVLM-256M), its
pixel-shuffle connector keeps image tokens few (16 per 128x128 image here), and its processor
has a PIL path, so it runs on CPU installs without torchvision.

Default size (vocab 4096): ~5.2M parameters (4.8M when the corpus only supports ~2.4k tokens):
Llama text model 256 wide x 4 layers (tied embeddings), SigLIP-style vision encoder 128 wide x 4
layers on 16x16 patches, pixel shuffle x2. Batch 8 forward: ~45 ms on 2 CPU cores.

    from vlm2vla.backbones.tiny import build_tiny_vlm
    folder = build_tiny_vlm("runs/tiny-vlm", texts=pool_texts)
    backbone = VLMBackbone.from_pretrained(str(folder))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from vlm2vla.backbones.random_models import idefics3_parts, save_random_model
from vlm2vla.fileio import atomic_dir

logger = logging.getLogger(__name__)

TINY_TEXT_HIDDEN = 256
TINY_TEXT_LAYERS = 4
TINY_VISION_HIDDEN = 128
TINY_VISION_LAYERS = 4
TINY_PATCH = 16
TINY_SCALE_FACTOR = 2


def build_tiny_vlm(out_dir: str | Path, texts: Iterable[str], image_size: int = 128, vocab_size: int = 4096,
                   seed: int = 0, *, overwrite: bool = False) -> Path:
    """Train a tokenizer on ``texts``, build a random tiny Idefics3 and save it to ``out_dir`` atomically.

    Args:
        out_dir: final checkpoint folder (built in a hidden temp folder beside it, then renamed).
        texts: tokenizer corpus (pool text and robot instructions).
        image_size: simulator image side; a multiple of 32 (patch 16 x pixel shuffle 2).
        vocab_size: BPE vocabulary size (including special and byte tokens).
        seed: weight initialisation seed.
        overwrite: replace an existing ``out_dir`` (otherwise FileExistsError).

    Returns:
        ``out_dir`` as a Path, loadable with ``VLMBackbone.from_pretrained``.

    Raises:
        ValueError: ``image_size`` is not a multiple of 32.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    step = TINY_PATCH * TINY_SCALE_FACTOR
    if image_size % step:
        raise ValueError(f"image_size must be a multiple of {step} (patch {TINY_PATCH} x pixel shuffle "
                         f"{TINY_SCALE_FACTOR}), got {image_size}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to rebuild the tiny VLM there")
    config, processor = idefics3_parts(
        list(texts), image_size=image_size, vocab_size=vocab_size, text_hidden=TINY_TEXT_HIDDEN,
        text_layers=TINY_TEXT_LAYERS, vision_hidden=TINY_VISION_HIDDEN, vision_layers=TINY_VISION_LAYERS,
        patch_size=TINY_PATCH, scale_factor=TINY_SCALE_FACTOR)
    with atomic_dir(out) as tmp:
        save_random_model(config, processor, tmp, seed=seed)
    logger.info("built tiny VLM in %s", out)
    return out
