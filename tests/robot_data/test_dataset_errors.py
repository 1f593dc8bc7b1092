"""Unreadable, unsupported or missing files raise DatasetFormatError naming the file."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from robot_data_helpers import CAM, write_dataset

from vlm2vla.robot_data.format import DatasetFormatError, EpisodeReadError
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
    with pytest.raises(DatasetFormatError, match=r"nowhere: no such folder"):
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


def test_truncated_video_names_file_episode_and_frame(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "video")
    video = next((tmp_path / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 3 // 4])  # the last episode's packets are cut
    reader = LeRobotDatasetReader.open(tmp_path)
    with pytest.raises(EpisodeReadError) as err:
        reader.load_episode(2)
    message = str(err.value)
    assert err.value.episode == 2 and str(video) in message and "episode 2" in message and "frames 0..23" in message
    assert "re-collect" in message and "max_bad_episodes" in message
    with pytest.raises(EpisodeReadError, match=r"episode 2, observation.images.cam, frame 23:"):
        RobotEpisodeDataset(reader)[len(RobotEpisodeDataset(reader)) - 1]
    # the failure leaves no broken handle behind: an intact episode of the same file still decodes
    assert reader.load_episode(0)[CAM].shape == (10, 32, 32, 3)


def test_corrupt_png_names_file_episode_and_frame(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "image")
    path = tmp_path / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    images = table[CAM].to_pylist()
    images[12] = {**images[12], "bytes": images[12]["bytes"][:40]}  # episode 1 (10 + 17 frames), frame 2
    pq.write_table(table.set_column(table.schema.get_field_index(CAM), CAM,
                                    pa.array(images, type=table.schema.field(CAM).type)), path)
    reader = LeRobotDatasetReader.open(tmp_path)
    with pytest.raises(EpisodeReadError, match=r"episode 1, observation.images.cam, frame 2: undecodable image"):
        reader.load_episode(1)
    with pytest.raises(EpisodeReadError, match="file-000.parquet: episode 1"):
        RobotEpisodeDataset(reader)[12]
    assert np.array_equal(reader.load_episode(2)[CAM], LeRobotDatasetReader.open(tmp_path).load_episode(2)[CAM])


def test_a_collect_run_directory_is_read_as_its_dataset(tmp_path, episodes):
    write_dataset(tmp_path / "collect" / "dataset", episodes[:1], "image")
    assert LeRobotDatasetReader.open(tmp_path / "collect").root == tmp_path / "collect" / "dataset"


def test_a_wrong_root_names_the_datasets_nearby(tmp_path, episodes):
    write_dataset(tmp_path / "runs" / "collect-easy" / "dataset", episodes[:1], "image")
    (tmp_path / "runs" / "pretrain").mkdir()
    for wrong in (tmp_path / "runs", tmp_path / "runs" / "pretrain", tmp_path / "runs" / "collect"):
        with pytest.raises(DatasetFormatError) as err:
            LeRobotDatasetReader.open(wrong)
        assert f"found a dataset at {tmp_path / 'runs' / 'collect-easy' / 'dataset'}" in str(err.value)
