"""Robot data for policy training: the train / validation episode split, frames cached in RAM, and
validation (action error on held-out episodes).

    train_eps, val_eps = split_episodes(reader.num_episodes, cfg.val_episodes, cfg.seed)
    dataset, skipped = policy_dataset(reader, train_eps, 8, policy.config.image_keys, cache=True)
    figures = validate(policy, val_dataset, batch_size=16, seed=0)   # l1, mse, loss

Random access into mp4 files is slow (each frame seeks to a keyframe and decodes forward), so by
default every frame the policy reads is decoded once, in episode order, into one uint8 array per
camera; DataLoader workers share it copy-on-write after the fork. An episode whose frames cannot be
decoded (a truncated or corrupt file) is left out and reported, not fatal; the caller decides how many
it tolerates (`check_bad_episodes`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from accelerate.utils import send_to_device
from tqdm import tqdm

from vlm2vla.robot_data.format import EpisodeReadError
from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset

log = logging.getLogger(__name__)


def split_episodes(num_episodes: int, val_episodes: float, seed: int) -> tuple[list[int], list[int]]:
    """Split episode indices into training and validation episodes, deterministically.

    Args:
        num_episodes: episodes in the dataset.
        val_episodes: a fraction in (0, 1) of the episodes, a count >= 1, or 0 for no validation.
        seed: the split is a permutation drawn from this seed (so held-out episodes mix tasks).

    Returns:
        (train, val) sorted episode indices.

    Raises:
        ValueError: the split leaves no training episode.
    """
    count = round(val_episodes * num_episodes) if val_episodes < 1 else int(val_episodes)
    if val_episodes > 0:
        count = max(count, 1)  # a positive fraction of a small dataset still holds one episode out
    if count >= num_episodes:
        raise ValueError(f"val_episodes={val_episodes} holds out {count} of {num_episodes} episodes, leaving none "
                         "to train on: lower val_episodes (a fraction such as 0.1, a count, or 0) or add episodes.")
    order = np.random.default_rng(seed).permutation(num_episodes).tolist()
    return sorted(order[count:]), sorted(order[:count])


class CachedFrameDataset(torch.utils.data.Dataset):
    """RobotEpisodeDataset items whose camera images come from frames decoded once into RAM.

    Only the cameras the policy reads are cached (and returned). Everything else (state, action
    chunks and their padding, task) comes from a RobotEpisodeDataset whose reader is told about no
    cameras, so nothing is decoded per item.

    Args:
        reader: the opened dataset.
        episodes: episode indices to serve.
        action_chunk: actions per item.
        frames: {"observation.images.<cam>": [N, H, W, 3] uint8}, the episodes' frames in episode order
            (`decode_frames`).
    """

    def __init__(self, reader: LeRobotDatasetReader, episodes: list[int], action_chunk: int,
                 frames: dict[str, np.ndarray]) -> None:
        self.base = RobotEpisodeDataset(reader, action_chunk=action_chunk, episodes=episodes)
        # The frame columns are read above with the full feature table (image columns skipped); from
        # here on the base dataset sees a copy of the metadata without cameras and decodes nothing.
        features = {k: v for k, v in reader.features.items() if k not in reader.camera_keys}
        self.base.reader = LeRobotDatasetReader(reader.root, {**reader.info, "features": features}, reader.tasks,
                                                reader.episodes, reader.stats)
        self.frames = frames

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        for key, frames in self.frames.items():
            item[key] = torch.from_numpy(frames[i]).permute(2, 0, 1).float().div_(255.0)  # [3, H, W]
        return item


def decode_frames(reader: LeRobotDatasetReader, episodes: list[int], keys: tuple[str, ...]
                  ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Frames of the readable episodes (sorted), and the episodes that could not be read.

    Returns:
        ({key: [N, H, W, 3] uint8} in the order RobotEpisodeDataset indexes the readable episodes' frames,
         {episode: what was wrong} for the others).
    """
    frames = sum(int(reader.episodes[e]["length"]) for e in episodes)
    need = sum(frames * math.prod(reader.features[k]["shape"]) for k in keys)
    log.info("Caching %d frames x %d camera(s) in RAM as uint8: %.1f MiB", frames, len(keys), need / 2**20)
    out: dict[str, np.ndarray] = {}
    bad: dict[int, str] = {}
    start = 0
    for e, episode in _loaded_episodes(reader, episodes, bad, "decoding frames"):
        length = int(reader.episodes[e]["length"])
        for k in keys:
            if k not in out:  # sized from decoded frames: [H, W, 3] whatever order the feature's shape lists
                out[k] = np.empty((frames, *episode[k].shape[1:]), dtype=np.uint8)
            out[k][start:start + length] = episode[k]
        start += length
    return {k: v[:start] for k, v in out.items()}, bad


def readable_episodes(reader: LeRobotDatasetReader, episodes: list[int]) -> tuple[list[int], dict[int, str]]:
    """Split episodes into those whose every frame decodes and the others ({episode: what was wrong}).

    A full decoding pass (nothing is kept), for training that decodes per item and so would otherwise
    meet a broken episode only mid-run.
    """
    bad: dict[int, str] = {}
    good = [e for e, _ in _loaded_episodes(reader, episodes, bad, "checking frames")]
    return good, bad


def _loaded_episodes(reader: LeRobotDatasetReader, episodes: list[int], bad: dict[int, str], desc: str
                     ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, episode) for each episode that loads, in order; the others go into `bad` with the reason."""
    for e in tqdm(episodes, desc=desc, unit="episode", disable=len(episodes) < 20):
        try:
            yield e, reader.load_episode(e)
        except EpisodeReadError as err:
            log.warning("Skipping an unreadable episode: %s", err)
            bad[e] = str(err)


def policy_dataset(reader: LeRobotDatasetReader, episodes: list[int], action_chunk: int,
                   image_keys: tuple[str, ...], cache: bool) -> tuple[torch.utils.data.Dataset | None, dict[int, str]]:
    """The frames of `episodes` as policy training items, cached in RAM or decoded per item.

    Returns:
        (dataset of the readable episodes, or None when none is readable; {episode: what was wrong} for the
        episodes left out).
    """
    episodes = sorted(set(episodes))
    if cache:
        frames, bad = decode_frames(reader, episodes, image_keys)
        good = [e for e in episodes if e not in bad]
        return (CachedFrameDataset(reader, good, action_chunk, frames) if good else None), bad
    good, bad = readable_episodes(reader, episodes)
    return (RobotEpisodeDataset(reader, action_chunk=action_chunk, episodes=good) if good else None), bad


def check_bad_episodes(bad: dict[int, str], total: int, max_fraction: float) -> None:
    """Stop when more than `max_fraction` of `total` episodes could not be read.

    Raises:
        ValueError: naming how many episodes are bad, the first few and what was wrong with them.
    """
    if len(bad) <= max_fraction * total:
        return
    shown = "; ".join(bad[e] for e in sorted(bad)[:3])
    raise ValueError(f"{len(bad)} of {total} episodes cannot be read ({len(bad) / total:.1%} > max_bad_episodes "
                     f"{max_fraction:.1%}): {shown}. Restore or re-collect them, or raise max_bad_episodes to train "
                     "without them.")


def validation_indices(num_items: int, max_samples: int) -> list[int]:
    """Evenly spaced item indices (all of them when max_samples is 0 or large enough)."""
    if max_samples == 0 or num_items <= max_samples:
        return list(range(num_items))
    return np.linspace(0, num_items - 1, max_samples).round().astype(int).tolist()


@torch.no_grad()
def validate(policy: Any, dataset: torch.utils.data.Dataset, indices: list[int], batch_size: int,
             seed: int) -> dict[str, float]:
    """Action error and loss of `policy` on held-out items.

    Actions are compared in dataset units over the chunk's real (unpadded) steps. Flow-matching
    heads start from noise drawn from `seed`, and the loss's own random draws (flow time, noise)
    also come from it, so the figures are repeatable; the caller's RNG state is left untouched.

    Args:
        policy: the (unwrapped) VLAPolicy.
        dataset: items as RobotEpisodeDataset yields them.
        indices: which items to use.
        batch_size: items per forward.
        seed: seed of the noise.

    Returns:
        {"l1", "mse", "loss", "samples"} plus the policy's per-part losses as "loss_<part>".
    """
    collate = policy.collator()
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    abs_sum = sq_sum = weight = loss_sum = 0.0
    parts: dict[str, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for start in range(0, len(indices), batch_size):
            items = [dataset[i] for i in indices[start:start + batch_size]]
            batch = send_to_device(collate(items), device)
            loss, metrics = policy.compute_loss(batch)
            loss_sum += float(loss) * len(items)
            for key, value in metrics.items():
                parts[key] = parts.get(key, 0.0) + float(value) * len(items)
            truth = torch.stack([it["action"] for it in items]).float()  # [B, chunk, A], dataset units
            noise = torch.randn(truth.shape, generator=gen)
            pred = policy.predict_action_chunk(_observations(items), noise=noise.to(device)).float().cpu()
            valid = (~torch.stack([it["action_is_pad"] for it in items]))[..., None].float()  # [B, chunk, 1]
            abs_sum += float(((pred - truth).abs() * valid).sum())
            sq_sum += float(((pred - truth) ** 2 * valid).sum())
            weight += float(valid.sum()) * truth.shape[-1]
    policy.train(was_training)
    n = max(1, len(indices))
    out = {"l1": abs_sum / max(weight, 1.0), "mse": sq_sum / max(weight, 1.0), "loss": loss_sum / n,
           "samples": len(indices)}
    out.update({f"loss_{k}": v / n for k, v in parts.items() if k != "loss"})
    return out


def _observations(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batched observation dict (LeRobot names: images, state, task) from dataset items.

    It stays on the CPU: the policy's collator turns it into a prompt batch there, as at evaluation.
    """
    obs: dict[str, Any] = {"task": [it["task"] for it in items]}
    for key in items[0]:
        if key.startswith("observation."):
            obs[key] = torch.stack([it[key] for it in items])
    return obs

