"""Reading the trainer's data: a pool (train / held-out splits) or a LLaVA-format mixture.

    train, heldout = load_samples("runs/pool")                 # pool run dir or pool.parquet
    train, heldout = load_samples("runs/select/mixture.jsonl")  # LLaVA JSON/JSONL/parquet; no held-out
    heldout = load_heldout("runs/pool", fallback=heldout)       # eval.data, when given

A pool file is recognised by its `split` column; any other file is read as one LLaVA source, with the
same record validation the pool stage applies (bad records are skipped and counted in the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from vlm2vla.vlm_data.pool_io import load_pool
from vlm2vla.vlm_data.records import VLMSample
from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source

log = logging.getLogger(__name__)


def is_pool(path: Path) -> bool:
    """True for a pool run directory or a parquet file with the pool schema's `split` column."""
    if path.is_dir():
        return True
    return path.suffix == ".parquet" and "split" in pq.read_schema(path).names


def load_samples(data: str | Path) -> tuple[list[VLMSample], list[VLMSample]]:
    """Training and held-out samples of `data`.

    Args:
        data: a pool run directory, a pool.parquet, or a LLaVA JSON/JSONL/parquet file.

    Returns:
        (train, heldout); heldout is empty for a LLaVA file (name one with eval.data).

    Raises:
        FileNotFoundError: `data` does not exist (the message names it).
        ValueError: `data` holds no training samples (the message names it).
    """
    path = _existing(data)
    if is_pool(path):
        train, heldout = load_pool(path, split="train"), load_pool(path, split="heldout")
    else:
        train, heldout = read_llava(path), []
    if not train:
        raise ValueError(f"No training samples in {path}: the file is empty or every record was invalid. "
                         "Rebuild it (vlm2vla pool / select) or point `data` at another file.")
    log.info("Data %s: %d training and %d held-out samples", path, len(train), len(heldout))
    return train, heldout


def load_heldout(eval_data: str | Path) -> list[VLMSample]:
    """Held-out samples from `eval_data`: a pool's held-out split, or every record of a LLaVA file."""
    path = _existing(eval_data)
    samples = load_pool(path, split="heldout") if is_pool(path) else read_llava(path)
    if not samples:
        raise ValueError(f"No held-out samples in {path} (eval.data).")
    return samples


def read_llava(path: Path) -> list[VLMSample]:
    """The valid samples of one LLaVA-format file; skipped records are counted in a warning."""
    spec = SourceSpec(name=path.stem.replace("/", "_") or "data", path=str(path))
    report = SourceReport(name=spec.name)
    samples = list(validate_source(spec, report, seen_ids=set(), progress=False))
    if report.bad:
        log.warning("%s: skipped %d of %d records (%s); e.g. %s", path, report.bad, report.total,
                    dict(report.skipped), next(iter(report.examples.values()))[0])
    return samples


def _existing(data: str | Path) -> Path:
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"Training data not found: {path} (set data= to a pool run directory, a "
                                "pool.parquet, or a LLaVA JSON/JSONL mixture).")
    if path.is_dir() and not (path / "pool.parquet").is_file():
        raise FileNotFoundError(f"No pool.parquet in {path}; build the pool first with `vlm2vla pool run_dir={path}`.")
    return path
