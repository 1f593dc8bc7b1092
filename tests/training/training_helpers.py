"""Shared helpers of the trainer tests: the colour-question data, quick configs, weight loading.

The data ask "What colour is the square?" about a 32x32 image holding one flat-coloured square, or
whether the square is big or small, so a tiny model can learn them in a few dozen steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SIZES = ("small", "big")



def make_records(root: Path, n: int, seed: int = 0) -> list[dict]:
    """LLaVA records with PNG images under root/images; two sources (colour, size)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        size = SIZES[rng.integers(len(SIZES))]
        img = np.full((32, 32, 3), 128, np.uint8)
        half = 12 if size == "big" else 5
        img[16 - half:16 + half, 16 - half:16 + half] = COLOURS[colour]
        name = f"images/{i:04d}.png"
        Image.fromarray(img).save(root / name)
        if i % 2 == 0:
            source, question, answer = "colour", "What colour is the square?", colour
        else:
            source, question, answer = "size", "Is the square big or small?", size
        records.append({"id": str(i), "image": name, "source": source,
                        "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                          {"from": "gpt", "value": answer}]})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path



def train_config(run_dir: Path, model: Path | str, data: Path, **overrides):
    """A PretrainConfig for quick CPU runs (no workers, no progress bar); overrides as keyword args."""
    from vlm2vla.config import load_config
    from vlm2vla.training.next_token_config import MOVED_FIELDS, PretrainConfig

    values = {"run_dir": str(run_dir), "model": str(model), "data": str(data), "max_steps": 8, "batch_size": 4,
              "lr": 3e-3, "num_workers": 0, "log_interval": 1, "save_interval": 4, "progress": False,
              "eval.max_samples_per_source": 4, "eval.max_new_tokens": 4, **overrides}
    # Keyword names stay short (max_steps=...); the optimisation and checkpoint ones live in optim.* / checkpoint.*
    return load_config(PretrainConfig, None, [f"{MOVED_FIELDS.get(k, k)}={_yaml(v)}" for k, v in values.items()])


def _yaml(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_training(cfg, stop_after: int | None = None) -> dict:
    """Open (or reopen) cfg.run_dir and train, like `vlm2vla pretrain` does."""
    from vlm2vla.runs import Run
    from vlm2vla.training.next_token import train_next_token

    return train_next_token(cfg, Run.open(cfg.run_dir, "pretrain", cfg), stop_after=stop_after)


def load_weights(folder: Path) -> dict:
    """The tensors of a saved model folder (safetensors)."""
    from safetensors.torch import load_file

    out = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(file))
    return out
