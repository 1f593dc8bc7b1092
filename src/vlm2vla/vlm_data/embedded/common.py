"""Shared pieces of the embedded sources: a LLaVA source writer, balanced answer sampling, templates.

Every generator writes through `SourceWriter`:

    <dir>/images/000000.png ...      one PNG per sample (PNG bytes depend only on the pixels)
    <dir>/data.jsonl                 LLaVA records, written last (atomically): its presence means done

Answers are balanced by drawing the *answer* first (round-robin over the possible answers) and then
an image that has it, so the majority-answer baseline stays well below 100%.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlm2vla.fileio import atomic_write_text

DATA_FILE = "data.jsonl"
IMAGE_DIR = "images"


class SourceWriter:
    """Collects one generated source's samples; `close()` writes data.jsonl.

    Args:
        root: the source folder (<run_dir>/embedded/<source>).
        source: the source name written in every record.
    """

    def __init__(self, root: Path, source: str) -> None:
        self.root = Path(root)
        self.source = source
        self.records: list[dict[str, Any]] = []
        (self.root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    def add(self, image: Image.Image | np.ndarray, question: str, answer: str, **extra: Any) -> None:
        """Save the image and one single-turn record (question -> short answer).

        Args:
            image: RGB image (PIL or uint8 [H, W, 3]).
            question: the user's question (the "<image>" placeholder is prepended).
            answer: the short answer.
            **extra: extra record fields kept for tests and analysis (e.g. the projected point).
        """
        sample_id = f"{len(self.records):06d}"
        rel = f"{IMAGE_DIR}/{sample_id}.png"
        # A plain write, not an fsync'd atomic one per image (thousands of them): data.jsonl is written
        # last and atomically, and a source without it is regenerated from scratch.
        (self.root / rel).write_bytes(png_bytes(image))
        self.records.append({
            "id": sample_id, "source": self.source, "image": rel,
            "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
            **extra,
        })

    def close(self) -> Path:
        """Write data.jsonl (atomically) and return its path."""
        path = self.root / DATA_FILE
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))
        return path


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """PNG encoding of an RGB image; deterministic (no timestamps or text chunks)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    """One element of `items`, uniformly."""
    return items[int(rng.integers(len(items)))]


def balanced_answers(n: int, answers: Sequence[Any], rng: np.random.Generator) -> list[Any]:
    """`n` target answers cycling through `answers` (each appears n/len times, +-1), shuffled."""
    out = [answers[k % len(answers)] for k in range(n)]
    rng.shuffle(out)
    return out
