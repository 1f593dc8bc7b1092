"""The shipped experiment configs expand into cells whose commands are valid stage configs, and the APT
experiments compare their variants at the same total number of expert steps and final depth."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
import yaml

from vlm2vla.config import load_config
from vlm2vla.stages import stage_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "configs" / "experiments").glob("*.yaml"))


def _runner():
    spec = importlib.util.spec_from_file_location("apt_run", ROOT / "results" / "apt" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(command: str):
    """`<stage> [--config NAME] key=value ...` -> the stage's config object."""
    stage, *args = shlex.split(command)
    name = None
    if args[:1] == ["--config"]:
        name, args = args[1], args[2:]
    return load_config(stage_config(stage), name, args)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_cells_are_valid_and_comparable(path, tmp_path):
    cfg = yaml.safe_load(path.read_text())
    cfg["root"] = str(tmp_path)
    cells = _runner().cells(cfg, cfg["seeds"], cfg["heads"], list(cfg["variants"]))
    assert len(cells) == len(cfg["seeds"]) * len(cfg["heads"]) * len(cfg["variants"]) and len(cfg["seeds"]) >= 3
    for command in cfg["upstream"].values():
        _parse(command.format(root=tmp_path))
    totals, depths = set(), set()
    for cell in cells:
        train = _parse(cell["train"])
        assert train.policy.head == cell["head"] and train.seed == cell["seed"]
        # every cell keeps the VLM frozen: only the expert's training differs between variants
        assert "vlm" in train.freeze or (train.policy.apt.stage and train.apt.freeze_vlm)
        totals.add(train.optim.max_steps + train.apt.stage1_steps)
        depths.add(getattr(train.policy, cell["head"]).num_layers)
        stage = {"apt": 2, "joint": 0, "joint-gated": 2, "floor": 1}[cell["variant"]]
        assert train.policy.apt.stage == stage
        assert bool(train.apt.stage1_steps) == (cell["variant"] == "apt")
    assert totals == {cfg["steps"]} and len(depths) == 1
    evaluation = _parse(cfg["eval"].format(run=tmp_path / "policy", splits="[" + ",".join(cfg["splits"]) + "]"))
    assert tuple(evaluation.splits) == tuple(cfg["splits"])
