"""LLaVA-format records and the validated sample type the rest of the project uses.

A record, as found in LLaVA-style JSON / JSONL / parquet sources:

    {"id": "000123", "image": "images/000123.png",            # a path, a list of paths, or absent
     "conversations": [{"from": "human", "value": "<image>\\nWhat colour is the ball?"},
                       {"from": "gpt", "value": "red"}],
     "source": "vqa"}                                          # optional

`parse_record` turns one raw record into a `VLMSample` (image paths made absolute) or raises
`RecordError` carrying a short machine-readable reason, which the pool report counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# LLaVA role names -> chat-template roles.
ROLE_MAP = {"human": "user", "gpt": "assistant", "system": "system"}
IMAGE_TOKEN = "<image>"
# "<image>" plus the newline LLaVA puts after it; the chat template places images itself.
_IMAGE_TOKEN_RE = re.compile(r"<image>\n?")

# Reasons a record is skipped; the pool report counts each one.
MALFORMED = "malformed_record"
MISSING_IMAGE = "missing_image"
BAD_IMAGE = "unreadable_image"
UNKNOWN_ROLE = "unknown_role"
EMPTY_CONVERSATION = "empty_conversation"
NO_ASSISTANT_TURN = "no_assistant_turn"
DUPLICATE_ID = "duplicate_id"
SKIP_REASONS = (MALFORMED, MISSING_IMAGE, BAD_IMAGE, UNKNOWN_ROLE, EMPTY_CONVERSATION, NO_ASSISTANT_TURN,
                DUPLICATE_ID)


class RecordError(ValueError):
    """A record that cannot become a sample; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VLMSample:
    """One validated conversation with its images.

    Attributes:
        id: unique within a pool ("<source>/<record id>").
        source: the source name (the record's `source` field, else its source spec's name).
        images: absolute image paths, in the order the conversation refers to them.
        conversations: (role, text) turns with LLaVA roles ("human", "gpt", "system").
        split: "train" or "heldout" once pooled; "train" before.
    """

    id: str
    source: str
    images: tuple[str, ...]
    conversations: tuple[tuple[str, str], ...]
    split: str = "train"

    @property
    def answer(self) -> str:
        """The last assistant turn's text (the answer a single-turn question is scored on)."""
        return next(text for role, text in reversed(self.conversations) if role == "gpt")


def to_messages(sample: VLMSample, keep_image_tokens: bool = False) -> list[dict[str, str]]:
    """Chat-template messages of a sample: human -> user, gpt -> assistant, system -> system.

    Args:
        sample: the sample.
        keep_image_tokens: keep LLaVA's "<image>" placeholders in the text. By default they are
            removed: a model's own chat template (processor) decides where image tokens go; the
            images themselves come separately (VLMChatDataset puts them in "images").

    Returns:
        [{"role": ..., "content": ...}, ...] in conversation order.
    """
    out = []
    for role, text in sample.conversations:
        content = text if keep_image_tokens else _IMAGE_TOKEN_RE.sub("", text).strip()
        out.append({"role": ROLE_MAP[role], "content": content})
    return out


def parse_record(record: Any, source: str, base_dir: Path) -> VLMSample:
    """Check one raw record's structure and build its sample (images are not opened here).

    Args:
        record: the decoded JSON object / parquet row.
        source: the source spec's name, used when the record has no `source` field.
        base_dir: absolute folder that relative image paths are resolved against.

    Returns:
        The sample, with id "<source>/<id>" (kept as is when it already starts with "<source>/").

    Raises:
        RecordError: with reason malformed_record, unknown_role, empty_conversation or
            no_assistant_turn.
    """
    if not isinstance(record, Mapping):
        raise RecordError(MALFORMED, f"a record must be a JSON object, got {type(record).__name__}")
    raw_id = record.get("id")
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id) == "":
        raise RecordError(MALFORMED, f"missing or invalid 'id': {raw_id!r}")
    name = record.get("source") or source
    if not isinstance(name, str):
        raise RecordError(MALFORMED, f"'source' must be a string, got {name!r}")
    sample_id = str(raw_id) if str(raw_id).startswith(f"{name}/") else f"{name}/{raw_id}"
    turns = _parse_conversations(record.get("conversations"))
    images = _parse_images(record.get("image"), base_dir)
    return VLMSample(id=sample_id, source=name, images=images, conversations=turns)


def _parse_conversations(conversations: Any) -> tuple[tuple[str, str], ...]:
    if conversations is None:
        raise RecordError(MALFORMED, "missing 'conversations'")
    if not isinstance(conversations, list | tuple):
        raise RecordError(MALFORMED, f"'conversations' must be a list, got {type(conversations).__name__}")
    if len(conversations) == 0:
        raise RecordError(EMPTY_CONVERSATION, "'conversations' is empty")
    turns = []
    for k, turn in enumerate(conversations):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise RecordError(MALFORMED, f"turn {k} must be an object with 'from' and a string 'value'")
        role = turn.get("from")
        if role not in ROLE_MAP:
            raise RecordError(UNKNOWN_ROLE, f"turn {k} has unknown role {role!r} (expected one of {list(ROLE_MAP)})")
        turns.append((role, turn["value"]))
    if not any(role == "gpt" for role, _ in turns):
        raise RecordError(NO_ASSISTANT_TURN, "no 'gpt' (assistant) turn to learn from")
    if all(not text.strip() for role, text in turns if role == "gpt"):
        raise RecordError(EMPTY_CONVERSATION, "every 'gpt' turn is empty")
    return tuple(turns)


def _parse_images(image: Any, base_dir: Path) -> tuple[str, ...]:
    if image is None:
        return ()  # a text-only record
    paths = [image] if isinstance(image, str) else image
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) and p for p in paths):
        raise RecordError(MALFORMED, f"'image' must be a path or a list of paths, got {image!r}")
    # normpath, not resolve(): no filesystem call per path (a million records), base_dir is absolute already.
    return tuple(os.path.normpath(os.path.join(base_dir, raw)) for raw in paths)
