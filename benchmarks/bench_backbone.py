"""Tiny default VLM speed on CPU: collate, forward and train step for a batch of 128x128 images.

    python benchmarks/bench_backbone.py [--batch 8] [--repeats 10] [--threads 2]

Prints parameter count, image tokens per image, and milliseconds per batch; collate time is also
given as a ratio of the train step (the data-side share of a step when collation is not overlapped).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from vlm2vla.backbones import ChatExample, VLMBackbone, build_tiny_vlm

logger = logging.getLogger("bench_backbone")


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """Varied instruction-like sentences so BPE reaches its vocabulary size."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)] + "pick place the red blue cube drawer open close left right".split()
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n)]


def examples(batch: int) -> list[ChatExample]:
    """Batch of one-image VQA examples with short answers."""
    return [ChatExample(images=[Image.new("RGB", (128, 128), (40 * i % 255, 90, 160))],
                        messages=[{"role": "user", "content": "pick up the red cube and place it left"},
                                  {"role": "assistant", "content": "move left then close the gripper"}])
            for i in range(batch)]


def timed(fn, repeats: int) -> float:
    """Mean milliseconds of ``fn()`` after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    """Build the tiny default and time it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        backbone = VLMBackbone.from_pretrained(str(build_tiny_vlm(Path(tmp) / "tiny", corpus())))
    exs = examples(args.batch)
    batch = backbone.collate(exs, num_queries=1)
    image_tokens = int((batch["input_ids"][0] == backbone.processor.image_token_id).sum())
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad()
        backbone(batch).loss.backward()
        opt.step()

    collate_ms = timed(lambda: backbone.collate(exs, num_queries=1), args.repeats)
    with torch.no_grad():
        forward_ms = timed(lambda: backbone(batch), args.repeats)
    step_ms = timed(step, args.repeats)
    logger.info("params %.2fM, vocab %d, image tokens/image %d, sequence length %d",
                backbone.model.num_parameters() / 1e6, len(backbone.processor.tokenizer), image_tokens,
                batch["input_ids"].shape[1])
    logger.info("batch %d: collate %.1f ms, forward %.1f ms, train step %.1f ms (%.0f samples/s)",
                args.batch, collate_ms, forward_ms, step_ms, args.batch / step_ms * 1000)
    logger.info("collate / train step = %.2f", collate_ms / step_ms)


if __name__ == "__main__":
    main()
