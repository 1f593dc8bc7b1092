"""Policy inference latency per action chunk: cached VLM prefix vs recomputing it, per head and size.

    python benchmarks/bench_policy.py [--arch tiny smolvlm-256m] [--heads vlm4vla pi0 gr00t]
                                      [--batch 1 8] [--repeats 10] [--threads 2]

Two architectures with random weights (latency does not depend on the weights):

    tiny           the built-in default (Idefics3, 4 x 256 Llama, 128 px, 16 image tokens)
    smolvlm-256m   SmolVLM-256M's shapes: Llama 30 x 576 (9 heads, 3 KV heads, MLP 1536, vocab 49280),
                   SigLIP 12 x 768 on 16 px patches at 512 px, pixel shuffle x4 -> 64 image tokens
                   (one 512 px crop: the simulator frame upscaled, no image splitting)

For each head it prints, in milliseconds per call of `batch` observations:

    prefix     one VLM forward over the prompt (images + instruction) — the unit the targets use
    chunk      head.predict with the prefix computed once (pi0: 10 Euler steps over cached K/V, through
               CachedSteps, which hoists what the steps share)
    stepped    the flow experts' shared sampler: Euler steps over `velocity` with the cached prefix (pi0's
               sampler before CachedSteps; the same as chunk for gr00t)
    recompute  the same with the prefix recomputed at every Euler step (flow heads only)
    floor      pi0 only: the expert's matmuls alone (fused q|k|v, o, gate|up, down per layer) at one step's
               shapes, times the Euler steps, plus one prefix forward: what a chunk would cost with every
               other op free, so floor/prefix bounds what removing per-op overhead can reach on this machine
    e2e        policy.predict_action_chunk: collate (image processing, tokenising) + chunk

and the ratios chunk/prefix (target for the 10-step pi0 chunk: <= 1.5), stepped/prefix, floor/prefix and
recompute/chunk, chunks
per second end to end, and peak resident memory while predicting (CPU: VmHWM after resetting it;
CUDA: max allocated).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vlm2vla.backbones import VLMBackbone, build_tiny_vlm
from vlm2vla.backbones.random_models import idefics3_parts, save_random_model
from vlm2vla.policies import VLAConfig, VLAPolicy
from vlm2vla.policies.flow_matching import euler_integrate
from vlm2vla.policies.pi0_expert import CachedSteps

logger = logging.getLogger("bench_policy")
HEADS = ("vlm4vla", "pi0", "gr00t")


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    """Instruction-like sentences for the throwaway tokenizer."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(1500)] + "pick place the red blue cube drawer open close left right".split()
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n)]


def build_arch(name: str, folder: Path) -> Path:
    """Save a random-weight VLM of the named architecture into `folder`."""
    if name == "tiny":
        return build_tiny_vlm(folder, corpus())
    if name != "smolvlm-256m":
        raise ValueError(f"unknown arch {name!r}; choose tiny or smolvlm-256m")
    config, processor = idefics3_parts(corpus(), image_size=512, vocab_size=2048, text_hidden=576, text_layers=30,
                                       vision_hidden=768, vision_layers=12, patch_size=16, scale_factor=4)
    text, vision = config.text_config, config.vision_config
    text.intermediate_size, text.num_attention_heads, text.num_key_value_heads, text.head_dim = 1536, 9, 3, 64
    text.vocab_size = 49280  # SmolVLM's embedding table; the throwaway tokenizer uses only its first ids
    vision.intermediate_size, vision.num_attention_heads = 3072, 12
    return save_random_model(config, processor, folder)


def fake_stats(action_dim: int = 4, state_dim: int = 4) -> dict:
    """Dataset stats in LeRobot's layout (the normaliser needs them; values do not matter here)."""
    def entry(d: int) -> dict:
        return {"mean": [0.0] * d, "std": [1.0] * d, "min": [-1.0] * d, "max": [1.0] * d,
                "q01": [-1.0] * d, "q99": [1.0] * d}
    return {"observation.state": entry(state_dim), "action": entry(action_dim)}


def observations(batch: int, size: int = 128) -> dict:
    """An eval-style observation batch of simulator-sized frames."""
    rng = np.random.default_rng(0)
    return {"observation.images.corner2": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "observation.state": rng.standard_normal((batch, 4)).astype(np.float32),
            "task": ["open the drawer"] * batch}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Mean milliseconds of `fn()` after one warm-up call (on CUDA, waiting for the queued kernels)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats * 1000


def reset_peak() -> None:
    """Restart peak-memory tracking (CPU: the kernel's VmHWM via clear_refs; CUDA: torch's counter)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the figure is the peak since start


def peak_mb() -> float:
    """Peak memory since `reset_peak` in MiB (CPU: resident set; CUDA: allocated)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stepped(head, backbone: VLMBackbone, prefix) -> torch.Tensor:
    """A chunk by Euler steps over the head's own `velocity` (what `predict` did before `step_velocity`)."""
    context = head.encode_prefix(backbone, prefix)
    noise = torch.randn(prefix.batch["attention_mask"].shape[0], head.config.chunk_size, head.config.action_dim,
                        device=backbone.model.device)
    return euler_integrate(lambda x, t: head.velocity(context, prefix, x, t), noise, head.default_num_steps)


def matmul_floor(head, backbone: VLMBackbone, prefix, repeats: int) -> float:
    """Milliseconds of the pi0 expert's per-step matmuls over a whole chunk (see `floor` above)."""
    steps = CachedSteps(head, head.encode_prefix(backbone, prefix), prefix)
    rows = prefix.batch["attention_mask"].shape[0] * head.config.chunk_size
    weights = [w for c in steps.layers for w in (c["qkv"], c["layer"].o.weight, c["gate_up"],
                                                  c["layer"].mlp.down.weight)]
    inputs = [torch.randn(rows, w.shape[1], device=w.device, dtype=w.dtype) for w in weights]

    def chunk_matmuls() -> None:
        for _ in range(head.default_num_steps):
            for x, w in zip(inputs, weights, strict=True):
                torch.nn.functional.linear(x, w)

    return timed(chunk_matmuls, repeats)


def bench_head(backbone: VLMBackbone, head: str, batch: int, repeats: int) -> dict:
    """Latency figures of one head on one backbone."""
    torch.manual_seed(0)
    policy = VLAPolicy.build(VLAConfig(head=head), backbone, fake_stats()).eval()
    obs = observations(batch)
    prefix = policy.prefix(policy.collator()(
        [{"observation.images.corner2": obs["observation.images.corner2"][i],
          "observation.state": obs["observation.state"][i], "task": obs["task"][i]} for i in range(batch)]))
    flow = head != "vlm4vla"
    out: dict[str, float] = {}
    with torch.no_grad():
        out["prefix"] = timed(lambda: backbone(prefix.batch, use_cache=flow), repeats)
        out["chunk"] = timed(lambda: policy.head.predict(backbone, prefix), repeats)
        if flow:
            out["stepped"] = timed(lambda: stepped(policy.head, backbone, prefix), repeats)
            out["recompute"] = timed(lambda: policy.head.predict(backbone, prefix, cache_prefix=False),
                                     max(1, repeats // 3))
        if head == "pi0":
            out["floor"] = out["prefix"] + matmul_floor(policy.head, backbone, prefix, repeats)
        reset_peak()
        out["e2e"] = timed(lambda: policy.predict_action_chunk(obs), repeats)
        out["peak_mb"] = peak_mb()
    out["new_params"] = policy.head.new_parameter_count()
    return out


def main() -> None:
    """Build each architecture and time each head."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", nargs="+", default=["tiny", "smolvlm-256m"])
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("vlm2vla").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for arch in args.arch:
        with tempfile.TemporaryDirectory() as tmp:
            backbone = VLMBackbone.from_pretrained(str(build_arch(arch, Path(tmp) / arch)))
        backbone.model.to(device)
        logger.info("== %s: %.1fM params, %s, %d threads", arch, backbone.model.num_parameters() / 1e6, device,
                    args.threads)
        logger.info("%-8s %5s %9s %9s %9s %9s %9s %9s %12s %14s %12s %15s %9s %9s %10s", "head", "batch", "prefix",
                    "chunk", "stepped", "floor", "recompute", "e2e", "chunk/prefix", "stepped/prefix", "floor/prefix",
                    "recompute/chunk", "chunks/s", "peak MiB", "new params")
        for head in args.heads:
            for batch in args.batch:
                r = bench_head(backbone, head, batch, args.repeats)
                rec, stepped, floor = (r.get(k, float("nan")) for k in ("recompute", "stepped", "floor"))
                logger.info("%-8s %5d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %12.2f %14.2f %12.2f %15.2f %9.1f %9.0f %10d",
                            head, batch, r["prefix"], r["chunk"], stepped, floor, rec, r["e2e"],
                            r["chunk"] / r["prefix"], stepped / r["prefix"], floor / r["prefix"], rec / r["chunk"],
                            batch / r["e2e"] * 1000, r["peak_mb"], r["new_params"])
        del backbone


if __name__ == "__main__":
    main()
