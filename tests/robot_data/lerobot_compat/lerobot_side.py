"""The LeRobot half of the compatibility check; runs in a venv where `lerobot` imports.

    python lerobot_side.py read  <dataset_root> <out.npz> <action_chunk>
        Load a dataset with lerobot.datasets.lerobot_dataset.LeRobotDataset (offline, pyav
        video backend, delta_timestamps for the action chunk) and dump every item.
    python lerobot_side.py write <dataset_root> <episodes.npz> <image|video>
        Write the episodes in episodes.npz with LeRobotDataset.create + add_frame +
        save_episode + finalize.
    python lerobot_side.py append <dataset_root> <episodes.npz>
        Re-open an existing dataset with LeRobotDataset and append the episodes.

Deliberately independent of vlm2vla: only numpy, torch and lerobot.
"""

import json
import sys
from pathlib import Path

import numpy as np


def read(root: str, out: str, chunk: int) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    meta_fps = json.loads((Path(root) / "meta/info.json").read_text())["fps"]
    ds = LeRobotDataset(repo_id="local/vlm2vla-check", root=root, video_backend="pyav",
                        delta_timestamps={"action": [k / meta_fps for k in range(chunk)]})
    items = [ds[i] for i in range(len(ds))]
    dump = {"num_episodes": np.array(ds.num_episodes), "len": np.array(len(ds)),
            "task": np.array([it["task"] for it in items])}
    for key in items[0]:
        if key != "task":
            dump[key] = np.stack([it[key].numpy() for it in items])
    dump["stats_keys"] = np.array(sorted(ds.meta.stats))
    np.savez(out, **dump)
    print(f"lerobot read {len(ds)} frames, {ds.num_episodes} episodes from {root}")


def _features(episodes: dict, image_dtype: str) -> dict:
    h, w = episodes["ep0/observation.images.cam"].shape[1:3]
    return {
        "observation.images.cam": {"dtype": image_dtype, "shape": (h, w, 3),
                                   "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (4,), "names": ["x", "y", "z", "gripper"]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["dx", "dy", "dz"]},
    }


def _add_episodes(ds, episodes: dict) -> None:
    n = int(episodes["num_episodes"])
    for e in range(n):
        task = str(episodes[f"ep{e}/task"])
        for t in range(len(episodes[f"ep{e}/action"])):
            ds.add_frame({k: episodes[f"ep{e}/{k}"][t] for k in ("observation.images.cam", "observation.state",
                                                                  "action")} | {"task": task})
        ds.save_episode()


def write(root: str, episodes_path: str, image_dtype: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    episodes = dict(np.load(episodes_path))
    ds = LeRobotDataset.create(repo_id="local/vlm2vla-check", fps=10, features=_features(episodes, image_dtype),
                               root=root, robot_type="toy", use_videos=image_dtype == "video",
                               image_writer_threads=0)
    _add_episodes(ds, episodes)
    ds.finalize()
    print(f"lerobot wrote {ds.meta.total_episodes} episodes, {ds.meta.total_frames} frames to {root}")


def append(root: str, episodes_path: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    episodes = dict(np.load(episodes_path))
    ds = LeRobotDataset(repo_id="local/vlm2vla-check", root=root, video_backend="pyav")
    _add_episodes(ds, episodes)
    ds.finalize()
    print(f"lerobot appended; now {ds.meta.total_episodes} episodes, {ds.meta.total_frames} frames")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "read":
        read(args[0], args[1], int(args[2]))
    elif command == "write":
        write(*args)
    elif command == "append":
        append(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")
