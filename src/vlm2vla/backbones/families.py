"""Per-family facts: module prefixes of the freeze groups, image-tensor layout, prompt quirks.

Everything family-specific lives in FAMILIES; the rest of the package reads a Family record and
never branches on the model class. An unknown ``model_type`` gets GENERIC, whose prefixes cover
the usual transformers layouts (LLaVA, Gemma3, ...); parameters that match no prefix land in
the "other" group, which ``parameter_groups`` reports so a new family is easy to add.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FREEZE_GROUPS = ("vision", "connector", "language_model", "word_embeddings")

# PaliGemma checkpoints ship no chat template; this one writes big_vision's layout
# "<image>...<bos>prefix\n" + "suffix<eos>", one prefix/suffix pair per turn. The newline is a
# Jinja expression because chat templates run with trim_blocks (a literal one after a tag vanishes).
PALIGEMMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% if loop.first %}<bos>{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<eos>{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    """What differs between VLM families, as data.

    Attributes:
        name: short family name (reported as ``VLMBackbone.family``).
        model_types: transformers ``config.model_type`` values of this family.
        prefixes: freeze group -> parameter-name prefixes; the longest matching prefix wins, so
            "model.visual.merger" (connector) beats "model.visual" (vision). "word_embeddings" is
            not listed: it is the model's input-embedding module, found at run time.
        per_sample_pixels: True when pixel tensors are [B, N_images, ...] (Idefics3); False when
            images of the whole batch are concatenated on dim 0 (Qwen2-VL patches, PaliGemma).
        manual_image_tokens: expand each image placeholder to ``image_seq_length`` image tokens
            here instead of through ``processor(...)``; PaliGemma's processor inserts <bos> and a
            trailing newline of its own, which breaks multi-turn chat layouts.
        prefix_lm: the model takes ``token_type_ids`` (0 = bidirectional prompt, 1 = causal rest).
        chat_template: used when the checkpoint has none.
        image_placeholder: the string the chat template emits per image.
    """

    name: str
    model_types: tuple[str, ...]
    prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    per_sample_pixels: bool = False
    manual_image_tokens: bool = False
    prefix_lm: bool = False
    chat_template: str | None = None
    image_placeholder: str = "<image>"


_LM_HEAD = ("lm_head",)

FAMILIES: tuple[Family, ...] = (
    Family(
        name="idefics3",
        model_types=("idefics3", "smolvlm"),
        prefixes={"vision": ("model.vision_model",), "connector": ("model.connector",),
                  "language_model": ("model.text_model", *_LM_HEAD)},
        per_sample_pixels=True,
    ),
    Family(
        name="qwen2_vl",
        model_types=("qwen2_vl", "qwen2_5_vl"),
        prefixes={"vision": ("model.visual",), "connector": ("model.visual.merger",),
                  "language_model": ("model.language_model", *_LM_HEAD)},
        image_placeholder="<|image_pad|>",
    ),
    Family(
        name="paligemma",
        model_types=("paligemma",),
        prefixes={"vision": ("model.vision_tower",), "connector": ("model.multi_modal_projector",),
                  "language_model": ("model.language_model", *_LM_HEAD)},
        manual_image_tokens=True,
        prefix_lm=True,
        chat_template=PALIGEMMA_CHAT_TEMPLATE,
    ),
)

GENERIC = Family(
    name="generic",
    model_types=(),
    prefixes={"vision": ("model.vision_tower", "model.vision_model", "model.visual"),
              "connector": ("model.multi_modal_projector", "model.connector", "model.visual.merger"),
              "language_model": ("model.language_model", "model.text_model", *_LM_HEAD)},
)


def family_for(model_type: str) -> Family:
    """The Family record of a transformers ``model_type`` (GENERIC when not in the table).

    Args:
        model_type: ``config.model_type`` of the checkpoint.

    Returns:
        The matching Family.
    """
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return GENERIC


def group_of(name: str, family: Family, embedding_names: set[str]) -> str:
    """Freeze group of one parameter name.

    Args:
        name: a name from ``model.named_parameters()``.
        family: the model's Family.
        embedding_names: names of the input-embedding parameters (group "word_embeddings").

    Returns:
        One of FREEZE_GROUPS, or "other" when no prefix matches.
    """
    if name in embedding_names:
        return "word_embeddings"
    best, best_len = "other", -1
    for group, prefixes in family.prefixes.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = group, len(prefix)
    return best
