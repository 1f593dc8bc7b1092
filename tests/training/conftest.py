"""Fixtures for trainer tests: a small learnable colour-question dataset and a tiny Idefics3 model.

The data ask "What colour is the square?" about a 32x32 image that is one flat colour, so a tiny
model can learn them in a few dozen steps; a second source asks for the shape's size. Both a LLaVA
JSONL file and a pool.parquet (with a held-out split) are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm2vla.vlm_data.pool_io import write_pool
from vlm2vla.vlm_data.records import VLMSample

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SIZES = ("small", "big")


def make_records(root: Path, n: int, seed: int = 0) -> list[dict]:
    """LLaVA records with PNG images under root/images; two sources (colour, size)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        size = SIZES[rng.integers(len(SIZES))]
        img = np.full((32, 32, 3), 128, np.uint8)
        half = 12 if size == "big" else 5
        img[16 - half:16 + half, 16 - half:16 + half] = COLOURS[colour]
        name = f"images/{i:04d}.png"
        Image.fromarray(img).save(root / name)
        if i % 2 == 0:
            source, question, answer = "colour", "What colour is the square?", colour
        else:
            source, question, answer = "size", "Is the square big or small?", size
        records.append({"id": str(i), "image": name, "source": source,
                        "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                          {"from": "gpt", "value": answer}]})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A folder with train.jsonl (64 records), heldout.jsonl (16) and pool/pool.parquet (both)."""
    root = tmp_path_factory.mktemp("colour_data")
    records = make_records(root, 80)
    write_jsonl(root / "train.jsonl", records[:64])
    write_jsonl(root / "heldout.jsonl", records[64:])
    samples = [
        VLMSample(id=f"{r['source']}/{r['id']}", source=r["source"], images=(str(root / r["image"]),),
                  conversations=tuple((t["from"], t["value"]) for t in r["conversations"]),
                  split="train" if i < 64 else "heldout")
        for i, r in enumerate(records)
    ]
    (root / "pool").mkdir()
    with open(root / "pool" / "pool.parquet", "wb") as f:
        write_pool(samples, f)
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random Idefics3 (SmolVLM layout) whose tokenizer knows the test vocabulary."""
    from vlm2vla.backbones.testing import build_family

    texts = ["What colour is the square?", "Is the square big or small?", *COLOURS, *SIZES] * 20
    return build_family("idefics3", tmp_path_factory.mktemp("tiny_idefics3"), texts=texts, image_size=32,
                        vocab_size=200)
