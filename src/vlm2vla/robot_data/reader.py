"""Read LeRobotDataset v3.0 and v2.1 folders: metadata, whole episodes, and a torch Dataset.

    reader = LeRobotDatasetReader.open("data/robot")        # v3.0 or v2.1
    reader.fps, reader.features, reader.tasks, reader.stats, reader.episodes
    episode = reader.load_episode(0)                         # {key: [T, ...] numpy}
    ds = RobotEpisodeDataset(reader, action_chunk=8)
    item = ds[0]   # observation.images.<cam> [3, H, W] float32 in [0, 1], action [8, D],
                   # action_is_pad [8], task, task_index, episode_index, frame_index, index, timestamp

Only committed episodes are visible: meta/info.json's total_episodes / total_frames are the
source of truth (see writer.py on crash safety).
"""

from __future__ import annotations

import io
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image

from vlm2vla.robot_data import stats as stats_lib
from vlm2vla.robot_data.files import read_json, read_jsonl, read_parquet
from vlm2vla.robot_data.format import (
    CODEBASE_VERSION,
    EPISODES_DIR,
    INFO_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    LEGACY_TASKS_PATH,
    LEGACY_VERSION,
    METADATA_PREFIX,
    STATS_PATH,
    SUPPORTED_VERSIONS,
    TASKS_PATH,
    VISUAL_DTYPES,
    DatasetFormatError,
    DatasetMetadata,
    EpisodeReadError,
    image_keys,
    video_keys,
)
from vlm2vla.robot_data.video import VideoDecoderCache

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- v3.0 metadata
def load_episode_rows(root: Path, num_episodes: int, keep_stats: bool = False) -> list[dict]:
    """Committed rows of meta/episodes/*/*.parquet, in episode order.

    Args:
        root: dataset root.
        num_episodes: info.json total_episodes; later rows (an interrupted write) are dropped.
        keep_stats: keep the stats/<feature>/<stat> columns.

    Returns:
        One dict per episode.

    Raises:
        DatasetFormatError: a file is unreadable or committed episodes are missing.
    """
    rows: list[dict] = []
    for path in sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet")):
        table = read_parquet(path)
        if not keep_stats:
            table = table.select([c for c in table.column_names if not c.startswith("stats/")])
        rows.extend(r for r in table.to_pylist() if r["episode_index"] < num_episodes)
    rows.sort(key=lambda r: r["episode_index"])
    found = [r["episode_index"] for r in rows]
    if found != list(range(num_episodes)):
        raise DatasetFormatError(
            root / EPISODES_DIR, f"expected episodes 0..{num_episodes - 1} (meta/info.json total_episodes), "
            f"found {len(found)} rows", "restore the meta/episodes files or fix total_episodes")
    return rows


def load_tasks(root: Path, info: dict) -> list[str]:
    """Task strings in task_index order from meta/tasks.parquet.

    The task string is the pandas index of LeRobot's file: a "task" column (named index) or
    "__index_level_0__" (unnamed index, older LeRobot versions).
    """
    path = root / TASKS_PATH
    if int(info.get("total_tasks", 0)) == 0 and not path.exists():
        return []
    table = read_parquet(path)
    names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
    if not names or "task_index" not in table.column_names:
        raise DatasetFormatError(path, f"expected columns task_index and task, found {table.column_names}",
                                 "rewrite meta/tasks.parquet with LeRobot's layout")
    order = np.argsort(table["task_index"].to_numpy())
    return [table[names[0]][int(i)].as_py() for i in order]


def check_version(info: dict, path: Path) -> str:
    """Return the dataset's codebase_version, or raise if we cannot read it."""
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise DatasetFormatError(
            path, f"unsupported codebase_version {version!r}",
            f"supported versions are {', '.join(SUPPORTED_VERSIONS)}; convert the dataset with LeRobot's "
            "conversion scripts (e.g. convert_dataset_v21_to_v30)")
    return version


# ---------------------------------------------------------------------- v2.1 metadata
def _legacy_metadata(root: Path, info: dict) -> tuple[list[str], list[dict], dict]:
    """Tasks, episode rows (in v3.0 column names) and stats of a v2.1 dataset."""
    tasks_rows = sorted(read_jsonl(root / LEGACY_TASKS_PATH), key=lambda r: r["task_index"])
    tasks = [r["task"] for r in tasks_rows]
    legacy = sorted(read_jsonl(root / LEGACY_EPISODES_PATH), key=lambda r: r["episode_index"])
    legacy = [r for r in legacy if r["episode_index"] < int(info["total_episodes"])]
    episodes, start = [], 0
    for row in legacy:
        ep, length = int(row["episode_index"]), int(row["length"])
        chunk = ep // int(info["chunks_size"])
        out = {"episode_index": ep, "tasks": row["tasks"], "length": length,
               "dataset_from_index": start, "dataset_to_index": start + length,
               "data/path": info["data_path"].format(episode_chunk=chunk, episode_index=ep)}
        for key in video_keys(info["features"]):
            out[f"videos/{key}/path"] = info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=ep)
            out[f"videos/{key}/from_timestamp"] = 0.0  # one video file per episode
            out[f"videos/{key}/to_timestamp"] = length / info["fps"]
        episodes.append(out)
        start += length
    if (root / STATS_PATH).exists():
        stats = stats_lib.stats_from_json(read_json(root / STATS_PATH))
    elif (root / LEGACY_EPISODES_STATS_PATH).exists():
        per_episode = [stats_lib.stats_from_json(r["stats"]) for r in read_jsonl(root / LEGACY_EPISODES_STATS_PATH)]
        stats = stats_lib.aggregate_stats(per_episode) if per_episode else {}
    else:
        stats = {}
    return tasks, episodes, stats


# What to do about an episode whose frames cannot be read.
BAD_EPISODE_FIX = ("restore the file from a backup or re-collect the episode; train-policy skips and counts such "
                   "episodes (up to max_bad_episodes) instead of stopping")


# ---------------------------------------------------------------------- finding the root
# The folder `vlm2vla collect` writes its dataset to, inside its run directory.
COLLECT_DATASET_DIR = "dataset"


def find_dataset_root(path: str | Path) -> Path:
    """The dataset root meant by `path`: the folder itself, or the dataset inside a collect run directory.

    Raises:
        DatasetFormatError: `path` holds no meta/info.json; the message lists datasets found nearby
            (below `path` and beside it), so a wrong root is one edit away from a right one.
    """
    root = Path(path)
    if (root / INFO_PATH).is_file():
        return root
    inner = root / COLLECT_DATASET_DIR
    if (inner / INFO_PATH).is_file():
        logger.info("Reading the dataset %s of the run directory %s", inner, root)
        return inner
    nearby = _datasets_near(root)
    if nearby:
        fix = f"found a dataset at {', '.join(str(p) for p in nearby)}: pass that folder instead"
    else:
        fix = ("pass the folder that holds meta/info.json (`vlm2vla collect` writes <run_dir>/dataset; a collect "
               "run directory works too)")
    what = "no such folder" if not root.exists() else "not a LeRobotDataset root (no meta/info.json)"
    raise DatasetFormatError(root, what, fix)


def _datasets_near(root: Path, limit: int = 5) -> list[Path]:
    """Dataset roots up to two levels below `root` and below its parent (siblings and their children)."""
    found: list[Path] = []
    for base in dict.fromkeys(p for p in (root, root.parent) if p.is_dir()):
        for pattern in (f"*/{INFO_PATH}", f"*/*/{INFO_PATH}"):
            found.extend(info.parents[1] for info in sorted(base.glob(pattern)))
    return list(dict.fromkeys(found))[:limit]


# ---------------------------------------------------------------------- reader
class LeRobotDatasetReader(DatasetMetadata):
    """Metadata and frame access for a local LeRobotDataset (v3.0 or v2.1). Build with `open`.

    Args:
        root: dataset root.
        info: meta/info.json content.
        tasks: task strings in task_index order.
        episodes: one row per episode (v3.0 meta/episodes columns without stats; v2.1 rows
            carry "data/path" and "videos/<key>/path" instead of chunk/file indices).
        stats: {feature: {stat: array}}.
    """

    def __init__(self, root: Path, info: dict, tasks: list[str], episodes: list[dict],
                 stats: dict[str, dict[str, np.ndarray]]) -> None:
        super().__init__(root, info, tasks)
        self.episodes = episodes
        self.stats = stats
        self._videos = VideoDecoderCache()

    @classmethod
    def open(cls, root: str | Path) -> LeRobotDatasetReader:
        """Read the metadata of a dataset folder.

        Raises:
            DatasetFormatError: missing/corrupt metadata or an unsupported codebase_version.
        """
        root = find_dataset_root(root)
        info = read_json(root / INFO_PATH)
        version = check_version(info, root / INFO_PATH)
        if version == LEGACY_VERSION:
            tasks, episodes, stats = _legacy_metadata(root, info)
        else:
            episodes = load_episode_rows(root, int(info["total_episodes"]))
            tasks = load_tasks(root, info)
            stats = stats_lib.stats_from_json(read_json(root / STATS_PATH)) if (root / STATS_PATH).exists() else {}
        return cls(root, info, tasks, episodes, stats)

    # ------------------------------------------------------------------ metadata (see DatasetMetadata)
    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        """Committed frames."""
        return int(self.episodes[-1]["dataset_to_index"]) if self.episodes else 0

    def episode_metadata(self, episode_index: int) -> dict[str, str]:
        """The strings the writer stored with the episode (``metadata/<key>`` columns), keyed by <key>;
        empty for datasets written without any. A key another episode has but this one lacks is absent."""
        row = self.episodes[episode_index]
        return {k.removeprefix(METADATA_PREFIX): v for k, v in row.items()
                if k.startswith(METADATA_PREFIX) and v is not None}

    def data_path(self, episode_index: int) -> Path:
        """Parquet file holding the episode's frames."""
        row = self.episodes[episode_index]
        if "data/path" in row:
            return self.root / row["data/path"]
        return self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])

    def video_path(self, episode_index: int, key: str) -> Path:
        """mp4 file holding the episode's frames of a video feature."""
        row = self.episodes[episode_index]
        if f"videos/{key}/path" in row:
            return self.root / row[f"videos/{key}/path"]
        return self.root / self.info["video_path"].format(
            video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"])

    # ------------------------------------------------------------------ frames
    def frame_columns(self, episodes: list[int] | None = None) -> dict[str, np.ndarray]:
        """Non-visual columns of the selected episodes' frames, ordered by global index.

        Image columns are not loaded (see `image_bytes`); instead "_file" and "_row" give each
        frame's data file (index into `data_files(episodes)`) and row within it.

        Args:
            episodes: episode indices; None for all.

        Returns:
            {column: [N] or [N, D] array}.
        """
        selected = list(range(self.num_episodes)) if episodes is None else sorted(set(episodes))
        files = self.data_files(selected)
        wanted = set(selected)
        parts = []
        for file_id, path in enumerate(files):
            schema = _read_schema(path)
            columns = [c for c in schema.names if self.features.get(c, {}).get("dtype") not in VISUAL_DTYPES]
            table = read_parquet(path, columns=columns)
            table = table.append_column("_row", pa.array(np.arange(len(table), dtype=np.int64)))
            table = table.append_column("_file", pa.array(np.full(len(table), file_id, dtype=np.int64)))
            mask = pc.is_in(table["episode_index"], pa.array(sorted(wanted), pa.int64()))
            parts.append(table.filter(mask))
        table = pa.concat_tables(parts, promote_options="permissive") if parts else None
        out = {name: _to_numpy(table[name]) for name in table.column_names} if table else {}
        if out:
            order = np.argsort(out["index"], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        expected = sum(int(self.episodes[e]["length"]) for e in selected)
        if len(out.get("index", [])) != expected:
            raise DatasetFormatError(files[0] if files else self.root, f"expected {expected} frames for the "
                                     f"selected episodes, found {len(out.get('index', []))}",
                                     "the data files do not match meta/episodes; restore them")
        return out

    def data_files(self, episodes: list[int]) -> list[Path]:
        """Distinct data files holding the given episodes, in order."""
        return list(dict.fromkeys(self.data_path(e) for e in episodes))

    def decode_video(self, episode_index: int, key: str, timestamps: list[float],
                     tolerance_s: float = 1e-4) -> np.ndarray:
        """Frames of a video feature at episode-relative timestamps.

        Returns:
            [N, H, W, 3] uint8.
        """
        start = float(self.episodes[episode_index][f"videos/{key}/from_timestamp"])
        path = self.video_path(episode_index, key)
        try:
            return self._videos.decode(path, [start + t for t in timestamps], tolerance_s)
        except DatasetFormatError as err:
            frames = sorted({round(t * self.fps) for t in timestamps})
            where = f"frame {frames[0]}" if len(frames) == 1 else f"frames {frames[0]}..{frames[-1]}"
            raise EpisodeReadError(path, episode_index, f"episode {episode_index}, {key}, {where}: {err.problem}",
                                   BAD_EPISODE_FIX) from err

    def load_episode(self, episode_index: int) -> dict[str, Any]:
        """Every feature of one episode as numpy arrays (images decoded to [T, H, W, 3] uint8).

        Args:
            episode_index: which episode.

        Returns:
            {key: array with leading dim T}, plus "task" (str).
        """
        cols = self.frame_columns([episode_index])
        out: dict[str, Any] = {k: v for k, v in cols.items() if not k.startswith("_")}
        path = self.data_files([episode_index])[0]
        if image_keys(self.features):
            table = read_parquet(path, columns=[*image_keys(self.features)])
            for key in image_keys(self.features):
                rows = zip(cols["_row"], cols["frame_index"], strict=True)
                out[key] = np.stack([_decode_frame_image(table[key][int(r)].as_py()["bytes"], path, episode_index,
                                                         key, int(f)) for r, f in rows])
        for key in self.video_keys:
            out[key] = self.decode_video(episode_index, key, cols["timestamp"].astype(np.float64).tolist())
        out["task"] = self.tasks[int(cols["task_index"][0])]
        return out

    def close(self) -> None:
        """Close cached video files."""
        self._videos.close()


# ---------------------------------------------------------------------- torch dataset
class RobotEpisodeDataset(torch.utils.data.Dataset):
    """Frames of a LeRobotDataset with action chunks, named as LeRobot names them.

    Each item holds, for frame i of episode e:
        observation.images.<cam>  [3, H, W] float32 in [0, 1]
        observation.state (and any other vector feature)  [D] float32
        action                    [chunk, D]: actions i .. i+chunk-1; past the episode end the
                                  last action is repeated (LeRobot's padding)
        action_is_pad             [chunk] bool, True where padded
        task (str), task_index, episode_index, frame_index, index (int64), timestamp (float32)

    Args:
        reader: an opened dataset.
        action_chunk: actions per item.
        episodes: episode indices to use; None for all.
        tolerance_s: allowed gap between a frame's timestamp and the decoded video frame.
    """

    def __init__(self, reader: LeRobotDatasetReader, action_chunk: int = 1,
                 episodes: list[int] | None = None, tolerance_s: float = 1e-4) -> None:
        if action_chunk < 1:
            raise ValueError(f"action_chunk must be >= 1, got {action_chunk}")
        self.reader = reader
        self.action_chunk = action_chunk
        self.tolerance_s = tolerance_s
        self.episodes = list(range(reader.num_episodes)) if episodes is None else sorted(set(episodes))
        self.columns = reader.frame_columns(self.episodes)
        self._files = reader.data_files(self.episodes)
        self._images = _ImageColumnCache(self._files)
        # Position of each frame's episode end within self.columns, for chunk clamping.
        ep = self.columns["episode_index"]
        ends = {e: int(np.flatnonzero(ep == e)[-1]) + 1 for e in self.episodes}
        self._episode_end = np.array([ends[e] for e in ep], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.columns["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} frames")
        cols, features = self.columns, self.reader.features
        episode = int(cols["episode_index"][i])
        item: dict[str, Any] = {}
        for key in self.reader.camera_keys:
            if features[key]["dtype"] == "video":
                image = self.reader.decode_video(episode, key, [float(cols["timestamp"][i])], self.tolerance_s)[0]
            else:
                file_id = int(cols["_file"][i])
                image = _decode_frame_image(self._images.get(file_id, int(cols["_row"][i]), key),
                                            self._files[file_id], episode, key, int(cols["frame_index"][i]))
            item[key] = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        for key, ft in features.items():
            if key in item or key in ("action", "task_index", "episode_index", "frame_index", "index",
                                      "timestamp") or ft["dtype"] == "string":
                continue
            item[key] = torch.as_tensor(cols[key][i])
        if "action" in cols:
            steps = i + np.arange(self.action_chunk)
            end = self._episode_end[i]
            item["action"] = torch.as_tensor(cols["action"][np.minimum(steps, end - 1)])
            item["action_is_pad"] = torch.as_tensor(steps >= end)
        task_index = int(cols["task_index"][i])
        item["task"] = self.reader.tasks[task_index]
        item["task_index"] = torch.tensor(task_index)
        item["episode_index"] = torch.tensor(episode)
        item["frame_index"] = torch.tensor(int(cols["frame_index"][i]))
        item["index"] = torch.tensor(int(cols["index"][i]))
        item["timestamp"] = torch.tensor(float(cols["timestamp"][i]), dtype=torch.float32)
        return item


class _ImageColumnCache:
    """PNG bytes of image columns, read one parquet row group at a time (LRU of a few groups)."""

    def __init__(self, files: list[Path], max_groups: int = 4) -> None:
        self.files = files
        self.max_groups = max_groups
        self._groups: OrderedDict[tuple[int, int], pa.Table] = OrderedDict()
        self._offsets: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"files": self.files, "max_groups": self.max_groups}  # cached tables stay behind

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["files"], state["max_groups"])

    def get(self, file_id: int, row: int, key: str) -> bytes:
        if self._pid != os.getpid():  # fresh state in DataLoader workers
            self._groups, self._offsets, self._pid = OrderedDict(), {}, os.getpid()
        path = self.files[file_id]
        if file_id not in self._offsets:
            meta = _read_metadata(path)
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            self._offsets[file_id] = np.cumsum([0, *sizes])
        offsets = self._offsets[file_id]
        group = int(np.searchsorted(offsets, row, side="right") - 1)
        cache_key = (file_id, group)
        if cache_key not in self._groups:
            try:
                self._groups[cache_key] = pq.ParquetFile(path).read_row_group(group)
            except (pa.ArrowException, OSError) as err:
                raise DatasetFormatError(path, f"unreadable row group {group} ({err})",
                                         "the file is truncated or corrupt; restore it") from err
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        self._groups.move_to_end(cache_key)
        value = self._groups[cache_key][key][row - int(offsets[group])].as_py()
        return value["bytes"]


# ---------------------------------------------------------------------- helpers
def decode_png(data: bytes) -> np.ndarray:
    """[H, W, 3] uint8 from encoded image bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"))  # a writable copy (torch warns on read-only arrays)


def _decode_frame_image(data: bytes, path: Path, episode: int, key: str, frame: int) -> np.ndarray:
    """decode_png for one frame of an image column, failing with the file, episode, camera and frame."""
    try:
        return decode_png(data)
    except OSError as err:  # PIL's UnidentifiedImageError and truncated-file errors are OSErrors
        raise EpisodeReadError(path, episode, f"episode {episode}, {key}, frame {frame}: undecodable image "
                               f"({err})", BAD_EPISODE_FIX) from err


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Numpy array of a column: scalars -> [N], (fixed size) lists -> [N, D]."""
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) \
            or pa.types.is_large_list(column.type):
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        return values.reshape(len(column), -1)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(column.to_pylist(), dtype=object)
    return column.to_numpy(zero_copy_only=False)


def _read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except FileNotFoundError as err:
        raise DatasetFormatError(path, "file not found", "check the dataset root and meta/episodes") from err
    except (pa.ArrowException, OSError) as err:
        raise DatasetFormatError(path, f"unreadable parquet ({type(err).__name__}: {err})",
                                 "the file is truncated or corrupt; restore it or re-collect its episodes") from err


def _read_metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetFormatError(path, f"unreadable parquet ({type(err).__name__}: {err})",
                                 "the file is truncated or corrupt; restore it") from err


__all__ = ["CODEBASE_VERSION", "LeRobotDatasetReader", "RobotEpisodeDataset", "decode_png", "load_episode_rows",
           "load_tasks"]
