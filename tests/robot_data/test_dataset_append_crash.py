"""Re-open and append; crashes at any point keep every committed episode readable."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from robot_data_helpers import CAM, LENGTHS, TASKS, make_episode, make_features, write_dataset

from vlm2vla.robot_data.reader import LeRobotDatasetReader
from vlm2vla.robot_data.writer import LeRobotDatasetWriter


def all_rows(root: Path, folder: str) -> pa.Table:
    """Every row of every parquet file under `folder`, in file order (how LeRobot loads them)."""
    return pa.concat_tables([pq.read_table(p) for p in sorted((root / folder).glob("*/*.parquet"))])


def assert_consistent(root: Path, strict: bool = True) -> LeRobotDatasetReader:
    """The committed episodes read back; with strict, no leftover rows either (LeRobot's view)."""
    reader = LeRobotDatasetReader.open(root)
    info = json.loads((root / "meta/info.json").read_text())
    assert reader.num_episodes == info["total_episodes"] and reader.num_frames == info["total_frames"]
    if reader.num_episodes:
        index = all_rows(root, "data")["index"].to_numpy()
        n = info["total_frames"]
        np.testing.assert_array_equal(index[:n], np.arange(n))
        if strict:
            assert len(index) == n and len(all_rows(root, "meta/episodes")) == info["total_episodes"]
    for e in range(reader.num_episodes):
        got = reader.load_episode(e)
        assert len(got["action"]) == reader.episodes[e]["length"]
    return reader


@pytest.mark.parametrize("image_dtype", ["image", "video"])
def test_reopen_and_append(tmp_path, episodes, image_dtype):
    write_dataset(tmp_path, episodes[:2], image_dtype)
    with LeRobotDatasetWriter.open(tmp_path) as writer:
        assert writer.num_episodes == 2 and writer.num_frames == LENGTHS[0] + LENGTHS[1]
        assert writer.add_episode(episodes[2], task="a new task") == 2
    reader = assert_consistent(tmp_path)
    assert reader.tasks == [*TASKS, "a new task"]
    assert [r["dataset_from_index"] for r in reader.episodes] == [0, 10, 27]
    got = reader.load_episode(2)
    np.testing.assert_array_equal(got["index"], np.arange(27, 51))
    np.testing.assert_array_equal(got["action"], episodes[2]["action"])
    assert json.loads((tmp_path / "meta/stats.json").read_text())["index"]["count"] == [51]
    if image_dtype == "video":  # appended into the same mp4, right after episode 1
        assert reader.episodes[2][f"videos/{CAM}/file_index"] == 0
        assert reader.episodes[2][f"videos/{CAM}/from_timestamp"] == pytest.approx(2.7)


def test_second_writer_is_refused(tmp_path, episodes):
    with LeRobotDatasetWriter.create(tmp_path, fps=10, features=make_features()):
        with pytest.raises(RuntimeError, match="already open"):
            LeRobotDatasetWriter.open(tmp_path)


def _count_replaces(monkeypatch, root, episode):
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(b), real(a, b)))
    with LeRobotDatasetWriter.open(root) as writer:
        writer.add_episode(episode, task="probe")
    monkeypatch.setattr(os, "replace", real)
    return len(calls)


@pytest.mark.parametrize("image_dtype", ["image", "video"])
def test_crash_at_every_write_of_add_episode(tmp_path, episodes, monkeypatch, image_dtype):
    """Fail the k-th atomic replace of the third add_episode, for every k; then resume."""
    probe = tmp_path / "probe"
    write_dataset(probe, episodes[:2], image_dtype)
    n_writes = _count_replaces(monkeypatch, probe, episodes[2])
    assert n_writes >= 5  # data, episodes row, tasks, stats, info (+ video)
    real = os.replace
    for k in range(n_writes + 1):
        root = tmp_path / f"crash{k}"
        write_dataset(root, episodes[:2], image_dtype)
        calls = {"n": 0}

        def failing_replace(a, b, k=k, calls=calls):
            calls["n"] += 1
            if calls["n"] == k + 1:
                raise OSError("simulated crash")
            return real(a, b)

        monkeypatch.setattr(os, "replace", failing_replace)
        writer = LeRobotDatasetWriter.open(root)
        committed = k == n_writes
        if committed:
            writer.add_episode(episodes[2], task="new task")
        else:
            with pytest.raises(OSError, match="simulated crash"):
                writer.add_episode(episodes[2], task="new task")
        writer.close()
        monkeypatch.setattr(os, "replace", real)

        reader = assert_consistent(root, strict=False)
        assert reader.num_episodes == (3 if committed else 2)
        with LeRobotDatasetWriter.open(root) as writer:  # recovery, then append again
            writer.add_episode(episodes[2], task="after crash")
        reader = assert_consistent(root)
        np.testing.assert_array_equal(reader.load_episode(reader.num_episodes - 1)["action"],
                                      episodes[2]["action"])
        assert reader.tasks[-1] == "after crash"


WRITER_SCRIPT = """
import sys
sys.path.insert(0, {helpers!r})
from robot_data_helpers import make_episode, make_features
from vlm2vla.robot_data.writer import LeRobotDatasetWriter
root, dtype = sys.argv[1], sys.argv[2]
writer = LeRobotDatasetWriter.create(root, fps=10, features=make_features(dtype), data_files_size_in_mb=1,
                                     video_files_size_in_mb=1)
for i in range(10_000):
    writer.add_episode(make_episode(8 + i % 7, i), task=f"task {{i % 3}}")
    print(i + 1, flush=True)
"""


@pytest.mark.parametrize(("image_dtype", "delay"), [("image", 0.0), ("image", 0.013), ("video", 0.007),
                                                    ("video", 0.021)])
def test_sigkill_mid_write_keeps_committed_episodes(tmp_path, image_dtype, delay):
    root = tmp_path / "ds"
    script = WRITER_SCRIPT.format(helpers=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), image_dtype], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    committed = 0
    while committed < 4:
        line = proc.stdout.readline()
        assert line, "writer process died"
        committed = int(line)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = max([committed, *(int(x) for x in proc.stdout.read().split())])
    # LeRobot loads every data/*/*.parquet: a temp file left by the kill must not look like one.
    leftovers = [*root.glob("data/*/*.parquet"), *root.glob("meta/episodes/*/*.parquet")]
    assert all(p.name.startswith("file-") for p in leftovers)
    reader = assert_consistent(root, strict=False)
    assert reader.num_episodes >= committed
    for e in range(reader.num_episodes):
        expected = make_episode(8 + e % 7, e)
        np.testing.assert_array_equal(reader.load_episode(e)["action"], expected["action"])
    n = reader.num_episodes
    with LeRobotDatasetWriter.open(root) as writer:
        writer.add_episode(make_episode(9, 99), task="resumed")
    reader = assert_consistent(root)
    assert reader.num_episodes == n + 1
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]
