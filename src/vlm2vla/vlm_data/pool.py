"""`vlm2vla pool`: merge VLM data sources into one pool file with per-source counts.

    vlm2vla pool run_dir=runs/pool                                   # the embedded (generated) pool
    vlm2vla pool 'sources=[{name: llava, path: data/llava.jsonl}]' embedded.enabled=false

Writes
    <run_dir>/pool.parquet       one row per valid sample (schema in vlm_data/pool_io.py)
    <run_dir>/pool_report.json   per source: kind (general / embodied / external), records seen,
                                 kept, skipped by reason with file:line examples; split sizes
    <run_dir>/embedded/<source>/ the generated sources (data.jsonl + PNG images), when enabled

Bad records are skipped and counted; the run stops only when more than `max_bad_fraction` of one
source is bad, naming the source, its counts and examples. Ids become "<source>/<id>" so they are
unique across the pool; a repeated id is skipped as duplicate_id. The held-out split is a hash of
(seed, id), so it is deterministic and stable when sources are added.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from vlm2vla.fileio import atomic_path, atomic_write_json
from vlm2vla.runs import Run
from vlm2vla.vlm_data.embedded.config import EmbeddedPoolConfig
from vlm2vla.vlm_data.pool_io import PoolWriter, heldout_split
from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    """Settings of one `vlm2vla pool` run."""

    # run directory; pool.parquet, pool_report.json and embedded/ go here
    run_dir: str = "runs/pool"
    # LLaVA-format sources to merge (name, path, format, image_root)
    sources: tuple[SourceSpec, ...] = ()
    # stop when more than this fraction of one source's records is bad (0.05 = 5%)
    max_bad_fraction: float = 0.05
    # the generated embedded pool (the built-in default)
    embedded: EmbeddedPoolConfig = field(default_factory=EmbeddedPoolConfig)
    # fraction of samples held out for evaluation, chosen by a hash of (seed, id)
    heldout_fraction: float = 0.1
    # seed of the held-out split
    seed: int = 0
    # threads that open images to check them
    num_workers: int = 8
    # show progress bars
    progress: bool = True

    def __post_init__(self) -> None:
        # OmegaConf builds tuple elements as plain dicts (it types list elements only): make them specs.
        specs = tuple(SourceSpec(**s) if isinstance(s, Mapping) else s for s in self.sources)
        object.__setattr__(self, "sources", specs)
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if not self.sources and not self.embedded.enabled:
            raise ValueError("No sources: give sources=[{name: ..., path: ...}] or keep embedded.enabled=true.")
        names = [s.name for s in self.sources] + (list(self.embedded.sources) if self.embedded.enabled else [])
        repeated = sorted(n for n, c in Counter(names).items() if c > 1)
        if repeated:
            raise ValueError(f"Source names must be unique; repeated: {repeated} (embedded sources count too).")


def build_pool(cfg: PoolConfig, run: Run) -> dict:
    """Generate the embedded sources (if enabled), validate and merge every source, write the pool.

    Args:
        cfg: the pool settings.
        run: the open run directory.

    Returns:
        The metrics also recorded in the manifest (samples, heldout, skipped, sources).

    Raises:
        ValueError: a source has more than max_bad_fraction bad records (the message names it).
        FileNotFoundError: a source file does not exist.
    """
    out = Path(cfg.run_dir)
    specs = [(spec, "external") for spec in cfg.sources]
    if cfg.embedded.enabled:
        from vlm2vla.vlm_data.embedded import generate_embedded_pool

        specs += generate_embedded_pool(cfg.embedded, out / "embedded", progress=cfg.progress)
    run.update(inputs={spec.name: spec.path for spec, _ in specs})
    reports: list[SourceReport] = []
    splits: Counter = Counter()
    try:
        with atomic_path(out / "pool.parquet") as tmp, open(tmp, "wb") as f:
            _merge(cfg, specs, f, reports, splits)
    finally:
        # Written on failure too: the report's examples are what a user needs to fix a bad source.
        atomic_write_json(out / "pool_report.json", _report(cfg, reports, splits))
    metrics = {"samples": sum(splits.values()), "heldout": splits["heldout"], "sources": len(reports),
               "skipped": sum(r.bad for r in reports)}
    run.finish(metrics=metrics, outputs={"pool": out / "pool.parquet", "report": out / "pool_report.json"})
    log.info("Pool: %d samples (%d held out) from %d sources, %d records skipped; see %s", metrics["samples"],
             metrics["heldout"], metrics["sources"], metrics["skipped"], out / "pool_report.json")
    return metrics


def _merge(cfg: PoolConfig, specs: list[tuple[SourceSpec, str]], file: BinaryIO, reports: list[SourceReport],
           splits: Counter) -> None:
    writer = PoolWriter(file)
    seen: set[str] = set()
    try:
        for spec, kind in specs:
            report = SourceReport(name=spec.name, kind=kind)
            reports.append(report)
            for sample in validate_source(spec, report, seen, workers=cfg.num_workers, progress=cfg.progress):
                sample = replace(sample, split=heldout_split(sample.id, cfg.heldout_fraction, cfg.seed))
                splits[sample.split] += 1
                writer.add(sample)
            _check_bad_fraction(report, cfg.max_bad_fraction, spec)
            log.info("Source %s (%s): kept %d of %d%s", spec.name, kind, report.kept, report.total,
                     f", skipped {dict(report.skipped)}" if report.bad else "")
    finally:
        # Closed on failure too (the temporary file is then discarded): an unclosed writer would
        # try to write its footer later, into a closed file.
        writer.close()


def _check_bad_fraction(report: SourceReport, limit: float, spec: SourceSpec) -> None:
    if report.bad_fraction <= limit:
        return
    reasons = ", ".join(f"{reason}: {n}" for reason, n in report.skipped.most_common())
    examples = "; ".join(ex for items in report.examples.values() for ex in items[:2])
    raise ValueError(
        f"Source {spec.name!r} ({spec.path}): {report.bad} of {report.total} records are bad "
        f"({report.bad_fraction:.1%} > max_bad_fraction {limit:.1%}) - {reasons}. Examples: {examples}. "
        f"Fix the source, or raise max_bad_fraction to skip them.")


def _report(cfg: PoolConfig, reports: list[SourceReport], splits: Counter) -> dict:
    return {
        "sources": {r.name: r.to_dict() for r in reports},
        # sorted: a set's order changes between runs, and the report should regenerate byte for byte
        "kinds": {kind: sorted(r.name for r in reports if r.kind == kind)
                  for kind in sorted({r.kind for r in reports})},
        "total": {"records": sum(r.total for r in reports), "kept": sum(r.kept for r in reports),
                  "skipped": sum(r.bad for r in reports)},
        "splits": dict(splits),
        "heldout_fraction": cfg.heldout_fraction,
        "max_bad_fraction": cfg.max_bad_fraction,
    }
