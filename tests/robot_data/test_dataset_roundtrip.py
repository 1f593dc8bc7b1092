"""Write -> read round trips for image and video datasets."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from robot_data_helpers import CAM, LENGTHS, TASKS, write_dataset

from vlm2vla.robot_data.reader import LeRobotDatasetReader


@pytest.mark.parametrize("image_dtype", ["image", "video"])
def test_round_trip_values(tmp_path, episodes, image_dtype):
    write_dataset(tmp_path, episodes, image_dtype)
    reader = LeRobotDatasetReader.open(tmp_path)
    assert reader.num_episodes == 3 and reader.num_frames == sum(LENGTHS)
    assert reader.tasks == TASKS
    for i, ep in enumerate(episodes):
        got = reader.load_episode(i)
        np.testing.assert_array_equal(got["observation.state"], ep["observation.state"])
        np.testing.assert_array_equal(got["action"], ep["action"])
        if image_dtype == "image":
            np.testing.assert_array_equal(got[CAM], ep[CAM])
        else:
            assert np.abs(got[CAM].astype(int) - ep[CAM]).mean() < 4.0
        np.testing.assert_array_equal(got["frame_index"], np.arange(LENGTHS[i]))
        np.testing.assert_allclose(got["timestamp"], np.arange(LENGTHS[i]) / 10, atol=1e-6)
        assert got["task"] == TASKS[i % 2]


def test_metadata_layout(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "video")
    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 51, 2)
    assert info["splits"] == {"train": "0:3"}
    assert list(info["features"])[-5:] == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    assert info["features"][CAM]["info"]["video.codec"] == "av1"
    # Several episodes share one data file and one video file.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
        "meta/stats.json", "meta/tasks.parquet", f"videos/{CAM}/chunk-000/file-000.mp4"]
    rows = pq.read_table(tmp_path / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["dataset_from_index"] for r in rows] == [0, 10, 27]
    assert [r[f"videos/{CAM}/from_timestamp"] for r in rows] == pytest.approx([0.0, 1.0, 2.7])
    assert [r[f"videos/{CAM}/to_timestamp"] for r in rows] == pytest.approx([1.0, 2.7, 5.1])
    assert rows[0]["tasks"] == [TASKS[0]]
    tasks = pq.read_table(tmp_path / "meta/tasks.parquet")
    assert tasks.column_names == ["task_index", "task"]
    data = pq.read_table(tmp_path / "data/chunk-000/file-000.parquet")
    assert data["index"].to_pylist() == list(range(51))
    assert str(data.schema.field("observation.state").type) == "fixed_size_list<element: float>[4]"


def test_image_column_is_hf_image_struct(tmp_path, episodes):
    write_dataset(tmp_path, episodes[:1], "image")
    schema = pq.read_schema(tmp_path / "data/chunk-000/file-000.parquet")
    assert str(schema.field(CAM).type) == "struct<bytes: binary, path: string>"
    assert json.loads(schema.metadata[b"huggingface"])["info"]["features"][CAM] == {"_type": "Image"}
    first = pq.read_table(tmp_path / "data/chunk-000/file-000.parquet")[CAM][0].as_py()
    assert first["bytes"].startswith(b"\x89PNG")


def test_files_roll_over_at_size_limit(tmp_path, episodes):
    # Noise images do not compress: 51 frames x ~3 KB PNG = ~0.16 MB per 3 episodes, so 30 episodes
    # (~1.6 MB) must spread over at least two files under a 1 MB limit.
    rng = np.random.default_rng(0)
    many = [{**ep, CAM: rng.integers(0, 256, ep[CAM].shape, dtype=np.uint8)} for ep in episodes * 10]
    write_dataset(tmp_path, many, "image", data_files_size_in_mb=1)
    files = sorted((tmp_path / "data").rglob("*.parquet"))
    assert len(files) >= 2
    assert all(f.stat().st_size < 1024 * 1024 for f in files)
    reader = LeRobotDatasetReader.open(tmp_path)
    assert reader.num_frames == 10 * sum(LENGTHS)
    assert len({reader.data_path(e) for e in range(reader.num_episodes)}) == len(files)
    for e in (0, 17, len(many) - 1):
        np.testing.assert_array_equal(reader.load_episode(e)[CAM], many[e][CAM])
        np.testing.assert_array_equal(reader.load_episode(e)["action"], many[e]["action"])


@pytest.mark.parametrize("image_dtype", ["image", "video"])
def test_files_roll_over_at_frame_cap(tmp_path, episodes, image_dtype):
    from robot_data_helpers import make_features

    from vlm2vla.robot_data.writer import LeRobotDatasetWriter

    with LeRobotDatasetWriter.create(tmp_path, fps=10, features=make_features(image_dtype),
                                     max_frames_per_file=30) as writer:
        for i, ep in enumerate(episodes * 2):
            writer.add_episode(ep, task=TASKS[i % 2])
    reader = LeRobotDatasetReader.open(tmp_path)
    # 10+17 fit in one file; 24 starts the next; 10 fits next to it? no (34 > 30): a new file; ...
    assert [r["data/file_index"] for r in reader.episodes] == [0, 0, 1, 2, 2, 3]
    if image_dtype == "video":
        assert [r[f"videos/{CAM}/file_index"] for r in reader.episodes] == [0, 0, 1, 2, 2, 3]
        assert reader.episodes[4][f"videos/{CAM}/from_timestamp"] == pytest.approx(1.0)
    for e, ep in enumerate(episodes * 2):
        got = reader.load_episode(e)
        np.testing.assert_array_equal(got["action"], ep["action"])
        assert np.abs(got[CAM].astype(int) - ep[CAM]).mean() < 4.0
