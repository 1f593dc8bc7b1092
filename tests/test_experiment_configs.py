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
        stage = {"apt": 2, "apt-gates": 2, "joint": 0, "joint-gated": 2, "floor": 1}[cell["variant"]]
        assert train.policy.apt.stage == stage
        assert bool(train.apt.stage1_steps) == cell["variant"].startswith("apt")
        assert (train.apt.gate_lr_scale != 1.0) == (cell["variant"] == "apt-gates")
    assert totals == {cfg["steps"]} and len(depths) == 1
    evaluation = _parse(cfg["eval"].format(run=tmp_path / "policy", splits="[" + ",".join(cfg["splits"]) + "]"))
    assert tuple(evaluation.splits) == tuple(cfg["splits"])


def _summarize():
    spec = importlib.util.spec_from_file_location("apt_summarize", ROOT / "results" / "apt" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_root(root: Path, vlm_bytes: bytes) -> None:
    (root / "pretrain" / "model").mkdir(parents=True)
    (root / "pretrain" / "model" / "model.safetensors").write_bytes(vlm_bytes)
    (root / "collect" / "data" / "chunk-000").mkdir(parents=True)
    (root / "collect" / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"demos")


def _finish_cell(root: Path, cell: str) -> None:
    (root / "exp" / cell / "eval").mkdir(parents=True)
    (root / "exp" / cell / "eval" / "manifest.json").write_text('{"status": "complete"}')
    (root / "exp" / cell / "eval" / "results.json").write_text("{}")


def test_upstream_fingerprint_is_kept_per_seed(tmp_path):
    """A session with another VLM may add seeds but not join a seed whose cells were trained on the old one."""
    summarize = _summarize()
    cfg = {"name": "exp", "data": "collect", "heads": ["pi0"], "variants": {"apt": "", "joint": ""},
           "seeds": [0, 1]}
    results = tmp_path / "results"
    old, new = tmp_path / "old", tmp_path / "new"
    _fake_root(old, b"vlm trained on machine A")
    _fake_root(new, b"vlm trained on machine B")
    _finish_cell(old, "pi0-apt-s0")
    summarize.store(cfg, old, results, [0])
    assert (results / "pi0-apt-s0" / "eval" / "results.json").is_file()
    assert set(summarize.stored_upstream(results)) == {"0"}

    with pytest.raises(SystemExit, match=r"seed\(s\) \[0\]"):
        summarize.store(cfg, new, results, [0])
    _finish_cell(new, "pi0-joint-s0")  # never stored: its seed belongs to the old VLM
    _finish_cell(new, "pi0-apt-s1")
    summarize.store(cfg, new, results, [1])
    stored = summarize.stored_upstream(results)
    assert stored["0"] != stored["1"]
    assert stored["1"] == summarize.upstream_fingerprint(cfg, new)
    assert not (results / "pi0-joint-s0").exists() and (results / "pi0-apt-s1").is_dir()
    # a seed with no finished cell yet is not bound to this session's VLM
    summarize.store(cfg, old, results, [2])
    assert "2" not in summarize.stored_upstream(results)


def test_single_fingerprint_of_the_first_sessions_reads_as_seed_0(tmp_path):
    summarize = _summarize()
    (tmp_path / "upstream.json").write_text('{"vlm": "a", "demonstrations": "b"}')
    assert summarize.stored_upstream(tmp_path) == {"0": {"vlm": "a", "demonstrations": "b"}}


def test_paired_table_counts_discordant_episodes(tmp_path):
    summarize = _summarize()
    episodes = [("reach", "seen", str(i)) for i in range(20)]
    apt = {key: i < 12 for i, key in enumerate(episodes)}  # 12 successes: 0-11
    joint = {key: 9 <= i < 14 for i, key in enumerate(episodes)}  # 5 successes: 9-13, three shared with apt
    overall = {"n": 20, "success_rate": 0.0}
    cells = {("pi0", "apt", 0): {"results": {"overall": {**overall, "successes": 12, "success_rate": 0.6}},
                                 "episodes": apt},
             ("pi0", "joint", 0): {"results": {"overall": {**overall, "successes": 5, "success_rate": 0.25}},
                                   "episodes": joint},
             ("pi0", "joint", 1): {"results": {"overall": {**overall, "successes": 7, "success_rate": 0.35}},
                                   "episodes": None}}  # a seed without per-episode outcomes: not paired
    lines = summarize.overall_lines("pi0", ["apt", "joint"], [0, 1], cells)
    assert "| joint | 5/20 | 7/20 | 12/40 = 30% [18%-45%] | 30 ± 7% |" in lines
    # apt only: 0-8 (9), joint only: 12-13 (2), both: 9-11 (3), neither: 14-19 (6); binomial(2 of 11) p = 0.065
    assert "| joint | 0 | 9 | 2 | 3 | 6 | 0.065 |" in lines
