"""LeRobotDataset on-disk format: versions, path templates, feature specs and the format error.

The layout follows LeRobot's published v3.0 format (and v2.1 for reading):

    root/
      meta/info.json                                  fps, features, totals, path templates
      meta/stats.json                                 aggregated stats per feature
      meta/tasks.parquet                              task (index) -> task_index
      meta/episodes/chunk-000/file-000.parquet        one row per episode
      data/chunk-000/file-000.parquet                 one row per frame, many episodes per file
      videos/<video_key>/chunk-000/file-000.mp4       many episodes concatenated per file

A feature spec is LeRobot's info.json entry: {"dtype": ..., "shape": [...], "names": [...]}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

CODEBASE_VERSION = "v3.0"
LEGACY_VERSION = "v2.1"
SUPPORTED_VERSIONS = (LEGACY_VERSION, CODEBASE_VERSION)

# LeRobot's defaults: at most 1000 files per chunk folder, files roll over at these sizes.
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
# Prefix of the per-episode description columns in meta/episodes (writer.add_episode(metadata=...)).
METADATA_PREFIX = "metadata/"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"

# v2.1: one parquet and one mp4 per episode, metadata as JSON lines.
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
LEGACY_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
LEGACY_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

# Columns the writer adds to every frame; LeRobot appends them after the user features.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

VISUAL_DTYPES = ("image", "video")
NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64")


class DatasetFormatError(ValueError):
    """A dataset file is missing, unreadable or not in a supported format.

    The message names the file, what is wrong and what to do about it.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        message = f"{path}: {problem}"
        if fix:
            message += f" -> {fix}"
        super().__init__(message)


class EpisodeReadError(DatasetFormatError):
    """One episode's frames cannot be read (a corrupt or truncated video or image); others may be fine.

    Callers that can do without the episode (policy training) catch this, skip the episode and count it.
    """

    def __init__(self, path: str | Path, episode: int, problem: str, fix: str = "") -> None:
        self.episode = episode
        super().__init__(path, problem, fix)


def chunk_file_path(template: str, chunk_index: int, file_index: int, **keys: Any) -> str:
    """Fill a chunk/file path template.

    Args:
        template: e.g. DATA_PATH or VIDEO_PATH.
        chunk_index: chunk folder number.
        file_index: file number inside the chunk.
        **keys: other template keys such as video_key.

    Returns:
        The relative path.
    """
    return template.format(chunk_index=chunk_index, file_index=file_index, **keys)


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """Return the (chunk, file) pair after the given one; a chunk holds `chunks_size` files.

    Args:
        chunk_index: current chunk.
        file_index: current file.
        chunks_size: files per chunk.

    Returns:
        The next (chunk_index, file_index).
    """
    if file_index + 1 >= chunks_size:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


def video_keys(features: dict[str, dict]) -> list[str]:
    """Keys of features stored as mp4 videos."""
    return [k for k, ft in features.items() if ft["dtype"] == "video"]


def image_keys(features: dict[str, dict]) -> list[str]:
    """Keys of features stored as PNG bytes inside the data parquet."""
    return [k for k, ft in features.items() if ft["dtype"] == "image"]


def camera_keys(features: dict[str, dict]) -> list[str]:
    """Keys of all visual features (image or video), in feature order."""
    return [k for k, ft in features.items() if ft["dtype"] in VISUAL_DTYPES]


def user_features(features: dict[str, dict]) -> dict[str, dict]:
    """Features the caller supplies (everything except the writer-added DEFAULT_FEATURES)."""
    return {k: ft for k, ft in features.items() if k not in DEFAULT_FEATURES}


def normalize_features(features: dict[str, dict], use_videos: bool = True) -> dict[str, dict]:
    """Check a features dict and return LeRobot's canonical form (lists, defaults appended).

    Args:
        features: {key: {"dtype", "shape", "names"}}; image/video shapes are (H, W, 3).
        use_videos: when False, "video" features are stored as "image" instead.

    Returns:
        A new dict with user features first, then DEFAULT_FEATURES.

    Raises:
        ValueError: a key holds "/", a dtype is unknown or a shape is not supported.
    """
    out: dict[str, dict] = {}
    for key, ft in features.items():
        if key in DEFAULT_FEATURES:
            continue  # the writer owns these columns
        if "/" in key:
            raise ValueError(f"feature name {key!r} contains '/', which LeRobot uses as a separator")
        dtype = ft.get("dtype")
        shape = [int(s) for s in ft.get("shape", ())]
        spec = {**ft, "dtype": dtype, "shape": shape, "names": ft.get("names")}
        if dtype == "video" and not use_videos:
            spec["dtype"] = "image"
        if spec["dtype"] in VISUAL_DTYPES:
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"feature {key!r}: images need shape [H, W, 3], got {shape}")
            if spec["names"] is None:
                spec["names"] = ["height", "width", "channels"]
        elif dtype in NUMERIC_DTYPES or dtype == "string":
            if len(shape) != 1:
                raise ValueError(
                    f"feature {key!r}: only 1-D shapes are supported for {dtype}, got {shape}; "
                    "flatten the array and record the layout in 'names'"
                )
        else:
            raise ValueError(f"feature {key!r}: unknown dtype {dtype!r}; use image, video, string or "
                             f"one of {NUMERIC_DTYPES}")
        out[key] = spec
    for key, ft in DEFAULT_FEATURES.items():
        out[key] = {**ft, "shape": list(ft["shape"])}
    return out


def arrow_type(feature: dict) -> pa.DataType:
    """Arrow type of a non-video feature, as the HF `datasets` library stores it in parquet.

    Args:
        feature: a feature spec.

    Returns:
        Value -> the scalar type; Sequence(length=n) -> fixed_size_list<element>[n];
        Image -> struct<bytes: binary, path: string>.
    """
    dtype = feature["dtype"]
    if dtype == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    scalar = pa.string() if dtype == "string" else pa.from_numpy_dtype(dtype)
    if list(feature["shape"]) == [1]:
        return scalar
    return pa.list_(pa.field("element", scalar), int(feature["shape"][0]))


def hf_feature_json(feature: dict) -> dict:
    """The HF `datasets` feature description stored in parquet schema metadata ("huggingface" key).

    Args:
        feature: a non-video feature spec.

    Returns:
        A JSON-able dict: {"_type": "Image"}, {"_type": "Value", ...} or {"_type": "List", ...}.
    """
    dtype = feature["dtype"]
    if dtype == "image":
        return {"_type": "Image"}
    value = {"dtype": dtype, "_type": "Value"}
    if list(feature["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(feature["shape"][0]), "_type": "List"}


def data_schema(features: dict[str, dict]) -> pa.Schema:
    """Arrow schema of a data parquet file (every non-video feature, in feature order).

    The schema carries the "huggingface" metadata the `datasets` library writes, so that
    `datasets` (and LeRobot) decode image columns as images.

    Args:
        features: the normalized features dict.

    Returns:
        The schema.
    """
    import json

    fields = [pa.field(k, arrow_type(ft)) for k, ft in features.items() if ft["dtype"] != "video"]
    hf = {k: hf_feature_json(ft) for k, ft in features.items() if ft["dtype"] != "video"}
    meta = {b"huggingface": json.dumps({"info": {"features": hf}}).encode()}
    return pa.schema(fields, metadata=meta)


class DatasetMetadata:
    """What both ends of a dataset know from its meta/ files: the root, info.json and the task list.

    LeRobotDatasetReader and LeRobotDatasetWriter are DatasetMetadata, so the feature specs, frame
    rate, version and camera keys are read the same way on both sides.
    """

    def __init__(self, root: Path, info: dict, tasks: list[str]) -> None:
        self.root = Path(root)
        self.info = info
        self.tasks = tasks

    @property
    def version(self) -> str:
        """codebase_version, "v3.0" or "v2.1"."""
        return self.info["codebase_version"]

    @property
    def features(self) -> dict[str, dict]:
        """Feature specs from info.json (the writer's index columns included)."""
        return self.info["features"]

    @property
    def fps(self) -> int:
        """Frames per second."""
        return int(self.info["fps"])

    @property
    def camera_keys(self) -> list[str]:
        """Visual features (image or video)."""
        return camera_keys(self.features)

    @property
    def video_keys(self) -> list[str]:
        """Visual features stored as mp4."""
        return video_keys(self.features)

