"""Training data order with a resumable position, and the collate step.

The order of samples is a pure function of (seed, epoch): every epoch is a fresh permutation of the
dataset drawn from its own generator, cut into *global* micro-batches of `batch_size * world_size`
samples; process `rank` takes its slice of each. So

* the samples seen at a step do not depend on how many processes share the work (one process with
  batch 8 sees exactly what two processes with batch 4 see together), and
* the position in the stream is two integers, (epoch, index of the next micro-batch), which a
  checkpoint stores and a resumed run jumps to without replaying the data.

Incomplete global micro-batches at the end of an epoch are dropped, so every step has the same shape
on every process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)


@dataclass
class StreamPosition:
    """Where the data stream stands: the epoch and the index of the next micro-batch in it."""

    epoch: int = 0
    index: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-friendly form for the checkpoint's trainer state."""
        return {"epoch": self.epoch, "index": self.index}


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this process's micro-batches of one epoch, starting at `position.index`.

    Args:
        num_samples: dataset length.
        batch_size: per-process micro-batch size.
        world_size: number of processes sharing each global micro-batch.
        rank: this process's slot in each global micro-batch.
        seed: base seed; epoch e uses permutation seed `seed + e`.
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.position = StreamPosition()
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{num_samples} training samples cannot fill one global micro-batch of "
                f"{batch_size * world_size} (batch_size {batch_size} x {world_size} processes): "
                "lower batch_size or add data."
            )

    @property
    def batches_per_epoch(self) -> int:
        """Full global micro-batches per epoch."""
        return self.num_samples // (self.batch_size * self.world_size)

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of sample indices used in `epoch`."""
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order(self.position.epoch)
        per_step = self.batch_size * self.world_size
        for i in range(self.position.index, self.batches_per_epoch):
            start = i * per_step + self.rank * self.batch_size
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.position.index


class BatchStream:
    """An endless iterator of collated micro-batches over epochs that knows its position.

    Only batches handed out count as consumed (worker prefetching does not move the position), so a
    checkpoint taken between steps resumes exactly at the next unseen micro-batch.
    """

    def __init__(self, loader: DataLoader, sampler: ResumableBatchSampler):
        self.loader = loader
        self.sampler = sampler
        self._iter: Iterator | None = None

    @property
    def position(self) -> StreamPosition:
        """The position of the next micro-batch."""
        return self.sampler.position

    def seek(self, epoch: int, index: int) -> None:
        """Continue from micro-batch `index` of `epoch` (what a checkpoint recorded)."""
        self.sampler.position = StreamPosition(epoch, index)
        self._iter = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, Any]:
        pos = self.sampler.position
        if pos.index >= self.sampler.batches_per_epoch:
            self.sampler.position = StreamPosition(pos.epoch + 1, 0)
            self._iter = None
        if self._iter is None:
            # The sampler reads its position when the loader (re)starts iterating it.
            self._iter = iter(self.loader)
        batch = next(self._iter)
        self.sampler.position.index += 1
        return batch


class ChatCollator:
    """Turns dataset items into one model batch with the backbone's own chat template.

    Items that failed to load (None) are dropped; a micro-batch where all failed raises, since the
    processes of a distributed run must all take every step.

    Args:
        collate: the backbone's `collate(examples, max_length=...)`.
        example_type: the backbone's ChatExample class.
        max_length: token limit per sample.
    """

    def __init__(self, collate: Callable[..., dict], example_type: type, max_length: int):
        self.collate = collate
        self.example_type = example_type
        self.max_length = max_length

    def __call__(self, items: list[dict | None]) -> dict[str, Any]:
        kept = [it for it in items if it is not None]
        if not kept:
            raise ValueError(f"All {len(items)} samples of a micro-batch failed to load; check the pool's images.")
        examples = [self.example_type(images=it["images"], messages=it["messages"]) for it in kept]
        return self.collate(examples, max_length=self.max_length)


def make_stream(dataset: Dataset, collator: ChatCollator, batch_size: int, world_size: int, rank: int,
                seed: int, num_workers: int) -> BatchStream:
    """A resumable stream of collated micro-batches for this process.

    Args:
        dataset: items as VLMChatDataset yields them.
        collator: builds the model batch (runs in the worker processes).
        batch_size: per-process micro-batch size.
        world_size: processes sharing each global micro-batch.
        rank: this process's index.
        seed: data-order seed.
        num_workers: DataLoader worker processes (0 = collate in this process).

    Returns:
        A BatchStream positioned at epoch 0, micro-batch 0.
    """
    sampler = ResumableBatchSampler(len(dataset), batch_size, world_size, rank, seed)
    # A private generator: iterating a DataLoader draws a worker base seed, which must not come from
    # the global torch RNG (that would shift dropout after a resume that restarts the iterator).
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collator, num_workers=num_workers,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    return BatchStream(loader, sampler)
