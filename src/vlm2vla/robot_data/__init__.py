"""Robot episodes as LeRobotDataset v3.0 (read v2.1 too), written crash-safely.

    from vlm2vla.robot_data import LeRobotDatasetWriter, LeRobotDatasetReader, RobotEpisodeDataset

Modules: format (layout, feature specs, DatasetFormatError), files (atomic writes, checked
reads), stats (per-episode and merged stats), video (mp4 encode/concat/decode, write_mp4),
writer, reader, collect (scripted-expert collection). Names are imported lazily so that
`import vlm2vla.robot_data.writer` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LeRobotDatasetWriter": "vlm2vla.robot_data.writer",
    "LeRobotDatasetReader": "vlm2vla.robot_data.reader",
    "RobotEpisodeDataset": "vlm2vla.robot_data.reader",
    "DatasetFormatError": "vlm2vla.robot_data.format",
    "write_mp4": "vlm2vla.robot_data.video",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vlm2vla.robot_data' has no attribute {name!r}")
