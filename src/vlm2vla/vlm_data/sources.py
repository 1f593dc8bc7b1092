"""Where pool records come from: a `SourceSpec` and a streaming reader for JSON, JSONL and parquet.

    spec = SourceSpec(name="llava_mix", path="data/llava/train.jsonl")
    for where, record in iter_raw_records(spec):      # where = "data/llava/train.jsonl:17"
        ...

JSONL and parquet are streamed (a line / a record batch at a time), so a million-record source never
sits in memory; a JSON list has to be parsed whole (use JSONL for large sources). A line or row that
cannot be decoded is yielded as a `RawError`, so the caller can count it and go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FORMATS = ("json", "jsonl", "parquet")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_PARQUET_BATCH = 4096


@dataclass(frozen=True)
class SourceSpec:
    """One VLM data source in LLaVA format."""

    # name of the source; samples are tagged with it (unless a record has its own `source`)
    name: str = ""
    # path of the .json (a list of records), .jsonl or .parquet file
    path: str = ""
    # json, jsonl or parquet; empty = from the file extension
    format: str = ""
    # folder that relative image paths start from; empty = the source file's folder
    image_root: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"SourceSpec.name must be a non-empty name without '/', got {self.name!r}.")
        if not self.path:
            raise ValueError(f"SourceSpec {self.name!r}: path is empty.")
        if self.format and self.format not in FORMATS:
            raise ValueError(f"SourceSpec {self.name!r}: format must be one of {FORMATS}, got {self.format!r}.")
        if not self.format and Path(self.path).suffix.lower() not in _EXTENSIONS:
            raise ValueError(f"SourceSpec {self.name!r}: cannot tell the format of {self.path!r} from its "
                             f"extension ({', '.join(_EXTENSIONS)}); set format=json|jsonl|parquet.")

    @property
    def resolved_format(self) -> str:
        """The format, given or from the extension."""
        return self.format or _EXTENSIONS[Path(self.path).suffix.lower()]

    @property
    def base_dir(self) -> Path:
        """Absolute folder that relative image paths are resolved against."""
        return Path(self.image_root or Path(self.path).parent).resolve()


@dataclass(frozen=True)
class RawError:
    """A line / row / element that could not be decoded into a record."""

    message: str


def iter_raw_records(spec: SourceSpec) -> Iterator[tuple[str, Any]]:
    """Stream a source's raw records with their locations.

    Args:
        spec: the source.

    Yields:
        ("<file>:<line>" / "<file>:row <n>" / "<file>:[<index>]", record or RawError).

    Raises:
        FileNotFoundError: the source file does not exist.
        ValueError: the whole file is unreadable (a JSON file that is not a list, a broken parquet footer).
    """
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(f"Source {spec.name!r}: no file {path}. Fix sources[].path or remove the source.")
    readers = {"json": _iter_json, "jsonl": _iter_jsonl, "parquet": _iter_parquet}
    yield from readers[spec.resolved_format](path)


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines (a trailing newline) are not records
            try:
                yield f"{path}:{line_no}", json.loads(line)
            except json.JSONDecodeError as err:
                yield f"{path}:{line_no}", RawError(f"invalid JSON: {err.msg} (column {err.colno})")


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); a .json source must hold one list of records "
                         "(for one record per line, name it .jsonl)") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: a .json source must hold a list of records, got {type(data).__name__}")
    for index, record in enumerate(data):
        yield f"{path}:[{index}]", record


def _iter_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise ValueError(f"{path}: not a readable parquet file ({err})") from err
    row = 0
    for batch in file.iter_batches(batch_size=_PARQUET_BATCH):
        for record in batch.to_pylist():
            yield f"{path}:row {row}", record
            row += 1
