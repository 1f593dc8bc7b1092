"""Fixtures for the trainer tests: the colour-question data (JSONL and pool) and a tiny Idefics3."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from training_helpers import COLOURS, SIZES, make_records, write_jsonl  # noqa: E402

from vlm2vla.vlm_data.pool_io import write_pool  # noqa: E402
from vlm2vla.vlm_data.records import VLMSample  # noqa: E402


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
    from vlm2vla.backbones.random_models import build_family

    texts = ["What colour is the square?", "Is the square big or small?", *COLOURS, *SIZES] * 20
    return build_family("idefics3", tmp_path_factory.mktemp("tiny_idefics3"), texts=texts, image_size=32,
                        vocab_size=200)
