"""Tiny random-weight VLMs of real transformers families, built offline for tests and benchmarks.

Tested families (each built here from a config, saved with ``save_pretrained`` together with a
processor whose tokenizer is trained locally, and loaded back through the same
``AutoModelForImageTextToText`` + ``AutoProcessor`` code a hub checkpoint uses):

- Idefics3 / SmolVLM (``model_type="idefics3"``; SmolVLM-256M/500M/2.2B-Instruct are Idefics3
  checkpoints): SigLIP-style vision encoder, pixel-shuffle connector, Llama text model. SmolVLM2
  checkpoints use ``model_type="smolvlm"``: the same architecture under its own classes.
- Qwen2-VL (``model_type="qwen2_vl"``): ViT with 2x2 patch merger, Qwen2 text model with M-RoPE,
  dynamic image-token count (``image_grid_thw``). Qwen2.5-VL (``model_type="qwen2_5_vl"``): the same
  interface with a windowed-attention ViT (SwiGLU blocks, RMSNorm).
- PaliGemma (``model_type="paligemma"``): SigLIP vision tower, linear projector, Gemma text model,
  prefix-LM attention (``token_type_ids``), no chat template in the checkpoint.

Usage::

    from vlm2vla.backbones.random_models import build_family
    folder = build_family("qwen2_vl", tmp_path / "qwen")
    backbone = VLMBackbone.from_pretrained(str(folder))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    Idefics3Config,
    Idefics3Processor,
    PaliGemmaConfig,
    PaliGemmaProcessor,
    PreTrainedConfig,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLProcessor,
    SmolVLMConfig,
    SmolVLMProcessor,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

from vlm2vla.backbones.loading import NO_VIDEO, image_only_class
from vlm2vla.backbones.tokenizer import train_bpe_tokenizer

logger = logging.getLogger(__name__)

TESTED_FAMILIES = ("idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl", "paligemma")

# SmolVLM-Instruct's template (Idefics3 checkpoints): "User:<image>question<end_of_utterance>\nAssistant: answer".
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Qwen2-VL-Instruct's template, without video and vision ids.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_DEFAULT_TEXTS = (
    "a red cube left of a blue ball",
    "what color is the cube? red",
    "how many objects are there? three",
    "pick up the red block and place it in the bin",
    "open the drawer; close the gripper; push the button",
)


def build_family(family: str, out_dir: str | Path, *, texts: Iterable[str] = _DEFAULT_TEXTS, image_size: int = 32,
                 vocab_size: int = 400, seed: int = 0) -> Path:
    """Build, save and return the folder of a tiny random model of ``family``.

    Args:
        family: one of TESTED_FAMILIES.
        out_dir: folder to write (created).
        texts: tokenizer training corpus.
        image_size: square input image side in pixels.
        vocab_size: BPE vocabulary size.
        seed: torch seed for the random weights.

    Returns:
        ``out_dir`` as a Path, loadable with ``VLMBackbone.from_pretrained``.
    """
    builders: dict[str, Callable[..., tuple[PreTrainedConfig, ProcessorMixin]]] = {
        "idefics3": idefics3_parts,
        "smolvlm": smolvlm_parts,
        "qwen2_vl": qwen2_vl_parts,
        "qwen2_5_vl": qwen2_5_vl_parts,
        "paligemma": paligemma_parts,
    }
    if family not in builders:
        raise ValueError(f"unknown test family {family!r}; choose one of {TESTED_FAMILIES}")
    config, processor = builders[family](list(texts), image_size=image_size, vocab_size=vocab_size)
    return save_random_model(config, processor, out_dir, seed=seed)


def save_random_model(config: PreTrainedConfig, processor: ProcessorMixin, out_dir: str | Path, *,
                      seed: int = 0) -> Path:
    """Random-init the model for ``config`` and save it with ``processor`` into ``out_dir``.

    Args:
        config: a full image-text-to-text config.
        processor: its processor (tokenizer + image processor + chat template).
        out_dir: destination folder.
        seed: torch seed for the weights.

    Returns:
        ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("saved tiny %s (%d params) to %s", config.model_type, model.num_parameters(), out)
    return out


def idefics3_parts(texts: list[str], *, image_size: int, vocab_size: int, text_hidden: int = 64,
                   text_layers: int = 2, vision_hidden: int = 32, vision_layers: int = 2, patch_size: int = 8,
                   scale_factor: int = 2, smolvlm: bool = False) -> tuple[Idefics3Config, Idefics3Processor]:
    """Config and processor of a tiny Idefics3 (SmolVLM) without image splitting.

    Args:
        texts: tokenizer corpus.
        image_size: square image side; a multiple of ``patch_size * scale_factor``.
        vocab_size: BPE vocabulary size.
        text_hidden: Llama hidden size (intermediate is 3x).
        text_layers: Llama layers.
        vision_hidden: vision encoder width (intermediate is 4x).
        vision_layers: vision encoder layers.
        patch_size: vision patch side.
        scale_factor: pixel-shuffle factor (image tokens = (image_size / patch_size / scale_factor)^2).
        smolvlm: the same model under SmolVLM's classes (``model_type="smolvlm"``).

    Returns:
        (config, processor).
    """
    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                "<global-img>"]
    tokenizer = train_bpe_tokenizer(texts, specials, vocab_size=vocab_size, bos_token="<|im_start|>",
                                    eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
    image_processor = (SmolVLMImageProcessorPil if smolvlm else Idefics3ImageProcessorPil)(
        do_image_splitting=False, size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size},
        resample=3)  # bicubic: Lanczos gains nothing at simulator resolution
    seq_len = (image_size // patch_size // scale_factor) ** 2
    if smolvlm:  # image-only: SmolVLM's video processor needs torchvision, which CPU installs lack
        processor = image_only_class(SmolVLMProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                                       video_processor=NO_VIDEO, image_seq_len=seq_len,
                                                       chat_template=SMOLVLM_CHAT_TEMPLATE)
    else:
        processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=seq_len,
                                      chat_template=SMOLVLM_CHAT_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = (SmolVLMConfig if smolvlm else Idefics3Config)(
        vision_config=dict(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden,
                           num_hidden_layers=vision_layers, num_attention_heads=max(1, vision_hidden // 16),
                           image_size=image_size, patch_size=patch_size),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=text_hidden,
                         intermediate_size=3 * text_hidden, num_hidden_layers=text_layers,
                         num_attention_heads=max(1, text_hidden // 32), num_key_value_heads=max(1, text_hidden // 64),
                         max_position_embeddings=2048, bos_token_id=ids("<|im_start|>"),
                         eos_token_id=ids("<end_of_utterance>"), pad_token_id=ids("<|endoftext|>"),
                         tie_word_embeddings=True),
        scale_factor=scale_factor, image_token_id=ids("<image>"), tie_word_embeddings=True,
        pad_token_id=ids("<|endoftext|>"))
    return config, processor


def smolvlm_parts(texts: list[str], **kwargs) -> tuple[SmolVLMConfig, SmolVLMProcessor]:
    """Config and processor of a tiny SmolVLM (``model_type="smolvlm"``); see idefics3_parts."""
    return idefics3_parts(texts, smolvlm=True, **kwargs)


def qwen2_vl_parts(texts: list[str], *, image_size: int, vocab_size: int, text_hidden: int = 64,
                   text_layers: int = 2, vision_dim: int = 32, vision_layers: int = 2, patch_size: int = 8,
                   qwen2_5: bool = False) -> tuple[Qwen2VLConfig, Qwen2VLProcessor]:
    """Config and processor of a tiny Qwen2-VL.

    Args:
        texts: tokenizer corpus.
        image_size: square image side; images are resized to multiples of ``2 * patch_size``.
        vocab_size: BPE vocabulary size.
        text_hidden: Qwen2 hidden size (head dim 16, M-RoPE sections [2, 3, 3]).
        text_layers: Qwen2 layers.
        vision_dim: ViT width.
        vision_layers: ViT depth.
        patch_size: ViT patch side (2x2 patches merge into one image token).
        qwen2_5: Qwen2.5-VL's classes and windowed-attention ViT instead.

    Returns:
        (config, processor).
    """
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tokenizer = train_bpe_tokenizer(texts, specials, vocab_size=vocab_size, bos_token=None,
                                    eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=2, temporal_patch_size=2,
                                               min_pixels=pixels, max_pixels=pixels)
    # Image-only: the real class needs a torchvision video processor, which CPU installs lack.
    processor = image_only_class(Qwen2_5_VLProcessor if qwen2_5 else Qwen2VLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    heads = text_hidden // 16
    vision = dict(depth=vision_layers, embed_dim=vision_dim, hidden_size=text_hidden, num_heads=2,
                  patch_size=patch_size, spatial_merge_size=2, temporal_patch_size=2)
    if qwen2_5:  # Qwen2.5-VL's ViT: `hidden_size` is its width and `out_hidden_size` the text width
        vision = dict(depth=vision_layers, hidden_size=vision_dim, out_hidden_size=text_hidden,
                      intermediate_size=2 * vision_dim, num_heads=2, patch_size=patch_size, spatial_merge_size=2,
                      temporal_patch_size=2, window_size=2 * patch_size * 2, fullatt_block_indexes=[vision_layers - 1])
    config = (Qwen2_5_VLConfig if qwen2_5 else Qwen2VLConfig)(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=3 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                                        "mrope_section": [2, 3, 3]},
                         bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>")),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    return config, processor


def qwen2_5_vl_parts(texts: list[str], **kwargs) -> tuple[Qwen2_5_VLConfig, Qwen2_5_VLProcessor]:
    """Config and processor of a tiny Qwen2.5-VL; see qwen2_vl_parts."""
    return qwen2_vl_parts(texts, qwen2_5=True, **kwargs)


def paligemma_parts(texts: list[str], *, image_size: int, vocab_size: int, text_hidden: int = 64,
                    text_layers: int = 2, vision_hidden: int = 32, vision_layers: int = 2,
                    patch_size: int = 8) -> tuple[PaliGemmaConfig, PaliGemmaProcessor]:
    """Config and processor of a tiny PaliGemma (no chat template, as in the real checkpoints).

    Args:
        texts: tokenizer corpus.
        image_size: square image side; a multiple of ``patch_size``.
        vocab_size: BPE vocabulary size.
        text_hidden: Gemma hidden size (head dim 16).
        text_layers: Gemma layers.
        vision_hidden: SigLIP width.
        vision_layers: SigLIP layers.
        patch_size: SigLIP patch side (image tokens = (image_size / patch_size)^2).

    Returns:
        (config, processor).
    """
    specials = ["<pad>", "<eos>", "<bos>", "<image>"]
    tokenizer = train_bpe_tokenizer(texts, specials, vocab_size=vocab_size, bos_token="<bos>", eos_token="<eos>",
                                    pad_token="<pad>")
    seq_len = (image_size // patch_size) ** 2
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size}, resample=3,
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3)
    image_processor.image_seq_length = seq_len
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=vision_hidden,
                           intermediate_size=4 * vision_hidden, num_hidden_layers=vision_layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size),
        text_config=dict(model_type="gemma", vocab_size=len(tokenizer), hidden_size=text_hidden,
                         intermediate_size=3 * text_hidden, num_hidden_layers=text_layers,
                         num_attention_heads=text_hidden // 16, num_key_value_heads=1, head_dim=16,
                         max_position_embeddings=2048, bos_token_id=ids("<bos>"), eos_token_id=ids("<eos>"),
                         pad_token_id=ids("<pad>")),
        image_token_index=ids("<image>"), projection_dim=text_hidden, hidden_size=text_hidden,
        vocab_size=len(tokenizer), pad_token_id=ids("<pad>"))
    return config, processor
