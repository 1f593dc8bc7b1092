"""Encode, concatenate without re-encoding, decode by timestamp; write_mp4 for eval videos."""

import av
import numpy as np
import pytest
from robot_data_helpers import CAM, make_episode

from vlm2vla.robot_data.format import DatasetFormatError
from vlm2vla.robot_data.video import (
    VideoDecoderCache,
    concat_videos,
    encode_video,
    video_duration_s,
    video_info,
    write_mp4,
)


def test_concat_and_decode(tmp_path):
    a, b = make_episode(10, 0)[CAM], make_episode(15, 1)[CAM]
    encode_video(a, tmp_path / "a.mp4", fps=10)
    encode_video(b, tmp_path / "b.mp4", fps=10)
    assert video_duration_s(tmp_path / "a.mp4") == pytest.approx(1.0)
    starts = concat_videos([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "ab.mp4")
    assert starts == pytest.approx([0.0, 1.0]) and video_duration_s(tmp_path / "ab.mp4") == pytest.approx(2.5)
    # Packets are copied, not re-encoded.
    with av.open(str(tmp_path / "b.mp4")) as src, av.open(str(tmp_path / "ab.mp4")) as dst:
        src_packets = [bytes(p) for p in src.demux(video=0) if p.size]
        dst_packets = [bytes(p) for p in dst.demux(video=0) if p.size]
    assert dst_packets[10:] == src_packets
    cache = VideoDecoderCache()
    frames = cache.decode(tmp_path / "ab.mp4", [1.0 + 0.7, 0.3, 1.0 + 1.4])
    for got, want in zip(frames, [b[7], a[3], b[14]], strict=True):
        assert np.abs(got.astype(int) - want).mean() < 4.0
    with pytest.raises(DatasetFormatError, match="no frame within"):
        cache.decode(tmp_path / "ab.mp4", [0.05])


def test_cache_sees_replaced_file(tmp_path):
    a = make_episode(10, 0)[CAM]
    encode_video(a, tmp_path / "a.mp4", fps=10)
    cache = VideoDecoderCache()
    cache.decode(tmp_path / "a.mp4", [0.5])
    concat_videos([tmp_path / "a.mp4", tmp_path / "a.mp4"], tmp_path / "a.mp4")  # replaced in place
    assert cache.decode(tmp_path / "a.mp4", [1.5]).shape == (1, 32, 32, 3)


def test_write_mp4_pads_odd_sizes(tmp_path):
    frames = make_episode(6, 0, size=31)[CAM]
    path = write_mp4(frames, tmp_path / "rollout.mp4", fps=10)
    info = video_info(path)
    assert (info["video.width"], info["video.height"], info["video.codec"]) == (32, 32, "h264")
