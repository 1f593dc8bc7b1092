"""MP4 video for datasets and eval: encode frames, concatenate episode files, decode by timestamp.

Encoding uses LeRobot's defaults (libsvtav1, yuv420p, a keyframe every 2 frames, crf 30,
SVT preset 12) so random access needs at most one extra decoded frame. Concatenation remuxes
packets (no re-encode) and shifts timestamps, so several episodes share one file and episode k
starts where episode k-1 ended. Decoding seeks to the keyframe before the first requested
timestamp and returns the frames nearest to the requested times, within a tolerance.

    encode_video(frames, "ep.mp4", fps=10)          # [T, H, W, 3] uint8
    starts = concat_videos(["a.mp4", "b.mp4"], "ab.mp4")
    frames = VideoDecoderCache().decode("ab.mp4", [0.0, 0.1], tolerance_s=1e-4)
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vlm2vla.robot_data.files import write_with
from vlm2vla.robot_data.format import DatasetFormatError

logger = logging.getLogger(__name__)

DEFAULT_VCODEC = "libsvtav1"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_GOP = 2
DEFAULT_CRF = 30
DEFAULT_SVT_PRESET = 12


def codec_options(vcodec: str, g: int | None = DEFAULT_GOP, crf: int | None = DEFAULT_CRF,
                  preset: int | None = None) -> dict[str, str]:
    """FFmpeg encoder options for a software codec, as LeRobot sets them.

    Args:
        vcodec: encoder name (libsvtav1, libx264/h264, hevc/libx265).
        g: keyframe interval (GOP size).
        crf: constant rate factor (quality; lower is better).
        preset: SVT-AV1 speed preset (default 12, the fastest).

    Returns:
        Option dict for av's add_stream.
    """
    options = {}
    if g is not None:
        options["g"] = str(g)
    if crf is not None:
        options["crf"] = str(crf)
    if vcodec == "libsvtav1":
        options["preset"] = str(preset if preset is not None else DEFAULT_SVT_PRESET)
    return options


def encode_video(frames: np.ndarray, path: str | Path, fps: int, vcodec: str = DEFAULT_VCODEC,
                 pix_fmt: str = DEFAULT_PIX_FMT, g: int | None = DEFAULT_GOP,
                 crf: int | None = DEFAULT_CRF, preset: int | None = None) -> None:
    """Encode frames into an mp4 file (overwrites `path`; not atomic, write to a temp path).

    Args:
        frames: [T, H, W, 3] uint8 RGB.
        path: output .mp4.
        fps: frame rate; frame t is shown at t / fps seconds.
        vcodec, pix_fmt, g, crf, preset: encoder settings (see codec_options).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected [T, H, W, 3] uint8 frames, got {frames.shape} {frames.dtype}")
    # SVT-AV1 prints a banner on stderr for every file unless told otherwise.
    os.environ.setdefault("SVT_LOG", "1")
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(vcodec, rate=fps, options=codec_options(vcodec, g, crf, preset))
        stream.pix_fmt = pix_fmt
        stream.height, stream.width = frames.shape[1:3]
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed packets


def write_mp4(frames: np.ndarray, path: str | Path, fps: int, vcodec: str = "libx264",
              crf: int = 23) -> Path:
    """Write a viewable mp4 (e.g. an eval rollout), atomically.

    H.264 by default because every browser plays it; odd sizes are padded by one pixel
    (yuv420p needs even dimensions).

    Args:
        frames: [T, H, W, 3] uint8 RGB.
        path: output file.
        fps: frame rate.
        vcodec: encoder; "libsvtav1" gives smaller files.
        crf: quality.

    Returns:
        The path written.
    """
    frames = np.asarray(frames, dtype=np.uint8)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    g = DEFAULT_GOP if vcodec == "libsvtav1" else None  # players seek fine with x264's default GOP
    write_with(path, lambda tmp: encode_video(frames, tmp, fps, vcodec=vcodec, g=g, crf=crf))
    return Path(path)


def video_duration_s(path: str | Path) -> float:
    """Duration of the first video stream in seconds (stream duration, else container duration)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration / av.time_base)


def video_info(path: str | Path) -> dict:
    """The "info" dict LeRobot stores in info.json for a video feature.

    Args:
        path: an mp4 of the feature.

    Returns:
        {"video.height", "video.width", "video.codec", "video.pix_fmt", "video.is_depth_map",
         "video.fps", "video.channels", "has_audio"}.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": 1 if "gray" in (stream.pix_fmt or "") else 3,
            "has_audio": len(container.streams.audio) > 0,
        }


def concat_videos(inputs: list[str | Path], output: str | Path) -> list[float]:
    """Concatenate mp4 files with identical encoding settings into one, without re-encoding.

    File i's packets are shifted by the summed durations of files 0..i-1, which is what
    LeRobot's ffconcat-based concatenation does. The output is written atomically, so
    `output` may be one of the inputs.

    Args:
        inputs: files in playback order.
        output: the concatenated file.

    Returns:
        The start time in seconds of each input inside the output.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ValueError("concat_videos needs at least one input")
    starts: list[float] = []

    def _remux(tmp: Path) -> None:
        offset = Fraction(0)
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
            out_stream = None
            for src in inputs:
                with av.open(str(src)) as container:
                    stream = container.streams.video[0]
                    if out_stream is None:
                        out_stream = out.add_stream_from_template(stream, opaque=True)
                        out_stream.time_base = stream.time_base
                    starts.append(float(offset))
                    shift = int(round(offset / stream.time_base))
                    for packet in container.demux(stream):
                        if packet.dts is None or packet.pts is None:  # demuxer flush packet
                            continue
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = out_stream
                        out.mux(packet)
                    duration = stream.duration if stream.duration is not None else 0
                    offset += Fraction(duration) * stream.time_base

    write_with(output, _remux)
    return starts


class VideoDecoderCache:
    """Decode frames at timestamps, keeping recently used files open.

    Containers are not shared across processes: a cache used after a fork (DataLoader
    workers) starts empty in the child.

    Args:
        max_open: how many files to keep open at once.
    """

    def __init__(self, max_open: int = 8) -> None:
        self.max_open = max_open
        self._open: OrderedDict[tuple, av.container.InputContainer] = OrderedDict()
        self._pid = os.getpid()

    def _container(self, path: str | Path) -> av.container.InputContainer:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._open = OrderedDict()
            self._pid = os.getpid()
        try:
            st = os.stat(path)
        except FileNotFoundError as err:
            raise DatasetFormatError(path, "video file not found", "check videos/ against meta/episodes") from err
        # A writer replaces files atomically: a new inode or mtime means the cached handle is stale.
        key = (str(path), st.st_ino, st.st_mtime_ns)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        try:
            container = av.open(str(path))
        except av.error.FFmpegError as err:
            raise DatasetFormatError(path, f"unreadable video ({err})", "re-encode or restore the file") from err
        self._open[key] = container
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return container

    def _forget(self, path: str | Path) -> None:
        """Close and drop every cached handle of `path`."""
        for key in [k for k in self._open if k[0] == str(path)]:
            self._open.pop(key).close()

    def __getstate__(self) -> dict:
        # Open containers cannot be pickled (DataLoader workers with spawn): start empty there.
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"])

    def close(self) -> None:
        """Close every open file."""
        for container in self._open.values():
            container.close()
        self._open.clear()

    def _decode_range(self, path: str | Path, first: float, last: float, seek: bool
                      ) -> tuple[list[np.ndarray], list[float]]:
        """Decode frames from the keyframe before `first` (or the start) through `last`."""
        container = self._container(path)
        stream = container.streams.video[0]
        # Seek to the keyframe at or before `first`; 0 rewinds to the start of the file.
        target = int(first / stream.time_base) if seek else 0
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
        frames, times = [], []
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
            if t >= last:
                break
        return frames, times

    def decode(self, path: str | Path, timestamps: list[float], tolerance_s: float = 1e-4) -> np.ndarray:
        """Frames nearest to the requested times.

        Args:
            path: mp4 file.
            timestamps: times in seconds within the file.
            tolerance_s: the largest allowed gap between a requested time and its frame.

        Returns:
            [N, H, W, 3] uint8.

        Raises:
            DatasetFormatError: a requested time has no frame within the tolerance.
        """
        first, last = min(timestamps), max(timestamps)
        try:
            frames, times = self._decode_range(path, first, last, seek=True)
            if not times or times[0] > first + tolerance_s:
                # The seek overshot (no keyframe index entry before `first`): decode from the start.
                frames, times = self._decode_range(path, first, last, seek=False)
        except av.error.FFmpegError as err:
            self._forget(path)  # a demuxer that hit bad data is not trusted for the next request
            raise DatasetFormatError(path, f"cannot decode the frames at {first:.4f}..{last:.4f}s ({err})",
                                     "the file is truncated or corrupt: restore it or re-encode it") from err
        if not times:
            raise DatasetFormatError(path, "no frames could be decoded", "re-encode or restore the file")
        loaded = np.asarray(times)
        query = np.asarray(timestamps, dtype=np.float64)
        nearest = np.abs(query[:, None] - loaded[None, :]).argmin(axis=1)
        gaps = np.abs(loaded[nearest] - query)
        if (gaps > tolerance_s).any():
            bad = query[gaps > tolerance_s].tolist()
            raise DatasetFormatError(
                path, f"no frame within {tolerance_s}s of timestamps {bad} (decoded {loaded[0]:.4f}.."
                f"{loaded[-1]:.4f}s)", "check the episode's from/to timestamps and the dataset fps")
        return np.stack([frames[i] for i in nearest])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing to report to
            pass
