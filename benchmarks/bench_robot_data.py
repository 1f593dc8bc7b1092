"""LeRobotDataset writer and reader speed: per-episode commit cost as files grow, and read throughput.

    python benchmarks/bench_robot_data.py [--episodes 200] [--frames 100] [--image-size 128]

The writer rewrites the current data file / re-muxes the current video file on every
add_episode (that is how it stays crash-safe). This prints the commit time of the first and
the last tenth of the episodes, and their ratio: how much the growing file costs. It also prints
frames/s of RobotEpisodeDataset reads (sequential and shuffled) for image and video storage.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset
from vlm2vla.robot_data.writer import LeRobotDatasetWriter


def episode(frames: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """A smooth moving scene (compressible like a rendered one) with random state/action."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    t = np.arange(frames)[:, None, None]
    img = np.stack(np.broadcast_arrays((xx + 2 * t) % 256, (yy + seed) % 256, ((xx + yy) // 2 + t) % 256),
                   axis=-1)
    return {"observation.images.corner2": img.astype(np.uint8),
            "observation.state": rng.normal(size=(frames, 4)).astype(np.float32),
            "action": rng.normal(size=(frames, 4)).astype(np.float32)}


def write(root: Path, dtype: str, args: argparse.Namespace) -> list[float]:
    """Seconds per add_episode."""
    features = {
        "observation.images.corner2": {"dtype": dtype, "shape": [args.image_size, args.image_size, 3],
                                       "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [4], "names": None},
    }
    times = []
    with LeRobotDatasetWriter.create(root, fps=80, features=features, vcodec=args.vcodec) as writer:
        for e in range(args.episodes):
            data = episode(args.frames, args.image_size, e)
            start = time.perf_counter()
            writer.add_episode(data, task=f"task {e % 5}")
            times.append(time.perf_counter() - start)
    return times


def read_rate(root: Path, shuffle: bool, n: int = 2000) -> float:
    """Frames/s of RobotEpisodeDataset items (action chunk 8), one process."""
    ds = RobotEpisodeDataset(LeRobotDatasetReader.open(root), action_chunk=8)
    order = torch.randperm(len(ds))[:n].tolist() if shuffle else list(range(min(n, len(ds))))
    start = time.perf_counter()
    for i in order:
        ds[i]
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--vcodec", default="libsvtav1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tenth = max(1, args.episodes // 10)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("video", "image"):
            root = Path(tmp) / dtype
            times = write(root, dtype, args)
            first, last = np.mean(times[:tenth]), np.mean(times[-tenth:])
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
            print(f"{dtype:5s} write: {args.episodes} episodes x {args.frames} frames, {size:.1f} MB; "
                  f"commit {first * 1e3:.0f} ms (first tenth) -> {last * 1e3:.0f} ms (last tenth), "
                  f"ratio {last / first:.2f}; {args.episodes * args.frames / sum(times):.0f} frames/s overall")
            seq, rnd = read_rate(root, False), read_rate(root, True)
            print(f"{dtype:5s} read: {seq:.0f} frames/s sequential, {rnd:.0f} frames/s shuffled "
                  f"(ratio {seq / rnd:.2f})")


if __name__ == "__main__":
    main()
