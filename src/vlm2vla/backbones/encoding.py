"""Turn ChatExamples into model inputs: per-example tokens and labels, then one left-padded batch.

Each example is rendered with the chat template, split into untrained / answer segments
(chat.split_segments), and each segment is tokenized on its own: segments holding images go
through the processor (which expands image placeholders and makes pixel tensors), the others
through the tokenizer. Tokenizing the prompt apart from the answer gives exactly the ids the
model sees at inference (prompt ids + generated ids).

Left padding (documented choice): the last prompt token and the K appended query tokens sit at
the same positions (-K-1 .. -1) in every row, and generation needs it anyway. Families here use
rotary positions, which are shift-invariant, so padding does not change the real tokens' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import ProcessorMixin

from vlm2vla.backbones.chat import ChatExample, Render, split_segments, template_messages
from vlm2vla.backbones.families import Family

IGNORE = -100


@dataclass
class Encoded:
    """One example's tokens before batching.

    Attributes:
        ids: token ids.
        labels: target ids, IGNORE outside answers.
        token_types: 0 for the first (prompt) segment, 1 after it (prefix-LM families).
        extras: other per-token processor outputs (e.g. Qwen2-VL ``mm_token_type_ids``).
        images: per-image processor outputs (``pixel_values``, ``image_grid_thw``, ...), one dict per call.
        min_length: tokens that must survive truncation (up to the last image token).
    """

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    token_types: list[int] = field(default_factory=list)
    extras: dict[str, list[int]] = field(default_factory=dict)
    images: list[dict[str, torch.Tensor]] = field(default_factory=list)
    min_length: int = 0


def encode_example(example: ChatExample, processor: ProcessorMixin, family: Family, render: Render, *,
                   add_generation_prompt: bool) -> Encoded:
    """Tokens, labels and image tensors of one example.

    Args:
        example: images + messages.
        processor: the checkpoint's processor.
        family: the model's Family record.
        render: chat-template renderer.
        add_generation_prompt: end with the assistant prompt.

    Returns:
        The Encoded example.

    Raises:
        ValueError: the template placed a different number of images than the example has.
    """
    segments = split_segments(template_messages(example), render, family.image_placeholder,
                              add_generation_prompt=add_generation_prompt)
    placed = sum(s.num_images for s in segments)
    if placed != len(example.images):
        raise ValueError(f"chat template wrote {placed} {family.image_placeholder!r} placeholders for "
                         f"{len(example.images)} images")
    enc, next_image = Encoded(), 0
    for index, seg in enumerate(segments):
        if not seg.text:
            continue
        images = example.images[next_image: next_image + seg.num_images]
        next_image += seg.num_images
        ids, extras = _tokenize(seg.text, images, processor, family)
        pixels = extras.pop("_images", None)
        _append(enc, ids, extras, trained=seg.trained, token_type=int(index > 0))
        if pixels is not None:
            enc.min_length = len(enc.ids)
            enc.images.append(pixels)
    return enc


def _tokenize(text: str, images: list, processor: ProcessorMixin, family: Family) -> tuple[list[int], dict]:
    """Ids of one segment, plus per-token extras and (under key "_images") image tensors."""
    tokenizer = processor.tokenizer
    if not images:
        return tokenizer(text, add_special_tokens=False)["input_ids"], {}
    if family.manual_image_tokens:
        expanded = text.replace(family.image_placeholder, processor.image_token * processor.image_seq_length)
        pixels = processor.image_processor(images, return_tensors="pt")
        return tokenizer(expanded, add_special_tokens=False)["input_ids"], {"_images": dict(pixels)}
    out = processor(text=[text], images=[images], return_tensors="pt", add_special_tokens=False)
    ids = out["input_ids"]
    extras = {k: v[0].tolist() for k, v in out.items()
              if k not in ("input_ids", "attention_mask") and torch.is_tensor(v) and v.shape == ids.shape}
    extras["_images"] = {k: v for k, v in out.items() if k not in extras and k not in ("input_ids", "attention_mask")}
    return ids[0].tolist(), extras


def _append(enc: Encoded, ids: list[int], extras: dict, *, trained: bool, token_type: int) -> None:
    """Append one segment's tokens to ``enc`` (extras default to 0 where a segment lacks them)."""
    start = len(enc.ids)
    enc.ids += ids
    enc.labels += ids if trained else [IGNORE] * len(ids)
    enc.token_types += [token_type] * len(ids)
    for key in extras:
        enc.extras.setdefault(key, [0] * start)
    for key, values in enc.extras.items():
        values += extras.get(key, [0] * len(ids))


@dataclass
class Collator:
    """Picklable batch builder (processor + family only), for DataLoader workers.

    ``VLMBackbone.collator()`` returns one; calling it equals ``VLMBackbone.collate``.

    Attributes:
        processor: the checkpoint's processor.
        family: the model's Family record.
        name: checkpoint name, for error messages.
    """

    processor: ProcessorMixin
    family: Family
    name: str = ""

    def __call__(self, examples: list[ChatExample], *, add_generation_prompt: bool = False, num_queries: int = 0,
                 max_length: int | None = None) -> dict[str, torch.Tensor]:
        """See ``VLMBackbone.collate``."""
        rows = [encode_example(ex, self.processor, self.family, self.render,
                               add_generation_prompt=add_generation_prompt) for ex in examples]
        return collate_encoded(rows, pad_id=self.pad_id, family=self.family, num_queries=num_queries,
                               max_length=max_length)

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """Chat-template text of ``messages`` (the checkpoint's template, else the family's)."""
        template = getattr(self.processor, "chat_template", None) or self.family.chat_template
        if template is None:
            raise ValueError(f"{self.name} has no chat template and family {self.family.name!r} has no default; "
                             "set processor.chat_template")
        return self.processor.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    @property
    def pad_id(self) -> int:
        """Padding id: the tokenizer's pad token, else its eos token."""
        tok = self.processor.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def collate_encoded(rows: list[Encoded], *, pad_id: int, family: Family, num_queries: int = 0,
                    max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Left-pad encoded examples into one batch, appending ``num_queries`` query slots per row.

    Args:
        rows: encoded examples.
        pad_id: padding token id (also the placeholder id of query slots, whose embeddings get replaced).
        family: the model's Family record (pixel layout, prefix-LM).
        num_queries: K query slots appended after each row's tokens.
        max_length: cut each row's tokens (before the queries) so the row fits; never cuts images.

    Returns:
        input_ids, attention_mask, labels [B, L] (+ token_type_ids for prefix-LM families, per-token
        extras, query_mask when K > 0) and the image tensors.

    Raises:
        ValueError: ``max_length`` would cut into image tokens.
    """
    for row in rows:
        _truncate(row, max_length - num_queries if max_length else None)
        _append(row, [pad_id] * num_queries, {}, trained=False, token_type=1)
    length = max(len(r.ids) for r in rows)
    batch = {
        "input_ids": _left_pad([r.ids for r in rows], length, pad_id),
        "attention_mask": _left_pad([[1] * len(r.ids) for r in rows], length, 0),
        "labels": _left_pad([r.labels for r in rows], length, IGNORE),
    }
    if family.prefix_lm:
        batch["token_type_ids"] = _left_pad([r.token_types for r in rows], length, 0)
    for key in sorted({k for r in rows for k in r.extras}):
        batch[key] = _left_pad([r.extras.get(key, [0] * len(r.ids)) for r in rows], length, 0)
    if num_queries:
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        mask[:, length - num_queries:] = True
        batch["query_mask"] = mask
    batch.update(_batch_images(rows, family))
    return batch


def _truncate(row: Encoded, limit: int | None) -> None:
    """Cut ``row`` to ``limit`` tokens from the end; refuse to cut image tokens."""
    if limit is None or len(row.ids) <= limit:
        return
    if limit < row.min_length:
        raise ValueError(f"max_length leaves {limit} tokens but the images end at token {row.min_length}")
    row.ids, row.labels, row.token_types = row.ids[:limit], row.labels[:limit], row.token_types[:limit]
    row.extras = {k: v[:limit] for k, v in row.extras.items()}


def _left_pad(seqs: list[list[int]], length: int, value: int) -> torch.Tensor:
    """[B, length] long tensor, sequences right-aligned."""
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            out[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
    return out


def _batch_images(rows: list[Encoded], family: Family) -> dict[str, torch.Tensor]:
    """Merge per-segment image tensors of all rows in the family's layout."""
    keys = sorted({k for r in rows for part in r.images for k in part})
    if not keys:
        return {}
    if not family.per_sample_pixels:  # [N_images or N_patches, ...] over the whole batch
        return {k: torch.cat([part[k] for r in rows for part in r.images if k in part]) for k in keys}
    out = {}
    for key in keys:  # [B, N_images, ...], zero-padded over images (Idefics3 drops all-zero images)
        per_row = [torch.cat([p[key] for p in r.images], dim=1) if r.images else None for r in rows]
        ref = next(t for t in per_row if t is not None)
        n = max(t.shape[1] for t in per_row if t is not None)
        padded = []
        for t in per_row:
            t = t if t is not None else ref.new_zeros((1, 0, *ref.shape[2:]))
            padded.append(torch.cat([t, t.new_zeros((1, n - t.shape[1], *t.shape[2:]))], dim=1))
        out[key] = torch.cat(padded)
    return out
