"""Per-sample feature arrays on disk: float16 shards plus an index mapping rows to sample ids.

Layout of a features folder (`<embed run_dir>/features/`):

    meta.json                     model, layer, pooling, dim, dtype, template, ... (written by the main process)
    shards/<shard>.npy            float16 [rows, dim], one file per shard
    index/<shard>.parquet         one row per feature row: id, source, kind, shard, row, loss (nullable)

A shard is complete when its index part exists: the array is written (atomically) first and the
index part last, so a run killed mid-shard leaves no index part and the shard is simply redone.
Shard names are free-form strings without "/" (the embed stage uses "pool-00003", "robot-00001";
a streaming `FeatureWriter` uses "r<rank>-<seq>"); readers order shards by name.

    writer = FeatureWriter(features_dir, rank=0, dim=64, meta={"model": ...})
    writer.add(ids, sources, kinds, feats)        # buffered, flushed every `shard_rows` rows
    writer.close()
    store = FeatureStore.open(run_dir)            # the run dir or its features/ folder
    ids, sources, X = store.load(kind="pool")     # X float32 [n, dim]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlm2vla.fileio import atomic_path, atomic_write_json

KINDS = ("pool", "robot")
META_FILE = "meta.json"
SHARD_DIR = "shards"
INDEX_DIR = "index"
FEATURES_DIR = "features"
DISK_DTYPE = np.float16

INDEX_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("kind", pa.string()),
    ("shard", pa.string()),
    ("row", pa.int32()),
    ("loss", pa.float32()),
])


class FeatureStoreError(ValueError):
    """A features folder that is missing, inconsistent or written with another feature size.

    A ValueError: it is bad input, so the CLI reports its message without a traceback.
    """


def write_shard(features_dir: str | Path, shard: str, ids: Sequence[str], sources: Sequence[str],
                kinds: Sequence[str] | str, feats: np.ndarray, losses: Sequence[float] | np.ndarray | None = None
                ) -> Path:
    """Write one complete shard (array, then its index part), each file atomically.

    Args:
        features_dir: the features folder.
        shard: the shard's name (no "/"); an existing shard of that name is replaced.
        ids, sources: one per row.
        kinds: "pool" or "robot", one per row or one for all.
        feats: [n, D] features; stored as float16.
        losses: [n] answer-token mean NLL per row (NaN or None = unknown), or None for all.

    Returns:
        The index part's path (its existence marks the shard complete).
    """
    features_dir = Path(features_dir)
    if "/" in shard or not shard:
        raise ValueError(f"shard name must be non-empty without '/', got {shard!r}")
    feats = np.asarray(feats)
    n = len(ids)
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(f"shard {shard}: feats must be [n={n}, D], got shape {feats.shape}")
    kinds = [kinds] * n if isinstance(kinds, str) else list(kinds)
    if len(sources) != n or len(kinds) != n:
        raise ValueError(f"shard {shard}: {n} ids but {len(sources)} sources and {len(kinds)} kinds")
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise ValueError(f"shard {shard}: kinds must be in {KINDS}, got {bad}")
    loss_arr = _losses(losses, n)
    array_path = features_dir / SHARD_DIR / f"{shard}.npy"
    with atomic_path(array_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats.astype(DISK_DTYPE, copy=False))
    table = pa.table({
        "id": pa.array([str(i) for i in ids], pa.string()),
        "source": pa.array([str(s) for s in sources], pa.string()),
        "kind": pa.array(kinds, pa.string()),
        "shard": pa.array([shard] * n, pa.string()),
        "row": pa.array(np.arange(n, dtype=np.int32)),
        "loss": pa.array(loss_arr, pa.float32(), mask=np.isnan(loss_arr)),
    }, schema=INDEX_SCHEMA)
    index_path = features_dir / INDEX_DIR / f"{shard}.parquet"
    with atomic_path(index_path) as tmp:
        pq.write_table(table, tmp)
    return index_path


def _losses(losses, n: int) -> np.ndarray:
    if losses is None:
        return np.full(n, np.nan, dtype=np.float32)
    arr = np.asarray([np.nan if v is None else v for v in losses], dtype=np.float32)
    if arr.shape != (n,):
        raise ValueError(f"losses must have one value per row ({n}), got shape {arr.shape}")
    return arr


def write_meta(features_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write meta.json (must hold "dim"); refuses to change the dim of a folder that already has shards."""
    features_dir = Path(features_dir)
    if "dim" not in meta:
        raise ValueError("meta must record the feature size 'dim'")
    old = _read_meta(features_dir / META_FILE) if (features_dir / META_FILE).is_file() else None
    if old is not None and int(old["dim"]) != int(meta["dim"]) and completed_shards(features_dir):
        raise FeatureStoreError(
            f"{features_dir / META_FILE}: existing features have dim {old['dim']}, new ones {meta['dim']}. "
            "Write to another folder, or delete this one."
        )
    atomic_write_json(features_dir / META_FILE, {"dtype": "float16", **meta})


def completed_shards(features_dir: str | Path) -> set[str]:
    """Names of the shards whose index part (the last file written) exists."""
    index_dir = Path(features_dir) / INDEX_DIR
    if not index_dir.is_dir():
        return set()
    return {p.stem for p in index_dir.glob("*.parquet") if not p.name.startswith(".")}


class FeatureWriter:
    """Buffers features from one process (rank) and writes them as shards of `shard_rows` rows.

    Shards are named "r<rank:03d>-<seq:05d>", continuing after this rank's existing shards, so ranks never
    collide and appending to a folder keeps what is there. The main process (rank 0) writes meta.json
    when `meta` is given.
    """

    def __init__(self, features_dir: str | Path, rank: int, dim: int, shard_rows: int = 8192,
                 meta: dict[str, Any] | None = None) -> None:
        if dim < 1 or shard_rows < 1:
            raise ValueError(f"dim and shard_rows must be >= 1, got dim={dim}, shard_rows={shard_rows}")
        self.features_dir = Path(features_dir)
        self.rank, self.dim, self.shard_rows = rank, dim, shard_rows
        meta_path = self.features_dir / META_FILE
        if meta_path.is_file():
            old_dim = int(_read_meta(meta_path)["dim"])
            if old_dim != dim:
                raise FeatureStoreError(
                    f"{meta_path}: the folder holds features of dim {old_dim}; cannot append features of dim {dim}"
                )
        if meta is not None and rank == 0:
            write_meta(self.features_dir, {**meta, "dim": dim})
        prefix = f"r{rank:03d}-"
        mine = [s for s in completed_shards(self.features_dir) if s.startswith(prefix)]
        self._seq = 1 + max((int(s[len(prefix):]) for s in mine), default=-1)
        self._buf: list[tuple[list[str], list[str], list[str], np.ndarray, np.ndarray]] = []
        self._rows = 0
        self.shards_written: list[str] = []

    def add(self, ids: Sequence[str], sources: Sequence[str], kinds: Sequence[str] | str, feats: np.ndarray,
            losses: Sequence[float] | np.ndarray | None = None) -> None:
        """Queue [n, D] features with their ids/sources/kinds (and optional losses); flushes full shards."""
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise FeatureStoreError(
                f"{self.features_dir}: features of shape {feats.shape} do not match the store's dim {self.dim}"
            )
        n = feats.shape[0]
        if len(ids) != n or len(sources) != n:
            raise ValueError(f"{n} feature rows but {len(ids)} ids and {len(sources)} sources")
        kinds = [kinds] * n if isinstance(kinds, str) else list(kinds)
        self._buf.append((list(ids), list(sources), kinds, feats.astype(DISK_DTYPE), _losses(losses, n)))
        self._rows += n
        while self._rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> None:
        """Write what is left as a last (smaller) shard."""
        if self._rows:
            self._flush(self._rows)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()

    def _flush(self, rows: int) -> None:
        cols = [sum((list(b[k]) for b in self._buf), []) for k in range(3)]
        feats = np.concatenate([b[3] for b in self._buf])
        losses = np.concatenate([b[4] for b in self._buf])
        name = f"r{self.rank:03d}-{self._seq:05d}"
        write_shard(self.features_dir, name, cols[0][:rows], cols[1][:rows], cols[2][:rows], feats[:rows],
                    losses[:rows])
        self._seq += 1
        self.shards_written.append(name)
        self._rows -= rows
        rest = (cols[0][rows:], cols[1][rows:], cols[2][rows:], feats[rows:], losses[rows:])
        self._buf = [rest] if self._rows else []


class FeatureStore:
    """Read access to a features folder written by `FeatureWriter` / `write_shard` (the embed stage)."""

    def __init__(self, features_dir: Path, meta: dict[str, Any]) -> None:
        self.dir = features_dir
        self.meta = meta
        self.dim = int(meta["dim"])

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open an embed run directory or its features/ folder."""
        path = Path(path)
        features_dir = path / FEATURES_DIR if (path / FEATURES_DIR / META_FILE).is_file() else path
        meta_path = features_dir / META_FILE
        if not meta_path.is_file():
            raise FeatureStoreError(
                f"no features at {path}: expected {path / FEATURES_DIR / META_FILE} or {path / META_FILE}. "
                "Run `vlm2vla embed` first, or pass the embed run directory."
            )
        return cls(features_dir, _read_meta(meta_path))

    def completed_shards(self) -> set[str]:
        """Names of the complete shards (for resuming)."""
        return completed_shards(self.dir)

    def shards(self) -> list[str]:
        """Complete shard names in reading order."""
        return sorted(self.completed_shards())

    def index(self) -> pa.Table:
        """The whole index (id, source, kind, shard, row, loss), in shard order then row order."""
        parts = [self._index_part(s) for s in self.shards()]
        if not parts:
            return INDEX_SCHEMA.empty_table()
        return pa.concat_tables(parts)

    def __len__(self) -> int:
        return sum(pq.read_metadata(self.dir / INDEX_DIR / f"{s}.parquet").num_rows for s in self.shards())

    def load(self, kind: str | None = None, sources: Iterable[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows of one kind ("pool"/"robot"/None = both) and sources (None = all), in index order.

        Returns:
            ids [n] str, sources [n] str, X [n, dim] float32.
        """
        ids, srcs, feats = [], [], []
        for part_ids, part_srcs, x in self._iter_parts(kind, sources):
            ids.append(part_ids)
            srcs.append(part_srcs)
            feats.append(x)
        if not feats:
            return np.array([], dtype=str), np.array([], dtype=str), np.zeros((0, self.dim), np.float32)
        return np.concatenate(ids), np.concatenate(srcs), np.concatenate(feats)

    def iter_batches(self, kind: str | None = None, batch_rows: int = 65536, sources: Iterable[str] | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stream (ids, sources, X float32) batches of at most `batch_rows` rows; only one shard in memory."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        size = 0
        for part in self._iter_parts(kind, sources):
            pending.append(part)
            size += len(part[0])
            while size >= batch_rows:
                cat = [np.concatenate(c) for c in zip(*pending, strict=True)]
                yield tuple(c[:batch_rows] for c in cat)  # type: ignore[misc]
                size -= batch_rows
                pending = [tuple(c[batch_rows:] for c in cat)] if size else []  # type: ignore[list-item]
        if size:
            yield tuple(np.concatenate(c) for c in zip(*pending, strict=True))  # type: ignore[misc]

    def _iter_parts(self, kind: str | None, sources: Iterable[str] | None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
        wanted = None if sources is None else pa.array(sorted(set(sources)), pa.string())
        for shard in self.shards():
            part = self._index_part(shard)
            mask = None
            if kind is not None:
                mask = pc.equal(part["kind"], kind)
            if wanted is not None:
                m = pc.is_in(part["source"], value_set=wanted)
                mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                part = part.filter(mask)
            if part.num_rows == 0:
                continue
            array = self._array(shard, expected_rows=None)
            rows = part["row"].to_numpy()
            yield (np.asarray(part["id"].to_pylist(), dtype=str), np.asarray(part["source"].to_pylist(), dtype=str),
                   np.asarray(array[rows], dtype=np.float32))

    def _index_part(self, shard: str) -> pa.Table:
        path = self.dir / INDEX_DIR / f"{shard}.parquet"
        table = pq.read_table(path)
        missing = [c for c in INDEX_SCHEMA.names if c not in table.column_names]
        if missing:
            raise FeatureStoreError(f"{path}: index part lacks columns {missing}")
        table = table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
        array = self._array(shard, expected_rows=table.num_rows)
        rows = table["row"].to_numpy()
        if table.num_rows and (rows.min() < 0 or rows.max() >= array.shape[0]):
            raise FeatureStoreError(f"{path}: rows outside 0..{array.shape[0] - 1} of the shard's array")
        return table

    def _array(self, shard: str, expected_rows: int | None) -> np.ndarray:
        path = self.dir / SHARD_DIR / f"{shard}.npy"
        if not path.is_file():
            raise FeatureStoreError(f"{path}: missing feature array for indexed shard '{shard}'")
        array = np.load(path, mmap_mode="r")
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise FeatureStoreError(
                f"{path}: features of shape {array.shape}, but {self.dir / META_FILE} says dim {self.dim} "
                "(mixed feature sizes in one store)"
            )
        if expected_rows is not None and array.shape[0] != expected_rows:
            raise FeatureStoreError(
                f"{path}: {array.shape[0]} feature rows, but its index part has {expected_rows} rows"
            )
        return array


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FeatureStoreError(f"{path}: unreadable meta.json ({e})") from e
    if "dim" not in meta:
        raise FeatureStoreError(f"{path}: meta.json has no 'dim'")
    return meta
