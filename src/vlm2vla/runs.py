"""Run directories and their manifests.

A run directory holds one stage's outputs plus two files that describe them:

    <run_dir>/config.yaml     the resolved config (re-run with `--config <run_dir>/config.yaml`)
    <run_dir>/manifest.json   stage, status, inputs, outputs, metrics, package versions, git commit

Re-running a stage with the same run_dir resumes it; the saved config must then match the new one
(a changed config would silently mix two experiments in one folder), unless `overwrite` is asked for.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm2vla.config import ConfigError, config_to_dict, save_config
from vlm2vla.fileio import atomic_write_json

log = logging.getLogger(__name__)

# Versions worth recording for reproducibility; missing ones are simply left out.
TRACKED_PACKAGES = (
    "vlm2vla", "torch", "numpy", "transformers", "accelerate", "metaworld", "mujoco", "gymnasium",
    "pyarrow", "av",
)


@dataclass
class Run:
    """An open run directory; `update`/`finish` rewrite manifest.json atomically."""

    dir: Path
    stage: str
    manifest: dict[str, Any] = field(default_factory=dict)
    # False on every process but the main one of a distributed launch: only one process owns the files
    writes: bool = True

    @classmethod
    def open(cls, run_dir: str | Path, stage: str, cfg: Any, overwrite: bool = False) -> Run:
        """Create a run directory, or reopen it to resume when its saved config equals `cfg`.

        Raises:
            ConfigError: the folder holds a run of another stage or with another config.
        """
        run_dir = Path(run_dir)
        if process_rank() != 0:
            # Under torchrun/accelerate every process runs the CLI; the main one alone checks, deletes
            # (--overwrite) and writes, so they never race. The others wait for it when the stage
            # forms its process group.
            return cls(dir=run_dir, stage=stage, writes=False)
        manifest_path = run_dir / "manifest.json"
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        if manifest is not None and never_started(run_dir, manifest):
            # It failed before writing anything (a bad input, a typo): nothing to resume or to lose, so the
            # re-run with the fix starts afresh instead of asking for --overwrite.
            log.info("The %s run in %s stopped before writing any output (%s); starting it afresh", manifest.get(
                "stage"), run_dir, manifest.get("error", manifest.get("status")))
            manifest = None
        if manifest is not None:
            _check_resumable(run_dir, manifest, stage, config_to_dict(cfg), _defaults(cfg))
            manifest["resumed"] = manifest.get("resumed", 0) + 1
            log.info("Resuming %s run in %s", stage, run_dir)
        else:
            manifest = {
                "stage": stage,
                "created": _now(),
                "config": config_to_dict(cfg),
                "inputs": {},
                "outputs": {},
                "metrics": {},
            }
        manifest.update(status="running", updated=_now(), versions=package_versions(), git=git_commit())
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        run = cls(dir=run_dir, stage=stage, manifest=manifest)
        run._write()
        return run

    def update(self, inputs: dict | None = None, outputs: dict | None = None, metrics: dict | None = None) -> None:
        """Merge inputs/outputs (name -> path or description) and metrics into the manifest."""
        if not self.writes:
            return
        for key, extra in (("inputs", inputs), ("outputs", outputs), ("metrics", metrics)):
            if extra:
                self.manifest[key].update({k: str(v) if isinstance(v, Path) else v for k, v in extra.items()})
        self.manifest["updated"] = _now()
        self._write()

    def finish(self, metrics: dict | None = None, outputs: dict | None = None) -> None:
        """Record final metrics/outputs and mark the run complete."""
        if not self.writes:
            return
        self.manifest["status"] = "complete"
        self.update(metrics=metrics, outputs=outputs)

    def fail(self, error: BaseException) -> None:
        """Mark the run failed (or interrupted) with the error's text; the run can be resumed."""
        if not self.writes:
            return
        self.manifest["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self.manifest["error"] = f"{type(error).__name__}: {error}"
        self.update()

    def _write(self) -> None:
        atomic_write_json(self.dir / "manifest.json", self.manifest)


# What Run.open itself writes; any other non-empty file in a run directory is output of the stage.
RUN_FILES = ("config.yaml", "manifest.json")


def never_started(run_dir: Path, manifest: dict) -> bool:
    """True for a run that failed or was interrupted before writing any output (only its own config and
    manifest, empty files and empty folders are there), so starting it afresh loses nothing."""
    if manifest.get("status") not in ("failed", "interrupted"):
        return False
    return not any(path.is_file() and path.name not in RUN_FILES and path.stat().st_size > 0
                   for path in run_dir.rglob("*"))


def process_rank() -> int:
    """This process's global rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's results, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The source tree's commit (with '+dirty' when it has uncommitted changes), or None outside git."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=src, capture_output=True, text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def _defaults(cfg: Any) -> dict | None:
    """The config class's defaults as a dict, or None when it cannot be built without arguments."""
    try:
        return config_to_dict(type(cfg)())
    except (TypeError, ValueError, OSError):  # required fields, or a check in __post_init__
        return None


def _check_resumable(run_dir: Path, manifest: dict, stage: str, new_config: dict,
                     defaults: dict | None = None) -> None:
    if manifest.get("stage") != stage:
        raise ConfigError(
            f"{run_dir} holds a '{manifest.get('stage')}' run, not '{stage}'. Choose another run_dir."
        )
    old = manifest.get("config", {})
    diffs = _diff(old, new_config, defaults)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:5])
        raise ConfigError(
            f"{run_dir} holds a {stage} run with a different config ({shown}). Resuming would mix two "
            "experiments: use another run_dir, or pass --overwrite to start this one afresh."
        )


_ABSENT = object()


def _diff(old: Any, new: Any, default: Any = None, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The (dotted key, old, new) pairs that differ. A key the saved config lacks counts as equal when
    the new value is the field's default: a field added to the code after the run started, at the value
    that reproduces the old behaviour, must not make every earlier run unresumable."""
    if isinstance(old, dict) and isinstance(new, dict):
        default = default if isinstance(default, dict) else {}
        out = []
        for key in sorted(set(old) | set(new)):
            out.extend(_diff(old.get(key, _ABSENT), new.get(key, _ABSENT), default.get(key, _ABSENT),
                             f"{prefix}{key}."))
        return out
    if old is _ABSENT and new is not _ABSENT and default is not _ABSENT and new == default:
        return []
    if old == new:
        return []
    shown = [None if v is _ABSENT else v for v in (old, new)]
    return [(prefix.rstrip("."), *shown)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
