"""RobotEpisodeDataset: LeRobot-named items, action chunks padded at episode ends."""

import numpy as np
import torch
from robot_data_helpers import CAM, LENGTHS, TASKS, write_dataset

from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset


def test_item_keys_shapes_and_values(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "image")
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path), action_chunk=4)
    assert len(ds) == sum(LENGTHS)
    item = ds[12]  # episode 1, frame 2
    assert item[CAM].shape == (3, 32, 32) and item[CAM].dtype == torch.float32
    assert 0.0 <= item[CAM].min() and item[CAM].max() <= 1.0
    np.testing.assert_allclose(item[CAM].permute(1, 2, 0).numpy() * 255, episodes[1][CAM][2], atol=1e-3)
    np.testing.assert_array_equal(item["observation.state"].numpy(), episodes[1]["observation.state"][2])
    np.testing.assert_array_equal(item["action"].numpy(), episodes[1]["action"][2:6])
    assert item["task"] == TASKS[1] and int(item["task_index"]) == 1
    assert (int(item["episode_index"]), int(item["frame_index"]), int(item["index"])) == (1, 2, 12)
    assert float(item["timestamp"]) == np.float32(0.2)


def test_chunk_padding_repeats_last_action(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "image")
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path), action_chunk=5)
    last = LENGTHS[0] - 2  # two real actions left in episode 0, then three padded
    item = ds[last]
    assert item["action_is_pad"].tolist() == [False, False, True, True, True]
    expected = episodes[0]["action"][[last, last + 1, last + 1, last + 1, last + 1]]
    np.testing.assert_array_equal(item["action"].numpy(), expected)
    # The next frame belongs to episode 1: no padding, no leakage across the boundary.
    nxt = ds[LENGTHS[0]]
    assert not nxt["action_is_pad"].any()
    np.testing.assert_array_equal(nxt["action"].numpy(), episodes[1]["action"][:5])


def test_episode_selection_and_video_decoding(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "video")
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path), action_chunk=1, episodes=[2])
    assert len(ds) == LENGTHS[2]
    item = ds[5]
    assert int(item["episode_index"]) == 2 and int(item["index"]) == LENGTHS[0] + LENGTHS[1] + 5
    assert item["action"].shape == (1, 3)
    decoded = item[CAM].permute(1, 2, 0).numpy() * 255
    assert np.abs(decoded - episodes[2][CAM][5]).mean() < 4.0


def test_dataloader_batches(tmp_path, episodes):
    write_dataset(tmp_path, episodes, "video")
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path), action_chunk=3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0))))
    assert batch[CAM].shape == (8, 3, 32, 32) and batch["action"].shape == (8, 3, 3)
    assert batch["action_is_pad"].shape == (8, 3) and len(batch["task"]) == 8


def test_dataset_pickles_after_use(tmp_path, episodes):
    """DataLoader workers started with spawn receive a pickled dataset: open files must not travel."""
    import pickle

    write_dataset(tmp_path, episodes, "video")
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(tmp_path), action_chunk=2)
    first = ds[3]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3][CAM].numpy(), first[CAM].numpy())
