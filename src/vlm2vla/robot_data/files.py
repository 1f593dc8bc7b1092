"""Atomic writes of dataset files (on vlm2vla.fileio.atomic_path) and checked reads.

A reader, or a process restarted after a crash, sees the old file or the new one, never a
half-written one. Reads turn low-level errors into a DatasetFormatError that names the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlm2vla import fileio
from vlm2vla.fileio import TMP_SUFFIX, atomic_path
from vlm2vla.robot_data.format import DatasetFormatError


@contextmanager
def scratch_path(folder: str | Path, suffix: str) -> Iterator[Path]:
    """Yield a fresh temporary file path in `folder`, deleted on exit unless moved away.

    The name marks it as temporary, so remove_temp_files cleans it up after a crash.

    Args:
        folder: where to create it (same file system as its final place, for os.replace).
        suffix: the content's extension, e.g. ".mp4" (kept inside the name, not at its end).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".scratch{suffix}.", suffix=TMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_parquet_atomic(tables: list[pa.Table], path: str | Path, fsync: bool = False) -> None:
    """Write tables as consecutive row groups of one parquet file, atomically.

    One row group per table keeps each episode readable on its own (LeRobot does the same).

    Args:
        tables: tables with the same schema; the first one's schema (and metadata) is used.
        path: target file.
        fsync: see atomic_path.
    """
    with atomic_path(path, fsync) as tmp:
        with pq.ParquetWriter(tmp, tables[0].schema, compression="snappy") as writer:
            for table in tables:
                writer.write_table(table)


def write_with(path: str | Path, write: Callable[[Path], None], fsync: bool = False) -> None:
    """Run `write(tmp_path)` and move the result onto `path` atomically.

    Args:
        path: target file.
        write: function that writes the whole file at the given path.
        fsync: see atomic_path.
    """
    with atomic_path(path, fsync) as tmp:
        write(tmp)


def read_json(path: str | Path) -> Any:
    """Read a JSON file.

    Raises:
        DatasetFormatError: the file is missing or not valid JSON.
    """
    path = Path(path)
    try:
        return fileio.read_json(path)
    except FileNotFoundError as err:
        raise DatasetFormatError(path, "file not found", "check the dataset root; is it a LeRobotDataset?") from err
    except ValueError as err:
        raise DatasetFormatError(path, f"not valid JSON ({err.__cause__})", "restore or regenerate this file") from err


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file (v2.1 metadata).

    Raises:
        DatasetFormatError: the file is missing or a line is not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "file not found", "v2.1 datasets need this metadata file")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, f"line {lineno} is not valid JSON ({err})",
                                     "fix or remove that line") from err
    return rows


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a parquet file.

    Args:
        path: file to read.
        columns: optional subset of columns.

    Returns:
        The table.

    Raises:
        DatasetFormatError: the file is missing, truncated or corrupt, or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "file not found", "check the dataset root and meta/info.json paths")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise DatasetFormatError(
            path, f"unreadable parquet ({type(err).__name__}: {err})",
            "the file is truncated or corrupt; restore it or re-collect the episodes it holds",
        ) from err
    return table


def remove_temp_files(root: str | Path) -> int:
    """Delete leftovers of interrupted atomic writes under `root`.

    Args:
        root: dataset root.

    Returns:
        How many files were removed.
    """
    removed = 0
    for tmp in Path(root).rglob(f".*{TMP_SUFFIX}*"):
        if tmp.is_file():
            tmp.unlink()
            removed += 1
    return removed
