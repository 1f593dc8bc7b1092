"""`vlm2vla collect`: demonstrations land in a readable LeRobotDataset, and an interrupted run resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vlm2vla.cli import main
from vlm2vla.robot_data import collect as collect_mod
from vlm2vla.robot_data.reader import LeRobotDatasetReader
from vlm2vla.sim import get_instructions

ARGS = ["tasks=[reach-v3,button-press-v3]", "episodes_per_task=3", "sim.image_size=32", "progress=false"]


def _collect(run_dir, *extra):
    return main(["collect", f"run_dir={run_dir}", *ARGS, *extra])


def _episodes(root):
    reader = LeRobotDatasetReader.open(root)
    return reader, [reader.load_episode(i) for i in range(reader.num_episodes)]


def test_collects_successful_expert_demos(tmp_path):
    assert _collect(tmp_path / "c", "use_videos=false") == 0
    report = json.loads((tmp_path / "c" / "collect_report.json").read_text())
    assert report["attempts"] == 6 and report["expert_success_rate"] >= 0.8
    reader, episodes = _episodes(tmp_path / "c" / "dataset")
    assert reader.num_episodes == report["episodes"]
    assert reader.fps == 80
    assert set(reader.features) >= {"observation.images.corner2", "observation.state", "action"}
    canonical = {get_instructions(t).canonical for t in ("reach-v3", "button-press-v3")}
    assert set(reader.tasks) <= canonical
    for ep in episodes:
        t = len(ep["action"])
        assert ep["observation.images.corner2"].shape[0] == t and ep["observation.state"].shape == (t, 4)
        assert np.all(np.abs(ep["action"]) <= 1.0)


def test_interrupted_collection_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert _collect(reference, "use_videos=false") == 0

    # Interrupt the second run while it writes its third episode.
    real_add = collect_mod.LeRobotDatasetWriter.add_episode
    calls = {"n": 0}

    def flaky_add(self, frames, task, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, frames, task, metadata)

    monkeypatch.setattr(collect_mod.LeRobotDatasetWriter, "add_episode", flaky_add)
    resumed = tmp_path / "resumed"
    assert _collect(resumed, "use_videos=false") == 130
    assert LeRobotDatasetReader.open(resumed / "dataset").num_episodes == 2
    assert json.loads((resumed / "manifest.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(collect_mod.LeRobotDatasetWriter, "add_episode", real_add)

    assert _collect(resumed, "use_videos=false") == 0
    ref_reader, ref_eps = _episodes(reference / "dataset")
    new_reader, new_eps = _episodes(resumed / "dataset")
    assert new_reader.num_episodes == ref_reader.num_episodes
    # Same demonstrations (seeded), possibly in another order; no episode twice.
    def key(ep):  # the whole trajectory: the hand starts at the same place in every episode
        return ep["observation.state"].tobytes() + ep["action"].tobytes()

    assert sorted(map(key, new_eps)) == sorted(map(key, ref_eps))
    assert len({key(ep) for ep in new_eps}) == len(new_eps)
    index = np.concatenate([ep["index"] for ep in new_eps])
    np.testing.assert_array_equal(index, np.arange(len(index)))


def test_unknown_task_lists_close_names(tmp_path, caplog):
    assert main(["collect", f"run_dir={tmp_path}/x", "tasks=[button-pres]"]) == 2
    assert "button-press" in caplog.text


@pytest.mark.slow
def test_sigkill_mid_collection_then_resume(tmp_path):
    """A hard kill (no cleanup at all) at a random point still resumes to the full dataset."""
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vlm2vla.cli", "collect", f"run_dir={run_dir}", *ARGS, "episodes_per_task=4"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    attempts = run_dir / "attempts.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not attempts.exists() or len(attempts.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    report = json.loads((run_dir / "collect_report.json").read_text())
    assert report["attempts"] == 8
    reader, episodes = _episodes(run_dir / "dataset")
    assert reader.num_episodes == report["episodes"]
    index = np.concatenate([ep["index"] for ep in episodes])
    np.testing.assert_array_equal(index, np.arange(len(index)))


def test_one_episode_with_more_workers_than_episodes(tmp_path):
    # fewer episodes than worker envs (num_envs=2 by default) used to crash in gymnasium
    assert main(["collect", f"run_dir={tmp_path / 'one'}", "tasks=[reach]", "episodes_per_task=1",
                 "sim.image_size=32", "progress=false", "num_envs=2"]) == 0
    assert LeRobotDatasetReader.open(tmp_path / "one").num_episodes == 1
