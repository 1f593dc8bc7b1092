"""Atomic checkpoints: complete ones are found, a crash mid-save leaves the previous one intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from vlm2vla.training import checkpoint as ckpt


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    acc = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    model, optimizer = acc.prepare(model, optimizer)
    acc.register_for_checkpointing(scheduler)
    return acc, model, optimizer, scheduler


def _train_step(model, optimizer, scheduler) -> None:
    loss = model(torch.randn(3, 4)).pow(2).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def _save(acc, root: Path, step: int, save_model=lambda path: path.mkdir()) -> Path:
    return ckpt.save_checkpoint(acc, root, step, {"step": step, "data": {"epoch": 0, "index": step}},
                                save_model, keep=2)


def test_save_load_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    acc, model, optimizer, scheduler = _parts()
    _train_step(model, optimizer, scheduler)
    path = _save(acc, tmp_path, 1)
    after_save = torch.rand(3)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, optimizer, scheduler)  # move everything on, then come back
    state = ckpt.load_checkpoint(acc, path)
    assert state["step"] == 1
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert scheduler.last_epoch == 1
    assert torch.equal(torch.rand(3), after_save)  # the torch RNG is back where it was


def test_keeps_the_newest_checkpoints_and_ignores_incomplete_ones(tmp_path):
    acc, *_ = _parts()
    for step in (2, 4, 6):
        _save(acc, tmp_path, step)
    (tmp_path / "step-00000008").mkdir()  # no trainer_state.json: not a checkpoint
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000006"


def test_crash_mid_save_leaves_previous_checkpoint_intact(tmp_path):
    acc, model, optimizer, scheduler = _parts()
    good = _save(acc, tmp_path, 1)
    before = {p.name: p.read_bytes() for p in (good / "state").iterdir()}

    def crash(path: Path) -> None:
        raise RuntimeError("disk full")

    _train_step(model, optimizer, scheduler)
    with pytest.raises(RuntimeError, match="disk full"):
        _save(acc, tmp_path, 2, save_model=crash)
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert {p.name: p.read_bytes() for p in (good / "state").iterdir()} == before
    assert json.loads((good / ckpt.STATE_FILE).read_text())["step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == [".tmp-step-00000002"]
    ckpt.remove_partial(tmp_path)  # what the next run does first
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
