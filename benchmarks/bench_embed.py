"""Embedding speed of the tiny default VLM: pool samples and robot frames per second, batch 8 vs 32.

    python benchmarks/bench_embed.py [--pool-samples 256] [--robot-frames 256] [--num-workers 0] [--threads 2]

Builds the tiny default VLM (128x128 images), a pool of synthetic one-image conversations and a LeRobot
dataset of 128x128 frames (PNG image column) in a temporary folder, then runs the `embed` stage on
each kind alone at batch sizes 8 and 32 and prints samples/s side by side (from the run manifests,
model loading excluded), with batch 32 as a ratio of batch 8.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlm2vla.backbones import build_tiny_vlm
from vlm2vla.cli import main as cli_main
from vlm2vla.vlm_data.pool_io import write_pool
from vlm2vla.vlm_data.records import VLMSample

logger = logging.getLogger("bench_embed")

CAM = "observation.images.corner2"
WORDS = "pick place the red blue green cube ball drawer open close left right top of what color how many".split()


def sentence(rng: random.Random, n: int) -> str:
    """n random words."""
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_pool(root: Path, n: int, seed: int = 0) -> Path:
    """A pool.parquet of n one-image conversations (question of ~12 words, answer of ~6)."""
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    samples = []
    for i in range(n):
        path = root / "images" / f"{i}.png"
        Image.fromarray(nprng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(path)
        samples.append(VLMSample(id=f"synthetic/{i}", source="synthetic", images=(str(path),),
                                 conversations=(("human", "<image>\n" + sentence(rng, 12)), ("gpt", sentence(rng, 6)))))
    with open(root / "pool.parquet", "wb") as f:
        write_pool(samples, f)
    return root / "pool.parquet"


def make_dataset(root: Path, frames: int, episode_length: int = 64, seed: int = 0) -> Path:
    """A LeRobot dataset with one 128x128 camera (PNG column), `frames` frames in episodes of episode_length."""
    from vlm2vla.robot_data.writer import LeRobotDatasetWriter

    rng = np.random.default_rng(seed)
    features = {CAM: {"dtype": "image", "shape": [128, 128, 3], "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": [4], "names": None},
                "action": {"dtype": "float32", "shape": [4], "names": None}}
    with LeRobotDatasetWriter.create(root, fps=80, features=features, robot_type="toy") as writer:
        for ep in range(-(-frames // episode_length)):
            n = min(episode_length, frames - ep * episode_length)
            writer.add_episode({CAM: rng.integers(0, 255, (n, 128, 128, 3), dtype=np.uint8),
                                "observation.state": rng.normal(size=(n, 4)).astype(np.float32),
                                "action": rng.normal(size=(n, 4)).astype(np.float32)},
                               task="pick up the red cube and place it on the left")
    return root


def run_embed(run_dir: Path, model: Path, pool: str, dataset: str, batch: int, workers: int) -> dict:
    """One embed run; returns its manifest metrics."""
    code = cli_main(["embed", f"run_dir={run_dir}", f"model={model}", f"pool={pool or chr(39) * 2}",
                     f"robot_dataset={dataset or chr(39) * 2}", "frames_per_episode=0", f"batch_size={batch}",
                     f"num_workers={workers}", "progress=false", "max_length=256", "shard_rows=1024"])
    if code:
        raise SystemExit(f"embed failed with exit code {code}")
    return json.loads((run_dir / "manifest.json").read_text())["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-samples", type=int, default=256)
    parser.add_argument("--robot-frames", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = random.Random(0)
        model = build_tiny_vlm(tmp / "model", [sentence(rng, 12) for _ in range(3000)], image_size=128)
        pool = make_pool(tmp / "pool", args.pool_samples)
        dataset = make_dataset(tmp / "dataset", args.robot_frames)
        rows = []
        for kind, p, d in (("pool", str(pool), ""), ("robot", "", str(dataset))):
            speeds = {b: run_embed(tmp / f"{kind}_{b}", model, p, d, b, args.num_workers)["samples_per_s"]
                      for b in (8, 32)}
            rows.append((kind, speeds[8], speeds[32]))
    print(f"tiny default VLM, 128x128 images, {args.threads} threads, num_workers={args.num_workers}, "
          f"device={'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"{'samples':<8} {'batch 8 (samples/s)':>20} {'batch 32 (samples/s)':>21} {'32 / 8':>7}")
    for kind, s8, s32 in rows:
        print(f"{kind:<8} {s8:>20.1f} {s32:>21.1f} {s32 / s8:>7.2f}")


if __name__ == "__main__":
    main()
