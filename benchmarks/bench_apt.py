"""What APT's stages cost per training step, next to joint training, for both action experts, in one run.

    python benchmarks/bench_apt.py --depth 4 --batch 32 --steps 10

On the tiny default VLM architecture (random weights; 128 px images) with the VLM frozen, as APT trains
it, one optimiser step (VLM forward, expert forward/backward, AdamW) is timed for: stage 1 (N/2 layers,
language hidden), stage 2 (N layers, half of them inserted with gated fusion) and the joint baseline
(a plain N-layer expert). Variants are timed in turns, round-robin, so a slow patch of this noisy
machine hits them all alike. Prints samples/s per variant and its ratio to joint training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vlm2vla.backbones import VLMBackbone, build_tiny_vlm
from vlm2vla.policies.configuration import APTOptions, Gr00tOptions, Pi0Options, VLAConfig
from vlm2vla.policies.policy import VLAPolicy

VARIANTS = {"stage 1": 1, "stage 2": 2, "joint": 0}
CORPUS = [f"reach the {c} ball" for c in ("blue", "green", "yellow")] * 20


def _step_fn(policy: VLAPolicy, batch: dict):
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss, _ = policy(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4, help="final expert depth N (stage 1 has N/2)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heads", nargs="*", default=["pi0", "gr00t"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        backbone = VLMBackbone.from_pretrained(str(build_tiny_vlm(Path(tmp) / "vlm", CORPUS, image_size=128)))
    backbone.requires_grad_(False)
    for head in args.heads:
        steps = {}
        for name, stage in VARIANTS.items():
            cfg = VLAConfig(head=head, cameras=("front",), action_dim=4, state_dim=19, chunk_size=8,
                            n_action_steps=4, pi0=Pi0Options(num_layers=args.depth),
                            gr00t=Gr00tOptions(num_layers=args.depth), apt=APTOptions(stage=stage))
            policy = VLAPolicy.build(cfg, backbone, cfg.fake_stats()).train()
            batch = policy.collator()(cfg.fake_items(args.batch, tasks=CORPUS[:3], image_size=128))
            step = _step_fn(policy, batch)
            step()  # warm-up (allocations, first-call overheads)
            steps[name] = (step, policy.head.new_parameter_count())
        seconds = dict.fromkeys(VARIANTS, 0.0)
        for _ in range(args.rounds):
            for name, (step, _) in steps.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                seconds[name] += time.perf_counter() - start
        samples = args.rounds * args.steps * args.batch
        joint = samples / seconds["joint"]
        print(f"{head}: expert depth {args.depth}, batch {args.batch}, {args.rounds} x {args.steps} steps each")
        for name, (_, params) in steps.items():
            rate = samples / seconds[name]
            print(f"  {name:8s} {rate:7.1f} samples/s  {1000 * seconds[name] / (samples / args.batch):6.1f} ms/step  "
                  f"{rate / joint:4.2f}x joint  expert params {params / 1e6:.2f} M")


if __name__ == "__main__":
    main()
