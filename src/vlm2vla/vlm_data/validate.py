"""Validate a source record by record: structure, roles, and that every image opens.

    report = SourceReport(name="vqa")
    for sample in validate_source(spec, report, seen_ids=set(), workers=8):
        ...                      # only valid samples come out; the rest are counted in `report`

Images are checked by opening them (PIL `verify`, which reads the whole file and checks its
checksums without decoding pixels) in a thread pool, a chunk of records at a time: memory stays
flat whatever the source size, and PIL's file reading and zlib release the GIL, so threads scale.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from vlm2vla.vlm_data.records import (
    BAD_IMAGE,
    DUPLICATE_ID,
    MALFORMED,
    MISSING_IMAGE,
    RecordError,
    VLMSample,
    parse_record,
)
from vlm2vla.vlm_data.sources import RawError, SourceSpec, iter_raw_records

log = logging.getLogger(__name__)

# Records checked per thread-pool round; bounds memory and keeps output order.
CHUNK = 1024
# Examples kept per skip reason in the report.
MAX_EXAMPLES = 5


@dataclass
class SourceReport:
    """Counts of one source: records seen, kept, and skipped by reason (with a few examples)."""

    name: str
    kind: str = "external"
    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str, message: str) -> None:
        """Count one skipped record; keep it as an example while fewer than MAX_EXAMPLES are kept."""
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append(f"{where}: {message}")

    @property
    def bad(self) -> int:
        """Records skipped for any reason."""
        return sum(self.skipped.values())

    @property
    def bad_fraction(self) -> float:
        """Skipped records over records seen (0 for an empty source)."""
        return self.bad / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        """JSON-ready form for pool_report.json."""
        return {"kind": self.kind, "total": self.total, "kept": self.kept, "skipped": dict(self.skipped),
                "bad_fraction": round(self.bad_fraction, 6), "examples": self.examples}


def check_image(path: str) -> tuple[str, str] | None:
    """Open and verify one image file.

    Args:
        path: absolute image path.

    Returns:
        None when the image is fine, else (reason, message) with reason missing_image or unreadable_image.
    """
    try:
        with Image.open(path) as im:
            im.verify()
    except FileNotFoundError:
        return MISSING_IMAGE, f"image not found: {path}"
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        return BAD_IMAGE, f"cannot read image {path}: {type(err).__name__}: {err}"
    return None


def check_sample_images(sample: VLMSample) -> tuple[str, str] | None:
    """The first image problem of a sample, or None when all its images open."""
    for path in sample.images:
        problem = check_image(path)
        if problem is not None:
            return problem
    return None


def validate_source(spec: SourceSpec, report: SourceReport, seen_ids: set[str], workers: int = 8,
                    progress: bool = True) -> Iterator[VLMSample]:
    """Stream the valid samples of one source, counting every skipped record in `report`.

    Args:
        spec: the source.
        report: filled in as records go by (total, kept, skipped by reason, examples).
        seen_ids: ids already in the pool; duplicates are skipped, new ids are added.
        workers: threads opening images.
        progress: show a progress bar.

    Yields:
        Valid samples, in file order.
    """
    records = iter_raw_records(spec)
    base_dir = spec.base_dir  # resolved once, not per record
    bar = tqdm(desc=f"check {spec.name}", unit="rec", disable=not progress, mininterval=1.0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk in _chunks(records, CHUNK):
            parsed = [_parse(where, raw, spec.name, base_dir, report) for where, raw in chunk]
            candidates = [(where, s) for where, s in parsed if s is not None]
            problems = pool.map(check_sample_images, [s for _, s in candidates])
            for (where, sample), problem in zip(candidates, problems, strict=True):
                if problem is not None:
                    report.skip(problem[0], f"{where} (id {sample.id})", problem[1])
                elif sample.id in seen_ids:
                    report.skip(DUPLICATE_ID, where, f"id {sample.id!r} already in the pool")
                else:
                    seen_ids.add(sample.id)
                    report.kept += 1
                    yield sample
            bar.update(len(chunk))
    bar.close()


def _parse(where: str, raw: object, name: str, base_dir: Path, report: SourceReport) -> tuple[str, VLMSample | None]:
    report.total += 1
    if isinstance(raw, RawError):
        report.skip(MALFORMED, where, raw.message)
        return where, None
    try:
        return where, parse_record(raw, name, base_dir)
    except RecordError as err:
        report.skip(err.reason, where, str(err))
        return where, None


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
