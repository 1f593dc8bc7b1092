"""Linear probes on a VLM's features of grounded-reach frames: does it see where each colour is, and does
the instruction-conditioned feature say where the named ball is?

    python results/grounded-floor/probe.py MODEL [MODEL ...] [--frames 300] [--out probe.json]

For each model folder (a pretrained VLM, a trained policy's backbone/, or "scratch:<folder>" for the
same architecture with random weights) and each of --frames first frames of grounded-reach (seeded
layouts, a random named colour), two 3-way targets are probed with 5-fold cross-validated logistic
regression on the last layer (chance 1/3):

    sees     image + a neutral prompt, mean over the prompt's tokens -> which slot (left / middle /
             right in the image) holds the blue ball
    grounds  image + "Reach the {colour} ball", the last prompt token -> which slot holds the named ball
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vlm2vla.backbones import VLMBackbone
from vlm2vla.engine.features import extract_features, robot_example
from vlm2vla.sim import SimConfig, make_env
from vlm2vla.sim.grounded.scene import COLOURS


def frames(n: int) -> tuple[list[np.ndarray], list[str], np.ndarray, np.ndarray]:
    """Images, named colours, slot of the blue ball, slot of the named ball (0 = image left)."""
    env = make_env("grounded-reach", SimConfig(name="grounded", camera="front"))
    rng = np.random.default_rng(0)
    images, named, blue_slot, named_slot = [], [], [], []
    for seed in range(n):
        colour = list(COLOURS)[int(rng.integers(3))]
        obs, _ = env.reset(seed=100_000 + seed, options={"target": colour})
        rank = np.argsort(np.argsort(-env.object_positions()[:, 0]))  # image left = world +x
        images.append(obs["observation.images.front"])
        named.append(colour)
        blue_slot.append(rank[0])
        named_slot.append(rank[env.named_index()])
    env.close()
    return images, named, np.array(blue_slot), np.array(named_slot)


def load(spec: str) -> VLMBackbone:
    if spec.startswith("scratch:"):
        return VLMBackbone.from_scratch(spec.removeprefix("scratch:"), seed=0)
    return VLMBackbone.from_pretrained(spec)


def features(backbone: VLMBackbone, images, prompts, pooling: str) -> np.ndarray:
    out = []
    with torch.no_grad():
        for k in range(0, len(images), 32):
            examples = [robot_example(im, p) for im, p in zip(images[k:k + 32], prompts[k:k + 32], strict=True)]
            out.append(extract_features(backbone, examples, pooling=pooling, robot=True)[0])
    return np.concatenate(out)


def probe(x: np.ndarray, y: np.ndarray) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    return float(cross_val_score(clf, x, y, cv=5).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    images, named, blue_slot, named_slot = frames(args.frames)
    results = {}
    for spec in args.models:
        backbone = load(spec)
        backbone.model.eval()
        sees = features(backbone, images, ["What is on the table?"] * len(images), "mean")
        grounds = features(backbone, images, [f"Reach the {c} ball" for c in named], "last")
        results[spec] = {"sees_blue_slot": probe(sees, blue_slot), "grounds_named_slot": probe(grounds, named_slot),
                         "frames": len(images), "chance": 1 / 3}
        print(spec, json.dumps(results[spec]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
