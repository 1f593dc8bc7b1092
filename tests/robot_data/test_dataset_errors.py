"""Unreadable, unsupported or missing files raise DatasetFormatError naming the file."""

import json

import pytest
from robot_data_helpers import write_dataset

from vlm2vla.robot_data.format import DatasetFormatError
from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset
from vlm2vla.robot_data.writer import LeRobotDatasetWriter


def test_unsupported_version(tmp_path, episodes):
    write_dataset(tmp_path, episodes[:1], "image")
    info_path = tmp_path / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["codebase_version"] = "v1.6"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError) as err:
        LeRobotDatasetReader.open(tmp_path)
    message = str(err.value)
    assert str(info_path) in message and "'v1.6'" in message and "v2.1" in message and "v3.0" in message
    with pytest.raises(DatasetFormatError, match="cannot be appended"):
        LeRobotDatasetWriter.open(tmp_path)


@pytest.mark.parametrize("target", ["data/chunk-000/file-000.parquet",
                                    "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet"])
def test_truncated_parquet(tmp_path, episodes, target):
    write_dataset(tmp_path, episodes, "image")
    path = tmp_path / target
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetFormatError) as err:
        RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path))
    assert str(path) in str(err.value) and "unreadable parquet" in str(err.value)


def test_garbage_parquet(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "image")
    path = tmp_path / "data/chunk-000/file-000.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(DatasetFormatError, match="file-000.parquet"):
        LeRobotDatasetReader.open(tmp_path).load_episode(0)


def test_missing_files_name_the_expected_path(tmp_path, episodes):
    with pytest.raises(DatasetFormatError, match=r"meta/info.json: file not found"):
        LeRobotDatasetReader.open(tmp_path / "nowhere")
    write_dataset(tmp_path, episodes, "video")
    video = next((tmp_path / "videos").rglob("*.mp4"))
    video.unlink()
    with pytest.raises(DatasetFormatError) as err:
        LeRobotDatasetReader.open(tmp_path).load_episode(0)
    assert str(video) in str(err.value) and "not found" in str(err.value)
    (tmp_path / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetFormatError, match=r"data/chunk-000/file-000.parquet: file not found"):
        LeRobotDatasetReader.open(tmp_path).load_episode(0)


def test_bad_episode_input_is_refused_before_writing(tmp_path, episodes):
    write_dataset(tmp_path, episodes[:1], "image")
    with LeRobotDatasetWriter.open(tmp_path) as writer:
        bad = dict(episodes[1])
        bad["action"] = bad["action"][:, :2]
        with pytest.raises(ValueError, match="action: expected shape"):
            writer.add_episode(bad, task="x")
        with pytest.raises(ValueError, match="missing"):
            writer.add_episode({"action": episodes[1]["action"]}, task="x")
        assert writer.num_episodes == 1
    assert LeRobotDatasetReader.open(tmp_path).num_episodes == 1
