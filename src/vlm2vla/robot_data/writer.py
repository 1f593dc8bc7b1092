"""Write LeRobotDataset v3.0 datasets episode by episode, crash-safely.

    features = {
        "observation.images.corner2": {"dtype": "video", "shape": [128, 128, 3],
                                       "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "grip"]},
        "action": {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "grip"]},
    }
    with LeRobotDatasetWriter.create(root, fps=10, features=features) as writer:
        writer.add_episode({"observation.images.corner2": imgs, ...}, task="open the drawer")
    # later, to append more episodes (e.g. resumed collection):
    writer = LeRobotDatasetWriter.open(root)

Crash safety
------------
A process killed at any moment leaves a dataset that opens and reads and holds every episode
whose add_episode returned. Every file is replaced atomically (temp file + os.replace), in
this order:

    1. data parquet, video mp4s   (new episode appended at the end of the current files)
    2. meta/episodes parquet      (new row appended)
    3. meta/tasks.parquet, meta/stats.json
    4. meta/info.json             <- commit point: total_episodes / total_frames

Readers (ours and LeRobot's) trust info.json's totals, so an interrupted episode is invisible:
its rows sit after every committed row and its video frames after every committed
to_timestamp. LeRobotDatasetWriter.open() then removes those leftovers before appending.

Why rewrite the current file instead of appending in place: parquet and mp4 cannot be
appended to atomically (both keep an index at the end). Rewriting costs O(current file) per
episode: the data file's tables stay in memory (nothing is re-read or re-encoded) and video
packets are re-muxed, not re-encoded. With 128x128 AV1 frames LeRobot's 200 MB video limit
would mean ~10^6 frames per file and a quadratic total cost, so the writer also starts a new
data/video file after `max_frames_per_file` frames (default 20,000: at most ~0.1 s per commit
on a 2-core CPU). Readers do not care how episodes are spread over files; LeRobot's own
writer starts a new file on every resume.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from vlm2vla.fileio import atomic_write_json
from vlm2vla.robot_data import stats as stats_lib
from vlm2vla.robot_data.files import (
    read_json,
    read_parquet,
    remove_temp_files,
    scratch_path,
    write_parquet_atomic,
)
from vlm2vla.robot_data.format import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    EPISODES_PATH,
    INFO_PATH,
    METADATA_PREFIX,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    DatasetFormatError,
    DatasetMetadata,
    arrow_type,
    chunk_file_path,
    data_schema,
    next_chunk_file,
    normalize_features,
    user_features,
    video_keys,
)
from vlm2vla.robot_data.video import DEFAULT_VCODEC, concat_videos, encode_video, video_duration_s, video_info

logger = logging.getLogger(__name__)

MB = 1024**2
DEFAULT_MAX_FRAMES_PER_FILE = 20_000
_CHUNK_FILE_RE = re.compile(r"chunk-(\d+)/file-(\d+)\.(parquet|mp4)$")


class LeRobotDatasetWriter(DatasetMetadata):
    """Appends episodes to a LeRobotDataset v3.0 folder. Build with `create` or `open`.

    Args:
        root: dataset folder.
        info: the committed meta/info.json content.
        tasks: task strings in task_index order.
        episodes: committed episode rows (meta/episodes columns), in episode order.
        vcodec: video encoder for new episodes.
        fsync: also flush files to disk before each replace (power-loss safety).
        max_frames_per_file: start a new data/video file after this many frames (see above).
    """

    def __init__(self, root: Path, info: dict, tasks: list[str], episodes: list[dict],
                 vcodec: str = DEFAULT_VCODEC, fsync: bool = False,
                 max_frames_per_file: int = DEFAULT_MAX_FRAMES_PER_FILE) -> None:
        super().__init__(root, info, tasks)
        self.vcodec = vcodec
        self.fsync = fsync
        self.max_frames_per_file = max_frames_per_file
        self._lock_fd: int | None = None
        self._last: dict | None = episodes[-1] if episodes else None
        stats = [stats_lib.unflatten_stats(row) for row in episodes]
        self._stats = stats_lib.aggregate_stats(stats) if stats else {}
        # Rows of the current meta/episodes file; tables (one per episode) of the current data file.
        self._meta_table: pa.Table | None = None
        self._data_tables: list[pa.Table] = []
        # Per video key: True when the next episode must start a new file (set by open()).
        self._video_new_file: dict[str, bool] = {k: False for k in self.video_keys}
        self._closed = False
        self._acquire_lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, root: str | Path, fps: int, features: dict[str, dict], robot_type: str | None = None,
               use_videos: bool = True, chunks_size: int | None = None,
               data_files_size_in_mb: int | None = None, video_files_size_in_mb: int | None = None,
               vcodec: str = DEFAULT_VCODEC, fsync: bool = False,
               max_frames_per_file: int = DEFAULT_MAX_FRAMES_PER_FILE) -> LeRobotDatasetWriter:
        """Start a new, empty dataset.

        Args:
            root: dataset folder; must not exist or be empty.
            fps: frames per second.
            features: LeRobot feature specs of the caller's columns (see module docstring).
            robot_type: free text stored in info.json.
            use_videos: store "video" features as mp4 (else as PNG "image" columns).
            chunks_size, data_files_size_in_mb, video_files_size_in_mb: LeRobot's file limits.
            vcodec: video encoder (libsvtav1 like LeRobot; libx264 is faster to encode).
            fsync: flush to disk before each atomic replace.
            max_frames_per_file: start a new data/video file after this many frames.

        Returns:
            The writer.
        """
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} exists and is not empty; use LeRobotDatasetWriter.open to append")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        features = normalize_features(features, use_videos)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size or DEFAULT_CHUNK_SIZE,
            "data_files_size_in_mb": data_files_size_in_mb or DEFAULT_DATA_FILE_SIZE_IN_MB,
            "video_files_size_in_mb": video_files_size_in_mb or DEFAULT_VIDEO_FILE_SIZE_IN_MB,
            "fps": int(fps),
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if video_keys(features) else None,
            "features": features,
        }
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / INFO_PATH, info, indent=4, fsync=fsync)
        return cls(root, info, [], [], vcodec=vcodec, fsync=fsync, max_frames_per_file=max_frames_per_file)

    @classmethod
    def open(cls, root: str | Path, vcodec: str = DEFAULT_VCODEC, fsync: bool = False,
             max_frames_per_file: int = DEFAULT_MAX_FRAMES_PER_FILE) -> LeRobotDatasetWriter:
        """Re-open an existing v3.0 dataset to append episodes, first undoing any interrupted write.

        Args:
            root: dataset folder.
            vcodec: video encoder for new episodes.
            fsync: flush to disk before each atomic replace.
            max_frames_per_file: start a new data/video file after this many frames.

        Returns:
            The writer, positioned after the last committed episode.

        Raises:
            DatasetFormatError: not a v3.0 dataset, or its metadata is inconsistent.
        """
        from vlm2vla.robot_data.reader import load_episode_rows, load_tasks

        root = Path(root)
        info = read_json(root / INFO_PATH)
        if info.get("codebase_version") != CODEBASE_VERSION:
            raise DatasetFormatError(
                root / INFO_PATH, f"codebase_version {info.get('codebase_version')!r} cannot be appended to",
                f"only {CODEBASE_VERSION} datasets can be re-opened for writing; convert it with LeRobot's "
                "convert_dataset_v21_to_v30 or write a new dataset")
        n = int(info["total_episodes"])
        episodes = load_episode_rows(root, n, keep_stats=True)
        tasks = load_tasks(root, info)[: int(info["total_tasks"])]
        writer = cls(root, info, tasks, episodes, vcodec=vcodec, fsync=fsync,
                     max_frames_per_file=max_frames_per_file)
        writer._recover(episodes)
        return writer

    # ------------------------------------------------------------------ properties (see DatasetMetadata)
    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return int(self.info["total_episodes"])

    @property
    def num_frames(self) -> int:
        """Committed frames."""
        return int(self.info["total_frames"])

    # ------------------------------------------------------------------ public API
    def add_episode(self, frames: dict[str, np.ndarray], task: str, metadata: dict[str, str] | None = None) -> int:
        """Append one episode and commit it.

        Args:
            frames: {feature key: array with leading time dim T} for every user feature;
                images [T, H, W, 3] uint8, vectors [T, D] (or [T] when D == 1).
            task: the instruction, in natural language.
            metadata: strings describing the episode (e.g. the grounded suite's family, named
                target and split), stored as ``metadata/<key>`` columns of meta/episodes; LeRobot
                keeps extra episode columns as they are.

        Returns:
            The new episode's episode_index. When this returns, the episode is on disk and
            survives any later crash.
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        length, columns = self._check_frames(frames)
        episode_index = self.num_episodes
        start = self.num_frames
        task_index, is_new_task = self._task_index(task)
        columns["timestamp"] = (np.arange(length) / self.fps).astype(np.float32)
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["episode_index"] = np.full(length, episode_index, dtype=np.int64)
        columns["index"] = np.arange(start, start + length, dtype=np.int64)
        columns["task_index"] = np.full(length, task_index, dtype=np.int64)
        ep_stats = stats_lib.episode_stats(columns, self.features)

        row: dict[str, Any] = {"episode_index": episode_index, "tasks": [task], "length": length}
        for key, value in (metadata or {}).items():
            if not isinstance(value, str):
                raise TypeError(f"episode metadata {key!r} must be a string, got {type(value).__name__}")
            row[f"{METADATA_PREFIX}{key}"] = value
        row.update(self._write_data(columns, start, length))
        for key in self.video_keys:
            row.update(self._write_video(key, columns[key]))
        row.update(stats_lib.flatten_stats(ep_stats))
        self._write_episode_row(row)

        self._commit(row, self.tasks + [task] if is_new_task else self.tasks, ep_stats)
        return episode_index

    def _commit(self, row: dict, tasks: list[str], ep_stats: dict) -> None:
        """Write tasks and stats, then info.json: the episode exists once info.json is replaced."""
        if len(tasks) != len(self.tasks):
            self._write_tasks(tasks)
        new_stats = stats_lib.aggregate_stats([self._stats, ep_stats]) if self._stats else ep_stats
        atomic_write_json(self.root / STATS_PATH, stats_lib.stats_to_json(new_stats), indent=4, fsync=self.fsync)
        info = {**self.info, "features": dict(self.info["features"])}
        info["total_episodes"] = row["episode_index"] + 1
        info["total_frames"] = row["dataset_to_index"]
        info["total_tasks"] = len(tasks)
        info["splits"] = {"train": f"0:{row['episode_index'] + 1}"}
        if any("info" not in self.features[k] for k in self.video_keys):
            self._add_video_info(info, row)
        atomic_write_json(self.root / INFO_PATH, info, indent=4, fsync=self.fsync)  # commit point
        self.info, self.tasks, self._stats, self._last = info, tasks, new_stats, row

    def close(self) -> None:
        """Release the dataset. Every returned add_episode is already on disk."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._closed = True

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            self.close()

    # ------------------------------------------------------------------ checks
    def _acquire_lock(self) -> None:
        """Hold an advisory lock on the root folder so two writers cannot interleave."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise RuntimeError(f"{self.root} is already open in another LeRobotDatasetWriter") from err
        self._lock_fd = fd

    def _check_frames(self, frames: dict[str, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
        """Validate keys, lengths, shapes and dtypes; return (T, columns cast to feature dtypes)."""
        expected = user_features(self.features)
        missing, extra = set(expected) - set(frames), set(frames) - set(expected)
        if missing or extra:
            raise ValueError(f"episode keys do not match the features: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        lengths = {k: len(v) for k, v in frames.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"all features need the same, non-zero number of frames, got {lengths}")
        length = next(iter(lengths.values()))
        columns = {}
        for key, ft in expected.items():
            value = np.asarray(frames[key]) if ft["dtype"] != "string" else list(frames[key])
            if ft["dtype"] in ("image", "video"):
                if value.shape[1:] != tuple(ft["shape"]) or value.dtype != np.uint8:
                    raise ValueError(f"{key}: expected [T, {', '.join(map(str, ft['shape']))}] uint8, "
                                     f"got {list(value.shape)} {value.dtype}")
            elif ft["dtype"] != "string":
                dim = int(ft["shape"][0])
                if value.shape not in ((length, dim),) and not (dim == 1 and value.shape == (length,)):
                    raise ValueError(f"{key}: expected shape [T, {dim}], got {list(value.shape)}")
                value = value.reshape(length, dim).astype(ft["dtype"], copy=False)
            columns[key] = value
        return length, columns

    def _task_index(self, task: str) -> tuple[int, bool]:
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        if task in self.tasks:
            return self.tasks.index(task), False
        return len(self.tasks), True

    # ------------------------------------------------------------------ data files
    def _episode_table(self, columns: dict[str, Any], length: int) -> pa.Table:
        """Arrow table of one episode in the HF `datasets` layout."""
        schema = data_schema(self.features)
        arrays = []
        for field in schema:
            ft, value = self.features[field.name], columns[field.name]
            if ft["dtype"] == "image":
                arrays.append(pa.StructArray.from_arrays(
                    [pa.array([_png_bytes(img) for img in value], pa.binary()), pa.nulls(length, pa.string())],
                    fields=list(field.type)))
            elif isinstance(field.type, pa.FixedSizeListType):
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), type=field.type))
            else:
                arrays.append(pa.array(value.reshape(-1) if ft["dtype"] != "string" else value,
                                       type=arrow_type(ft)))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _write_data(self, columns: dict[str, Any], start: int, length: int) -> dict[str, int]:
        """Append the episode's rows to the current data file (or start the next one)."""
        table = self._episode_table(columns, length)
        chunk, file = self._data_file()
        path = self.root / chunk_file_path(DATA_PATH, chunk, file)
        if self._data_tables:
            # The file on disk holds exactly these tables (it is rewritten whole for every episode). Its size,
            # not the in-memory one, is what the limit bounds: with PNG columns the file measured ~25%
            # larger than the Arrow tables' nbytes.
            size = path.stat().st_size
            frames = sum(len(t) for t in self._data_tables)
            # LeRobot's rule (size after adding this episode, estimated per frame) plus our frame cap.
            if ((size + size / frames * length) / MB >= self.info["data_files_size_in_mb"]
                    or frames + length > self.max_frames_per_file):
                chunk, file = next_chunk_file(chunk, file, self.info["chunks_size"])
                path = self.root / chunk_file_path(DATA_PATH, chunk, file)
                self._data_tables = []
        write_parquet_atomic(self._data_tables + [table], path, self.fsync)
        self._data_tables.append(table)
        return {"data/chunk_index": chunk, "data/file_index": file,
                "dataset_from_index": start, "dataset_to_index": start + length}

    def _data_file(self) -> tuple[int, int]:
        if self._last is None:
            return 0, 0
        return int(self._last["data/chunk_index"]), int(self._last["data/file_index"])

    # ------------------------------------------------------------------ videos
    def _write_video(self, key: str, frames: np.ndarray) -> dict[str, Any]:
        """Encode the episode and append it to the key's current mp4 (or start the next one)."""
        prefix = f"videos/{key}/"
        with scratch_path(self.root / "videos" / key, ".mp4") as ep_path:
            encode_video(frames, ep_path, self.fps, vcodec=self.vcodec)
            duration = video_duration_s(ep_path)
            if self._last is None or f"{prefix}chunk_index" not in self._last:
                chunk, file, append = 0, 0, False
            else:
                chunk, file = int(self._last[f"{prefix}chunk_index"]), int(self._last[f"{prefix}file_index"])
                current = self.root / chunk_file_path(VIDEO_PATH, chunk, file, video_key=key)
                size_mb = (current.stat().st_size + ep_path.stat().st_size) / MB
                file_frames = round(float(self._last[f"{prefix}to_timestamp"]) * self.fps) + len(frames)
                append = (not self._video_new_file[key] and size_mb < self.info["video_files_size_in_mb"]
                          and file_frames <= self.max_frames_per_file)
                if not append:
                    chunk, file = next_chunk_file(chunk, file, self.info["chunks_size"])
            target = self.root / chunk_file_path(VIDEO_PATH, chunk, file, video_key=key)
            if append:
                start = concat_videos([target, ep_path], target)[1]
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(ep_path, target)
                start = 0.0
        self._video_new_file[key] = False
        return {f"{prefix}chunk_index": chunk, f"{prefix}file_index": file,
                f"{prefix}from_timestamp": start, f"{prefix}to_timestamp": start + duration}

    def _add_video_info(self, info: dict, row: dict) -> None:
        """Record codec, size and pix_fmt of each video feature in info.json (LeRobot's "info")."""
        for key in video_keys(info["features"]):
            chunk, file = row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
            path = self.root / chunk_file_path(VIDEO_PATH, chunk, file, video_key=key)
            info["features"][key] = {**info["features"][key], "info": video_info(path)}

    # ------------------------------------------------------------------ metadata
    def _write_episode_row(self, row: dict) -> None:
        """Append the row to the current meta/episodes file (rolling over at the data size limit)."""
        if self._last is None:
            chunk, file = 0, 0
        else:
            chunk, file = int(self._last["meta/episodes/chunk_index"]), int(self._last["meta/episodes/file_index"])
            path = self.root / chunk_file_path(EPISODES_PATH, chunk, file)
            if path.exists() and path.stat().st_size / MB >= self.info["data_files_size_in_mb"]:
                chunk, file = next_chunk_file(chunk, file, self.info["chunks_size"])
                self._meta_table = None
        row["meta/episodes/chunk_index"] = chunk
        row["meta/episodes/file_index"] = file
        # Append one Arrow row instead of rebuilding from Python rows; combine the chunks, or
        # the parquet writer pays per chunk and per column (~100 stats columns).
        new_row = pa.Table.from_pylist([row])
        table = new_row if self._meta_table is None else pa.concat_tables(
            [self._meta_table, new_row], promote_options="permissive").combine_chunks()
        write_parquet_atomic([table], self.root / chunk_file_path(EPISODES_PATH, chunk, file), self.fsync)
        self._meta_table = table

    def _write_tasks(self, tasks: list[str]) -> None:
        """meta/tasks.parquet as pandas writes a frame indexed by task: columns task_index, task."""
        write_parquet_atomic([tasks_table(tasks)], self.root / TASKS_PATH, self.fsync)

    # ------------------------------------------------------------------ recovery
    def _recover(self, episodes: list[dict]) -> None:
        """Remove what an interrupted add_episode left behind; load the current files' state.

        On a cleanly closed dataset this only reads: nothing is rewritten.
        """
        remove_temp_files(self.root)
        last = episodes[-1] if episodes else None
        dirty = self._recover_episode_rows(episodes, last)
        self._recover_data(last)
        for key in self.video_keys:
            self._recover_video(key, last)
        tasks_on_disk = _num_rows(self.root / TASKS_PATH)
        if tasks_on_disk != len(self.tasks):
            if self.tasks:
                self._write_tasks(self.tasks)
            else:
                _unlink(self.root / TASKS_PATH)
        if dirty:  # stats.json may already count the interrupted episode: rebuild it
            if self._stats:
                atomic_write_json(self.root / STATS_PATH, stats_lib.stats_to_json(self._stats), indent=4,
                                  fsync=self.fsync)
            else:
                _unlink(self.root / STATS_PATH)

    def _recover_episode_rows(self, episodes: list[dict], last: dict | None) -> bool:
        """Keep the committed rows of the last meta/episodes file; return True if any were dropped."""
        keep = (last["meta/episodes/chunk_index"], last["meta/episodes/file_index"]) if last else None
        dirty = _remove_files_after(self.root / "meta/episodes", keep)
        if last:
            path = self.root / chunk_file_path(EPISODES_PATH, *keep)
            table = read_parquet(path)
            committed = table.filter(pc.less(table["episode_index"], len(episodes)))
            self._meta_table = committed
            if len(committed) != len(table):
                write_parquet_atomic([committed], path, self.fsync)
                dirty = True
        return dirty

    def _recover_data(self, last: dict | None) -> None:
        """Keep the committed rows (index < total_frames) of the last data file, drop later files."""
        keep = (last["data/chunk_index"], last["data/file_index"]) if last else None
        _remove_files_after(self.root / "data", keep)
        if last:
            path = self.root / chunk_file_path(DATA_PATH, *keep)
            table = read_parquet(path)
            committed = table.filter(pc.less(table["index"], self.num_frames))
            self._data_tables = _split_by_episode(committed.replace_schema_metadata(table.schema.metadata))
            if len(committed) != len(table):
                write_parquet_atomic(self._data_tables, path, self.fsync)

    def _recover_video(self, key: str, last: dict | None) -> None:
        """Drop video files after the last committed one; never append after an uncommitted tail."""
        prefix = f"videos/{key}/"
        keep = (last[f"{prefix}chunk_index"], last[f"{prefix}file_index"]) if last else None
        _remove_files_after(self.root / "videos" / key, keep)
        if last:
            path = self.root / chunk_file_path(VIDEO_PATH, *keep, video_key=key)
            tail = video_duration_s(path) - float(last[f"{prefix}to_timestamp"])
            # Frames of an interrupted episode after the committed ones are harmless to readers
            # (they seek by timestamp) but would shift the next episode: start a new file instead.
            self._video_new_file[key] = tail > 0.5 / self.fps


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet content, byte-compatible with `pandas.DataFrame.to_parquet`.

    LeRobot writes a DataFrame with column task_index indexed by the task string (index name
    "task"); pandas stores the index as a last column plus "pandas" schema metadata, which we
    reproduce so that pandas.read_parquet restores the index.

    Args:
        tasks: task strings in task_index order.

    Returns:
        The table.
    """
    import json

    meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(meta).encode()})
    return pa.Table.from_arrays([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())],
                                schema=schema)


def _png_bytes(image: np.ndarray) -> bytes:
    # compress_level=1 as LeRobot's image writer: PNG stays lossless, encoding is ~5x faster.
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _split_by_episode(table: pa.Table) -> list[pa.Table]:
    """One table per episode (rows are contiguous per episode)."""
    episode = table["episode_index"].to_numpy()
    cuts = np.flatnonzero(np.diff(episode)) + 1
    bounds = [0, *cuts.tolist(), len(episode)]
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _unlink(path: Path) -> None:
    if path.exists():
        path.unlink()


def _num_rows(path: Path) -> int:
    """Rows in a parquet file (0 when it does not exist)."""
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _remove_files_after(folder: Path, keep: tuple[int, int] | None) -> bool:
    """Delete chunk-XXX/file-YYY files after `keep` (all when keep is None); True if any were."""
    removed = False
    if not folder.exists():
        return removed
    for path in folder.rglob("file-*"):
        match = _CHUNK_FILE_RE.search(path.as_posix())
        if match and (keep is None or (int(match[1]), int(match[2])) > tuple(keep)):
            logger.info("removing %s, left by an interrupted write", path)
            path.unlink()
            removed = True
    return removed
