"""VLM data: LLaVA-format sources, validation, the pool file, a chat Dataset, and the embedded pool.

    from vlm2vla.vlm_data import load_pool, VLMChatDataset, to_messages
    samples = load_pool("runs/pool", split="train")      # built by `vlm2vla pool`
    ds = VLMChatDataset(samples)                          # {"id", "source", "images", "messages"}

Modules: records (VLMSample, parsing), sources (SourceSpec, JSON/JSONL/parquet readers), validate
(image checks, per-source report), pool_io (pool.parquet), pool (`vlm2vla pool`), dataset
(VLMChatDataset), embedded/ (the generated default sources). Exports load lazily, so importing the
package costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VLMSample": "records", "to_messages": "records", "parse_record": "records", "RecordError": "records",
    "SKIP_REASONS": "records", "SourceSpec": "sources", "iter_raw_records": "sources",
    "SourceReport": "validate", "validate_source": "validate", "check_image": "validate",
    "read_pool": "pool_io", "load_pool": "pool_io", "write_pool": "pool_io", "heldout_split": "pool_io",
    "POOL_SCHEMA": "pool_io", "PoolConfig": "pool", "build_pool": "pool",
    "VLMChatDataset": "dataset", "drop_none": "dataset", "EmbeddedPoolConfig": "embedded.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm2vla.vlm_data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vlm2vla.vlm_data.{_EXPORTS[name]}"), name)
