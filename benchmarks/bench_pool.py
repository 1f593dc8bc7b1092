"""Pool validation throughput: records checked per second (every image opened), by thread count.

    python benchmarks/bench_pool.py --records 50000 --images 5000 --threads 1 8

Writes a JSONL source of `--records` records over `--images` distinct 128x128 PNGs (records share
images, as in real pools), then times `validate_source` (parse + PIL verify of every image) with each
thread count. Prints records/s per setting, the time a million records would take, and each
setting's speed as a ratio of the single-thread speed. Memory stays flat: records stream in chunks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source


def make_source(root: Path, records: int, images: int) -> SourceSpec:
    """A JSONL source whose records cycle over `images` random-noise PNGs."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for k in range(images):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(root / "images" / f"{k}.png")
    with open(root / "data.jsonl", "w") as f:
        for i in range(records):
            f.write(json.dumps({"id": i, "image": f"images/{i % images}.png", "conversations": [
                {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "noise"}]}) + "\n")
    return SourceSpec(name="bench", path=str(root / "data.jsonl"))


def records_per_second(spec: SourceSpec, threads: int) -> float:
    """Validated records per second with `threads` image-checking threads."""
    report = SourceReport("bench")
    start = time.perf_counter()
    kept = sum(1 for _ in validate_source(spec, report, set(), workers=threads, progress=False))
    elapsed = time.perf_counter() - start
    assert kept == report.total, report.to_dict()
    return kept / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = make_source(Path(tmp), args.records, args.images)
        base = None
        for threads in args.threads:
            rate = records_per_second(spec, threads)
            base = base or rate
            print(f"threads={threads:3d}  {rate:9.0f} records/s  1M records: {1e6 / rate / 60:6.1f} min  "
                  f"speed vs {args.threads[0]} thread(s): {rate / base:.2f}x")


if __name__ == "__main__":
    main()
