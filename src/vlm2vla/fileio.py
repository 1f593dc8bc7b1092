"""Small file helpers every stage shares: atomic writes, and JSON / JSON-lines reading.

Atomic writes: a reader, or a run killed mid-write, never sees half a file.

Each write goes to a hidden temporary file in the target's folder and is renamed over the target;
a rename within one filesystem is atomic on POSIX. Temporary names start with "." and end in
".tmp", so no glob for real files (LeRobot loads every data/*/*.parquet) ever matches a leftover.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TMP_SUFFIX = ".tmp"
MISSING: Any = object()  # read_json's "no default" marker


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` if the block succeeds.

    Args:
        path: final location; its folder is created if missing.
        fsync: flush the file and the rename to disk (survives power loss, not just a kill).

    Yields:
        The temporary path to write to. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
        if fsync:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A hidden temporary folder beside `path` to write a whole folder into; on success it replaces `path`.

    An existing `path` is moved aside first and deleted after the rename, so readers see the old folder
    or the new one, never a mix; on an exception the temporary folder is removed and `path` is untouched.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TMP_SUFFIX))
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old{TMP_SUFFIX}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path, fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, fsync: bool = False) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync)


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2, fsync: bool = False) -> None:
    """Write `obj` as JSON to `path` atomically (numpy values and Paths are converted)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default)
    atomic_write_text(path, text + "\n", fsync)


def read_json(path: str | Path, default: Any = MISSING) -> Any:
    """The content of a JSON file; `default` (when given) for a missing file.

    Raises:
        FileNotFoundError: the file is missing and no default was given.
        ValueError: the file is not valid JSON; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        if default is not MISSING:
            return default
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or re-run the stage that wrote it") from err


def read_jsonl_log(path: str | Path, parse: Callable[[dict], T] = dict) -> list[T]:
    """Records of an append-only JSON-lines log, skipping lines that cannot be read.

    Progress logs (eval episodes, collection attempts, training metrics) are appended one line at a
    time, so a run killed mid-write leaves a torn last line; the record it held is simply redone.

    Args:
        path: the log; a missing file has no records.
        parse: turns a decoded line into a record (e.g. a dataclass); a line it rejects with
            TypeError or ValueError is skipped like a torn one.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line)))
        except (TypeError, ValueError):  # json.JSONDecodeError is a ValueError
            continue
    return records


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays and Paths show up in metrics and manifests.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")
