"""Training metrics: one JSON line per log step in <run_dir>/metrics.jsonl, plus TensorBoard / W&B.

TensorBoard and W&B are optional: asked for in `report_to` but not installed, they are skipped with a
warning, never a failure. Only the main process writes. On resume, lines past the checkpoint's step
(logged by the interrupted run after its last checkpoint) are dropped so the file never holds a step
twice.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from vlm2vla.fileio import atomic_write_text, read_jsonl_log

log = logging.getLogger(__name__)

REPORTERS = ("tensorboard", "wandb")  # trackers `report_to` may name


class MetricsWriter:
    """Appends metric records to a JSONL file and to the trackers asked for.

    Args:
        path: the JSONL file.
        report_to: "tensorboard" and/or "wandb".
        run_name: the tracker's run name.
        enabled: False on non-main processes (nothing is written).
    """

    def __init__(self, path: Path, report_to: tuple[str, ...] = (), run_name: str = "", enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self._tb = self._wandb = None
        if enabled:
            self._open_trackers(report_to, run_name)

    def _open_trackers(self, report_to: tuple[str, ...], run_name: str) -> None:
        for name, module in (("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")):
            if name not in report_to:
                continue
            top = module.split(".")[0] if name == "wandb" else "tensorboard"
            if importlib.util.find_spec(top) is None:
                log.warning("report_to includes %s but it is not installed; logging to %s only", name, self.path)
                continue
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            else:
                import wandb

                self._wandb = wandb.init(name=run_name or None, dir=str(self.path.parent), resume="allow")

    def truncate_after(self, step: int) -> None:
        """Drop lines with a step beyond `step` (written after the checkpoint a run resumes from)."""
        if not self.enabled or not self.path.is_file():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        # read_jsonl_log also drops the torn last line a killed run may have left.
        kept = [r for r in read_jsonl_log(self.path) if r.get("step", 0) <= step]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (it must hold "step")."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        step = record["step"]
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        """Flush and close the trackers."""
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return read_jsonl_log(path)
