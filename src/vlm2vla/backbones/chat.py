"""Chat examples and how a chat template's text splits into trained and untrained segments.

A conversation is rendered with the model's own chat template. To know which characters belong
to assistant turns, every assistant turn i is rendered twice more: the conversation before it
with the generation prompt (where the answer starts) and the conversation up to and including
it (where it ends). The answer segment includes the end-of-turn token; whitespace the template
puts after that token stays untrained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

IMAGE_MARK = "<image>"

Render = Callable[[list[dict], bool], str]


@dataclass
class ChatExample:
    """One training or inference example.

    Attributes:
        images: PIL images (may be empty).
        messages: ``[{"role": "user" | "assistant" | "system", "content": str}, ...]``, multi-turn
            allowed. "<image>" in a user turn marks where an image goes (LLaVA convention);
            without any mark, all images go before the first user text.
    """

    images: list[Image.Image] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    """A piece of rendered chat text.

    Attributes:
        text: the characters.
        trained: True for assistant-answer text (labels kept).
        num_images: how many image placeholders the text holds.
    """

    text: str
    trained: bool
    num_images: int


def template_messages(example: ChatExample) -> list[dict]:
    """Messages in the structured form chat templates expect (content = list of typed parts).

    Args:
        example: the example; its "<image>" marks must match its image count.

    Returns:
        ``[{"role": ..., "content": [{"type": "image"} | {"type": "text", "text": ...}, ...]}]``.

    Raises:
        ValueError: mark count and image count disagree, or images without any user turn.
    """
    marks = sum(m["content"].count(IMAGE_MARK) for m in example.messages if m["role"] == "user")
    n = len(example.images)
    if marks not in (0, n):
        raise ValueError(f"example has {n} images but {marks} '{IMAGE_MARK}' marks in its user turns")
    out, placed = [], marks > 0
    for message in example.messages:
        parts: list[dict] = []
        if message["role"] == "user" and not placed and n:
            parts += [{"type": "image"}] * n
            placed = True
        for i, piece in enumerate(message["content"].split(IMAGE_MARK) if message["role"] == "user"
                                  else [message["content"]]):
            if i > 0:
                parts.append({"type": "image"})
            if piece.strip():
                parts.append({"type": "text", "text": piece.strip() if message["role"] == "user" else piece})
        out.append({"role": message["role"], "content": parts or [{"type": "text", "text": ""}]})
    if n and not placed:
        raise ValueError("example has images but no user turn to put them in")
    return out


def split_segments(messages: list[dict], render: Render, placeholder: str, *,
                   add_generation_prompt: bool) -> list[Segment]:
    """Render ``messages`` and split the text at assistant-answer boundaries.

    Args:
        messages: structured messages (see ``template_messages``).
        render: ``render(messages, add_generation_prompt) -> str`` (the chat template).
        placeholder: the string the template writes per image, counted per segment.
        add_generation_prompt: end the text with the assistant prompt.

    Returns:
        Segments whose texts concatenate to the full rendering; odd-numbered ones are answers.

    Raises:
        ValueError: the template renders a prefix that the full conversation does not start with
            (the answer boundaries cannot be found).
    """
    full = render(messages, add_generation_prompt)
    cuts: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(messages[:i], True))
        upto = render(messages[: i + 1], False)
        if not full.startswith(upto) or start > len(upto):
            raise ValueError("chat template is not prefix-stable; cannot locate assistant turns for labels")
        end = len(upto.rstrip())
        cuts.append((start, max(start, end)))
    segments, pos = [], 0
    for start, end in cuts:
        segments.append(_segment(full[pos:start], False, placeholder))
        segments.append(_segment(full[start:end], True, placeholder))
        pos = end
    segments.append(_segment(full[pos:], False, placeholder))
    return segments


def _segment(text: str, trained: bool, placeholder: str) -> Segment:
    """A Segment with its image-placeholder count."""
    return Segment(text=text, trained=trained, num_images=text.count(placeholder))
