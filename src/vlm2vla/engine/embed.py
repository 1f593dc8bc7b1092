"""`vlm2vla embed`: per-sample features of a frozen VLM for the pool and the robot episodes.

    vlm2vla embed model=runs/pretrain/model pool=runs/pool robot_dataset=runs/collect/dataset
    accelerate launch -m vlm2vla.cli embed ...          # the same, one slice of the shards per process

The work is cut into shards of `shard_rows` samples with deterministic membership: pool samples in
file order ("pool-00000", "pool-00001", ...), then robot frames in episode order ("robot-00000", ...).
Shard j goes to process j % num_processes, which writes it itself (features/shards/<name>.npy, then
features/index/<name>.parquet). A shard whose index part exists is done, so a killed run re-run with
the same command redoes only the missing shards. See `feature_store` for the folder layout and
`features` for which tokens are pooled and how robot frames are turned into prompts.

Pool samples whose images cannot be read are skipped (logged and counted as `skipped_images`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vlm2vla.config import check_choices, choice
from vlm2vla.engine.feature_store import FEATURES_DIR, FeatureStore, completed_shards, write_meta, write_shard
from vlm2vla.engine.features import (
    POOLINGS,
    TOKENS,
    RobotFrame,
    batch_features,
    check_layer,
    robot_example,
    sample_robot_frames,
)
from vlm2vla.runs import Run

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
SPLITS = ("train", "heldout", "all")
ROBOT_SOURCE = "robot"
TEMPLATE = ("pool: the whole conversation (user turn with images + assistant answer) in the model's chat "
            "template; robot: one user turn (camera frame, then the instruction), no answer")


@dataclass(frozen=True)
class EmbedConfig:
    """Settings of one embedding run."""

    # where config, manifest and features/ go; re-running with the same run_dir resumes
    run_dir: str = "runs/embed"
    # the frozen VLM: a folder written by save_pretrained (e.g. runs/pretrain/model) or a hub id
    model: str = "runs/pretrain/model"
    # the VLM pool: a pool run directory or its pool.parquet ("" = embed no pool samples)
    pool: str = "runs/pool"
    # which pool split to embed: train (the candidates for selection), heldout, or all
    split: str = choice(*SPLITS)
    # LeRobot dataset root of the robot episodes ("" = embed no robot samples)
    robot_dataset: str = "runs/collect/dataset"
    # camera feature to take robot frames from ("" = the dataset's first camera)
    camera: str = ""
    # frames drawn per robot episode (0 = every frame); deterministic given seed
    frames_per_episode: int = 8
    # hidden-state index: 0 = embeddings, 1..N = layer outputs, -1 = last layer
    layer: int = -1
    # how a sample's token states become one vector: mean (over all non-padding tokens) or last
    pooling: str = choice(*POOLINGS)
    # tokens pooled: "prompt" (image + question + assistant header, comparable with robot frames, which
    # have no answer) or "all" (answers too); see vlm2vla.engine.features
    tokens: str = choice(*TOKENS)
    # samples per forward pass
    batch_size: int = 32
    # token limit per sample (longer text is cut from the end; image tokens are never cut)
    max_length: int = 512
    # samples per shard: the unit of work and of resuming
    shard_rows: int = 2048
    # also store each pool sample's answer-token mean NLL (for the perplexity selection baselines)
    compute_loss: bool = True
    # weight dtype: auto = bf16 on GPUs that support it, else float32
    dtype: str = choice(*DTYPES)
    # seed of the robot-frame draw and of the pool subsample
    seed: int = 0
    # DataLoader worker processes that load images and tokenize (0 = in this process)
    num_workers: int = 2
    # show a progress bar
    progress: bool = True
    # embed at most this many pool samples, a seeded random subset kept in file order (0 = all)
    max_pool_samples: int = 0
    # allow custom model code from the checkpoint
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("batch_size", "shard_rows", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("frames_per_episode", "num_workers", "max_pool_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.pool and not self.robot_dataset:
            raise ValueError("nothing to embed: set pool and/or robot_dataset")


@dataclass(frozen=True)
class Shard:
    """One unit of work: a named, fixed list of pool samples (VLMSample) or robot frames (RobotFrame)."""

    name: str
    kind: str
    items: tuple


def embed(cfg: EmbedConfig, run: Run, stop_after: int | None = None) -> dict[str, Any]:
    """Embed the pool and the robot frames of `cfg` into `run.dir`/features; resumes finished shards.

    Args:
        cfg: the run's settings.
        run: the open run directory.
        stop_after: return after writing this many shards in this process (to split a run into jobs,
            or to simulate a crash in tests); None embeds everything.

    Returns:
        Metrics: rows per kind, skipped images, samples/s, shards, layer, pooling, model.
    """
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    features_dir = run.dir / FEATURES_DIR
    shards = plan_shards(cfg)
    backbone = _load_backbone(cfg, acc.device)
    layer = check_layer(cfg.layer, backbone.num_layers)
    if acc.is_main_process:
        write_meta(features_dir, _meta(cfg, backbone, layer))
        run.update(inputs={"model": cfg.model, "pool": cfg.pool, "robot_dataset": cfg.robot_dataset})
    acc.wait_for_everyone()
    done = completed_shards(features_dir)
    mine = [s for j, s in enumerate(shards) if j % acc.num_processes == acc.process_index and s.name not in done]
    if done:
        log.info("Resuming: %d of %d shards already embedded", len(done & {s.name for s in shards}), len(shards))
    start = time.perf_counter()
    rows = _embed_shards(cfg, backbone, layer, mine, features_dir, stop_after, show=acc.is_main_process)
    elapsed = time.perf_counter() - start
    log.info("Process %d embedded %d samples in %.1fs (%.1f samples/s)", acc.process_index, rows, elapsed,
             rows / max(elapsed, 1e-9))
    from accelerate.utils import gather_object

    per_process = gather_object([(rows, elapsed)])  # samples/s of the whole run: all rows over the slowest process
    acc.wait_for_everyone()
    metrics = _metrics(cfg, shards, features_dir, sum(r for r, _ in per_process), max(e for _, e in per_process),
                       acc.num_processes)
    if acc.is_main_process:
        outputs = {"features": features_dir}
        if metrics["shards_done"] == metrics["shards"]:
            run.finish(metrics=metrics, outputs=outputs)
        else:
            run.update(metrics=metrics, outputs=outputs)
    acc.wait_for_everyone()
    return metrics


def plan_shards(cfg: EmbedConfig) -> list[Shard]:
    """Every shard of the run, pool shards first; membership depends only on the inputs and `cfg`."""
    shards = []
    if cfg.pool:
        samples = _pool_samples(cfg)
        shards += _chunk("pool", samples, cfg.shard_rows)
    if cfg.robot_dataset:
        frames = sample_robot_frames(_episode_lengths(cfg.robot_dataset), cfg.frames_per_episode, cfg.seed)
        shards += _chunk("robot", frames, cfg.shard_rows)
    return shards


def _chunk(kind: str, items: list, size: int) -> list[Shard]:
    return [Shard(f"{kind}-{k:05d}", kind, tuple(items[i:i + size])) for k, i in enumerate(range(0, len(items), size))]


def _pool_samples(cfg: EmbedConfig) -> list:
    from vlm2vla.vlm_data.pool_io import load_pool

    samples = load_pool(cfg.pool, split=None if cfg.split == "all" else cfg.split)
    if cfg.max_pool_samples and len(samples) > cfg.max_pool_samples:
        keep = np.random.default_rng(cfg.seed).choice(len(samples), cfg.max_pool_samples, replace=False)
        samples = [samples[i] for i in np.sort(keep)]
    return samples


def _episode_lengths(root: str) -> list[int]:
    from vlm2vla.robot_data import LeRobotDatasetReader

    reader = LeRobotDatasetReader.open(root)
    return [int(reader.episodes[e]["length"]) for e in range(reader.num_episodes)]


def _load_backbone(cfg: EmbedConfig, device: torch.device):
    from vlm2vla.backbones import load_backbone

    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    backbone = load_backbone(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=dtype)
    backbone.requires_grad_(False)
    return backbone.to(device).eval()


def _meta(cfg: EmbedConfig, backbone, layer: int) -> dict[str, Any]:
    template = backbone.collator().render([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": "{text}"}]}], False)
    return {
        "model": cfg.model, "family": backbone.family, "layer": layer, "num_layers": backbone.num_layers,
        "pooling": cfg.pooling, "tokens": cfg.tokens, "dim": backbone.hidden_size, "dtype": "float16",
        "template": TEMPLATE,
        "robot_prompt": template, "max_length": cfg.max_length, "split": cfg.split,
        "frames_per_episode": cfg.frames_per_episode, "seed": cfg.seed,
        "chat_template_sha1": hashlib.sha1(template.encode()).hexdigest(),
    }


def _embed_shards(cfg: EmbedConfig, backbone, layer: int, shards: list[Shard], features_dir: Path,
                  stop_after: int | None, show: bool) -> int:
    """Embed and write `shards`, in order; returns the rows written."""
    if not shards:
        return 0
    loader = _loader(cfg, backbone, shards)
    bar = tqdm(total=sum(len(s.items) for s in shards), desc="embed", unit="sample",
               disable=not (cfg.progress and show))
    remaining = {s.name: -(-len(s.items) // cfg.batch_size) for s in shards}
    parts: dict[str, list] = {}
    rows = written = 0
    for b in loader:
        if b["batch"] is not None:
            feats, losses = batch_features(backbone, b["batch"], layer=layer, pooling=cfg.pooling, tokens=cfg.tokens,
                                           compute_loss=cfg.compute_loss and b["kind"] == "pool")
            parts.setdefault(b["shard"], []).append((b["ids"], b["sources"], feats, losses))
        bar.update(b["size"])
        remaining[b["shard"]] -= 1
        if remaining[b["shard"]] == 0:
            rows += _write(features_dir, b["shard"], b["kind"], parts.pop(b["shard"], []), backbone.hidden_size)
            written += 1
            if stop_after is not None and written >= stop_after:
                break
        bar.set_postfix(samples_per_s=f"{bar.n / max(bar.format_dict['elapsed'], 1e-9):.1f}")
    bar.close()
    return rows


def _write(features_dir: Path, shard: str, kind: str, parts: list, dim: int) -> int:
    ids = [i for p in parts for i in p[0]]
    sources = [s for p in parts for s in p[1]]
    feats = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, dim), np.float32)
    losses = np.concatenate([p[3] if p[3] is not None else np.full(len(p[0]), np.nan, np.float32) for p in parts]) \
        if parts else None
    write_shard(features_dir, shard, ids, sources, kind, feats, losses)
    return len(ids)


def _loader(cfg: EmbedConfig, backbone, shards: list[Shard]) -> torch.utils.data.DataLoader:
    """Batches that never cross a shard boundary, loaded and tokenized in worker processes."""
    items, batches = [], []
    for shard in shards:
        start = len(items)
        items += [(shard.name, shard.kind, it) for it in shard.items]
        batches += [list(range(i, min(i + cfg.batch_size, len(items)))) for i in range(start, len(items),
                                                                                     cfg.batch_size)]
    dataset = _WorkItems(items, cfg.robot_dataset, cfg.camera)
    collate = _Collate(backbone.collator(), cfg.max_length, robot_generation_prompt=cfg.tokens == "prompt")
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=cfg.num_workers)


class _WorkItems(torch.utils.data.Dataset):
    """(shard, kind, VLMSample | RobotFrame) -> (shard, kind, {"id", "source", "images", "messages"} | None)."""

    def __init__(self, items: list[tuple[str, str, Any]], robot_root: str, camera: str) -> None:
        from vlm2vla.vlm_data.dataset import VLMChatDataset

        self.items = items
        self.pool = VLMChatDataset([it for _, kind, it in items if kind == "pool"], on_bad_image="none")
        self.pool_pos = {i: k for k, i in enumerate(i for i, (_, kind, _) in enumerate(items) if kind == "pool")}
        self.robot_root, self.camera = robot_root, camera
        self._reader = None
        self._episode: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, str, dict | None]:
        shard, kind, item = self.items[i]
        if kind == "pool":
            return shard, kind, self.pool[self.pool_pos[i]]
        return shard, kind, self._robot(item)

    def _robot(self, frame: RobotFrame) -> dict:
        if self._reader is None:  # opened lazily: once per worker process
            from vlm2vla.robot_data import LeRobotDatasetReader

            self._reader = LeRobotDatasetReader.open(self.robot_root)
            cameras = self._reader.camera_keys
            if self.camera and self.camera not in cameras:
                raise ValueError(f"camera {self.camera!r} is not in {self.robot_root} (cameras: {cameras})")
            self.camera = self.camera or cameras[0]
        if self._episode is None or self._episode[0] != frame.episode:  # frames come grouped by episode
            self._episode = (frame.episode, self._reader.load_episode(frame.episode))
        episode = self._episode[1]
        example = robot_example(episode[self.camera][frame.frame], episode["task"])
        return {"id": frame.id, "source": ROBOT_SOURCE, "images": example.images, "messages": example.messages}


@dataclass
class _Collate:
    """Drops unreadable samples and collates the rest with the backbone's chat template."""

    collator: Any
    max_length: int
    # render robot prompts with the assistant header, to match pool prompts pooled over "prompt" tokens
    robot_generation_prompt: bool = True

    def __call__(self, items: list[tuple[str, str, dict | None]]) -> dict[str, Any]:
        from vlm2vla.backbones import ChatExample

        kept = [it for _, _, it in items if it is not None]
        batch = None
        if kept:
            examples = [ChatExample(images=it["images"], messages=it["messages"]) for it in kept]
            header = self.robot_generation_prompt and items[0][1] == "robot"
            batch = self.collator(examples, max_length=self.max_length, add_generation_prompt=header)
        return {"shard": items[0][0], "kind": items[0][1], "size": len(items), "batch": batch,
                "ids": [it["id"] for it in kept], "sources": [it["source"] for it in kept]}


def _metrics(cfg: EmbedConfig, shards: list[Shard], features_dir: Path, rows: int, elapsed: float,
             processes: int) -> dict[str, Any]:
    store = FeatureStore.open(features_dir)
    done = store.completed_shards()
    index = store.index()
    kinds = index["kind"].to_pylist()
    expected_pool = sum(len(s.items) for s in shards if s.kind == "pool" and s.name in done)
    pool_rows, robot_rows = kinds.count("pool"), kinds.count("robot")
    return {
        "model": cfg.model, "layer": store.meta["layer"], "pooling": cfg.pooling, "tokens": cfg.tokens,
        "dim": store.dim,
        "pool_samples": pool_rows, "robot_samples": robot_rows, "skipped_images": expected_pool - pool_rows,
        "shards": len(shards), "shards_done": len(done & {s.name for s in shards}),
        "embedded_this_run": rows, "seconds": round(elapsed, 2),
        "samples_per_s": round(rows / elapsed, 2) if elapsed > 0 and rows else None, "processes": processes,
    }
