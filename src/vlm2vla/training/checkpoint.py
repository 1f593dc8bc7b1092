"""Atomic training checkpoints: everything needed to resume a run exactly, plus a loadable model.

Layout of one checkpoint:

    <run_dir>/checkpoints/step-00000200/
        trainer_state.json   step, data-stream position (epoch, next micro-batch), samples seen
        state/               accelerate's save_state: weights, optimizer, scheduler, RNG (python,
                             numpy, torch, cuda) of every process; FSDP-sharded where FSDP is used
        model/               a normal transformers folder (save_pretrained + processor)

A checkpoint is written under a hidden temporary name (`.tmp-step-...`) and renamed into place only
once complete, so a crash mid-save leaves the previous checkpoint untouched; leftover temporary
folders are removed when the next run starts. Only folders named step-<N> with a trainer_state.json
count as checkpoints.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from vlm2vla.fileio import atomic_write_json

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class CheckpointConfig:
    """When a training run checkpoints and how many checkpoints it keeps."""

    # steps between checkpoints (0 = only the final one)
    interval: int = 100
    # checkpoints kept (the oldest are deleted)
    keep: int = 2

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError(f"checkpoint.interval must be >= 0, got {self.interval}")
        if self.keep < 1:
            raise ValueError(f"checkpoint.keep must be >= 1, got {self.keep}")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after `step` optimizer steps."""
    return f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first, as (step, folder)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_partial(root: Path) -> None:
    """Delete temporary folders a crash mid-save left behind (call on the main process only)."""
    if root.is_dir():
        for path in root.glob(f"{_TMP_PREFIX}*"):
            log.warning("Removing incomplete checkpoint %s (a save was interrupted)", path)
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, trainer_state: dict[str, Any],
                    save_model: Callable[[Path], None], keep: int) -> Path:
    """Write a checkpoint atomically; every process must call this.

    Args:
        accelerator: holds the prepared model, optimizer and registered objects (the scheduler).
        root: the checkpoints folder.
        step: optimizer steps taken.
        trainer_state: JSON-serialisable loop state (step, data position, ...).
        save_model: writes a loadable model folder at the given path; called on every process (a
            sharded model must gather its weights collectively) and writes on the main one.
        keep: complete checkpoints to keep; older ones are deleted after the new one is in place.

    Returns:
        The final checkpoint folder.
    """
    final = root / checkpoint_name(step)
    if (final / STATE_FILE).is_file():
        return final  # this exact state is already on disk (e.g. a finished run re-run)
    tmp = root / f"{_TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    save_model(tmp / "model")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # Written last: its presence marks the folder complete even before the rename.
        atomic_write_json(tmp / STATE_FILE, trainer_state)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete folder under the final name
        tmp.rename(final)
        _prune(root, keep)
        log.info("Saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states from `path`; return its trainer state."""
    accelerator.load_state(str(path / "state"))
    return json.loads((path / STATE_FILE).read_text())


def _prune(root: Path, keep: int) -> None:
    for _, path in list_checkpoints(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
