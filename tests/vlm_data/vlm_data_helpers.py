"""Helpers for vlm_data tests: tiny LLaVA sources with real PNG images on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def make_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> str:
    """Write a small PNG and return its file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path.name


def record(i: int, image: str | list[str] | None = "img0.png", answer: str = "red", **extra) -> dict:
    """A valid single-turn LLaVA record."""
    rec = {"id": str(i), "conversations": [{"from": "human", "value": "<image>\nWhat colour?"},
                                           {"from": "gpt", "value": answer}], **extra}
    if image is not None:
        rec["image"] = image
    return rec


def write_jsonl(path: Path, records: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write records one per line; raw_lines {line_no (1-based): text} replaces those lines verbatim."""
    lines = [json.dumps(r) for r in records]
    for line_no, text in (raw_lines or {}).items():
        lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    """Write records as a parquet table (image as list<string>)."""
    rows = [{**r, "image": [r["image"]] if isinstance(r.get("image"), str) else r.get("image")} for r in records]
    keys = sorted({k for r in rows for k in r})  # from_pylist takes its columns from the first row only
    rows = [{k: r.get(k) for k in keys} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def source_dir(tmp: Path, n: int = 20) -> tuple[Path, list[dict]]:
    """A folder with one image and n valid records referring to it."""
    make_image(tmp / "img0.png")
    return tmp, [record(i) for i in range(n)]
