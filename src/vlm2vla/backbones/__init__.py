"""One interface over transformers image-text-to-text VLMs, and the tiny built-in default.

    from vlm2vla.backbones import ChatExample, VLMBackbone
    backbone = VLMBackbone.from_pretrained("HuggingFaceTB/SmolVLM-256M-Instruct")  # or a folder

Tested families: see ``vlm2vla.backbones.random_models`` (Idefics3/SmolVLM, Qwen2-VL, PaliGemma).
"""

from vlm2vla.backbones.backbone import VLMBackbone, load_backbone
from vlm2vla.backbones.chat import ChatExample
from vlm2vla.backbones.families import FREEZE_GROUPS
from vlm2vla.backbones.loading import VLMLoadError

__all__ = ["FREEZE_GROUPS", "ChatExample", "VLMBackbone", "VLMLoadError", "build_tiny_vlm", "load_backbone"]


def __getattr__(name: str):
    """Import the tiny-model builder lazily (it pulls in the tokenizer trainer)."""
    if name == "build_tiny_vlm":
        from vlm2vla.backbones.tiny import build_tiny_vlm

        return build_tiny_vlm
    raise AttributeError(name)
