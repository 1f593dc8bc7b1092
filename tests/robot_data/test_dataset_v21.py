"""A hand-built LeRobot v2.1 dataset (one parquet and one mp4 per episode, JSON-lines metadata) reads."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from robot_data_helpers import CAM, make_episode, make_features

from vlm2vla.robot_data import stats as stats_lib
from vlm2vla.robot_data.format import normalize_features
from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset
from vlm2vla.robot_data.video import encode_video


def build_v21(root, lengths=(12, 9)):
    features = normalize_features(make_features("video"))
    info = {
        "codebase_version": "v2.1", "robot_type": "toy", "total_episodes": len(lengths),
        "total_frames": sum(lengths), "total_tasks": 2, "total_videos": len(lengths), "total_chunks": 1,
        "chunks_size": 1000, "fps": 10, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text('{"task_index": 1, "task": "place"}\n{"task_index": 0, "task": "pick"}\n')
    episodes, start, ep_lines, stat_lines = [], 0, [], []
    for e, n in enumerate(lengths):
        ep = make_episode(n, e)
        episodes.append(ep)
        table = pa.table({
            # Older writers stored vectors as variable-length lists: the reader accepts both.
            "observation.state": pa.array(ep["observation.state"].tolist(), pa.list_(pa.float32())),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(ep["action"].ravel()), 3),
            "timestamp": pa.array(np.arange(n, dtype=np.float32) / 10),
            "frame_index": pa.array(np.arange(n)),
            "episode_index": pa.array(np.full(n, e)),
            "index": pa.array(np.arange(start, start + n)),
            "task_index": pa.array(np.full(n, e % 2)),
        })
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / f"data/chunk-000/episode_{e:06d}.parquet")
        (root / f"videos/chunk-000/{CAM}").mkdir(parents=True, exist_ok=True)
        encode_video(ep[CAM], root / f"videos/chunk-000/{CAM}/episode_{e:06d}.mp4", fps=10)
        ep_lines.append(json.dumps({"episode_index": e, "tasks": [["pick", "place"][e % 2]], "length": n}))
        st = stats_lib.episode_stats({"action": ep["action"]}, features)
        stat_lines.append(json.dumps({"episode_index": e, "stats": stats_lib.stats_to_json(st)}))
        start += n
    (root / "meta/episodes.jsonl").write_text("\n".join(ep_lines) + "\n")
    (root / "meta/episodes_stats.jsonl").write_text("\n".join(stat_lines) + "\n")
    return episodes


def test_v21_reads(tmp_path):
    episodes = build_v21(tmp_path)
    reader = LeRobotDatasetReader.open(tmp_path)
    assert reader.version == "v2.1" and reader.num_episodes == 2 and reader.num_frames == 21
    assert reader.tasks == ["pick", "place"]
    got = reader.load_episode(1)
    np.testing.assert_array_equal(got["observation.state"], episodes[1]["observation.state"])
    np.testing.assert_array_equal(got["action"], episodes[1]["action"])
    assert np.abs(got[CAM].astype(int) - episodes[1][CAM]).mean() < 4.0
    assert got["task"] == "place"
    raw = np.concatenate([ep["action"] for ep in episodes]).astype(np.float64)
    np.testing.assert_allclose(reader.stats["action"]["mean"], raw.mean(0), rtol=1e-6)

    ds = RobotEpisodeDataset(reader, action_chunk=3)
    item = ds[20]  # last frame of episode 1
    assert item["action_is_pad"].tolist() == [False, True, True]
    assert int(item["index"]) == 20 and item[CAM].shape == (3, 32, 32)
