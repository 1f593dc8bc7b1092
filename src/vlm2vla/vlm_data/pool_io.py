"""The pool file, <run_dir>/pool.parquet: its schema, a streaming writer, and readers.

One row per valid sample:

    id            string                                  unique in the pool ("<source>/<record id>")
    source        string
    images        list<string>                            absolute paths ([] for text-only samples)
    conversations list<struct<from: string, value: string>>
    split         string                                  "train" or "heldout"

    for sample in read_pool("runs/pool/pool.parquet"): ...          # streams, any size
    heldout = load_pool("runs/pool/pool.parquet", split="heldout")  # a list
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from vlm2vla.vlm_data.records import VLMSample

POOL_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("images", pa.list_(pa.string())),
    ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
    ("split", pa.string()),
])
SPLITS = ("train", "heldout")
_ROW_GROUP = 8192


def heldout_split(sample_id: str, fraction: float, seed: int) -> str:
    """"heldout" for a `fraction` of ids, chosen by a hash of (seed, id): the same id always lands in
    the same split, whatever other samples the pool holds or in what order they come."""
    digest = hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest()
    return "heldout" if int.from_bytes(digest, "big") / 2**64 < fraction else "train"


class PoolWriter:
    """Append samples to a pool parquet file in row groups (the file object is owned by the caller)."""

    def __init__(self, file: BinaryIO) -> None:
        self._writer = pq.ParquetWriter(file, POOL_SCHEMA)
        self._rows: list[dict] = []

    def add(self, sample: VLMSample) -> None:
        """Queue one sample; a full row group is written out."""
        self._rows.append({
            "id": sample.id, "source": sample.source, "images": list(sample.images),
            "conversations": [{"from": r, "value": t} for r, t in sample.conversations], "split": sample.split,
        })
        if len(self._rows) >= _ROW_GROUP:
            self._flush()

    def close(self) -> None:
        """Write what is queued and the parquet footer."""
        self._flush()
        self._writer.close()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=POOL_SCHEMA))
            self._rows = []


def write_pool(samples: Iterable[VLMSample], file: BinaryIO) -> int:
    """Write samples to an open binary file as a pool parquet; returns the number written."""
    writer = PoolWriter(file)
    n = 0
    for sample in samples:
        writer.add(sample)
        n += 1
    writer.close()
    return n


def read_pool(path: str | Path, split: str | None = None) -> Iterator[VLMSample]:
    """Stream the samples of a pool file, one row group at a time.

    Args:
        path: a pool.parquet, or a run directory holding one.
        split: "train" or "heldout" to keep only that split; None for all.

    Yields:
        VLMSample, in file order.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    path = Path(path)
    if path.is_dir():
        path = path / "pool.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"No pool file at {path}; build one with `vlm2vla pool run_dir=...`.")
    file = pq.ParquetFile(path)
    for batch in file.iter_batches(batch_size=_ROW_GROUP):
        for row in batch.to_pylist():
            if split is None or row["split"] == split:
                yield VLMSample(id=row["id"], source=row["source"], images=tuple(row["images"]),
                                conversations=tuple((t["from"], t["value"]) for t in row["conversations"]),
                                split=row["split"])


def load_pool(path: str | Path, split: str | None = None) -> list[VLMSample]:
    """All samples of a pool file (or one split of it) as a list; see `read_pool`."""
    return list(read_pool(path, split))
