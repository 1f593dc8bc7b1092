"""Does a trained grounded-suite policy read its instruction? Actions under the named target vs another one.

    python results/apt/language_use.py TRAIN_RUN COLLECT_DIR [--frames 64] [--out language_use.json]

On `--frames` demonstration frames spread evenly over the dataset, the policy predicts an action chunk for
the canonical instruction naming the frame's target and for the canonical instruction naming each other
candidate, from the same noise. `swap_l1` is the mean |difference| of those chunks (dataset units);
`noise_l1`, the mean |difference| between two noise draws under the true instruction, puts it on a
scale. A language-blind policy has swap_l1 = 0. For an APT stage-2 policy the file also lists the mean
gate g = sigmoid(w) of every inserted layer (1 = only the layer's own stream, 0 = only the fused VLM state).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vlm2vla.policies.policy import VLAPolicy
from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset
from vlm2vla.sim.grounded.tasks import resolve_family


def chunks(policy: VLAPolicy, items: list[dict], noise: torch.Tensor) -> torch.Tensor:
    """Action chunks [B, T, A] in dataset units for training-style items, from `noise`."""
    with torch.no_grad():
        collated = policy.collator()(items)
        normalised = policy.head.predict(policy.backbone, policy.prefix(collated), noise=noise)
    return policy.normalizer.unnormalize("action", normalised.float())


def measure(policy: VLAPolicy, dataset: RobotEpisodeDataset, reader: LeRobotDatasetReader, frames: int,
            seed: int = 0) -> dict:
    indices = np.linspace(0, len(dataset) - 1, frames).round().astype(int)
    items = [dataset[int(i)] for i in indices]
    gen = torch.Generator().manual_seed(seed)
    shape = (1, policy.config.chunk_size, policy.config.action_dim)
    swap, spread = [], []
    for item in items:
        meta = reader.episode_metadata(int(item["episode_index"]))
        family = resolve_family(meta["family"])
        named = meta["target"]
        noise, other_noise = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        true_item = {**item, "task": family.canonical(named)}
        base = chunks(policy, [true_item], noise)
        spread.append(float((base - chunks(policy, [true_item], other_noise)).abs().mean()))
        for other in family.attributes:
            if other != named:
                moved = chunks(policy, [{**item, "task": family.canonical(other)}], noise)
                swap.append(float((base - moved).abs().mean()))
    out = {"frames": frames, "swap_l1": float(np.mean(swap)), "noise_l1": float(np.mean(spread))}
    out["swap_over_noise"] = out["swap_l1"] / out["noise_l1"] if out["noise_l1"] else None
    fusion = getattr(policy.head, "fusion", None)
    if fusion is not None:
        gates = torch.sigmoid(fusion.gate_logits.detach().float())
        out["gates"] = {"mean_per_inserted_layer": gates.mean(dim=1).tolist(), "min": float(gates.min()),
                        "max": float(gates.max()), "init": float(torch.sigmoid(torch.tensor(
                            policy.config.apt.gate_init)))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_run", type=Path, help="a train-policy run directory (or its policy/ folder)")
    parser.add_argument("collect", type=Path, help="the grounded demonstrations (a collect run or dataset folder)")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("language_use.json"))
    args = parser.parse_args()
    folder = args.train_run / "policy" if (args.train_run / "policy").is_dir() else args.train_run
    policy = VLAPolicy.from_pretrained(folder)
    reader = LeRobotDatasetReader.open(args.collect)
    dataset = RobotEpisodeDataset(reader, action_chunk=policy.config.chunk_size)
    result = {"policy": str(folder), **measure(policy, dataset, reader, args.frames)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
