"""The resumable sampler and batch stream: order by (seed, epoch), rank split, exact resume."""

from __future__ import annotations

import pytest
import torch

from vlm2vla.training.data import BatchStream, ResumableBatchSampler


def _batches(sampler: ResumableBatchSampler) -> list[list[int]]:
    return list(iter(sampler))


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = ResumableBatchSampler(20, 4, seed=3), ResumableBatchSampler(20, 4, seed=3)
    assert a.epoch_order(0) == b.epoch_order(0)
    assert a.epoch_order(0) != a.epoch_order(1)
    assert sorted(a.epoch_order(1)) == list(range(20))


def test_ranks_split_the_same_global_batches_as_one_process():
    one = _batches(ResumableBatchSampler(21, 4, world_size=1, seed=0))
    r0 = _batches(ResumableBatchSampler(21, 2, world_size=2, rank=0, seed=0))
    r1 = _batches(ResumableBatchSampler(21, 2, world_size=2, rank=1, seed=0))
    assert len(one) == len(r0) == len(r1) == 5  # 21 // 4, the incomplete last batch dropped
    assert [a + b for a, b in zip(r0, r1, strict=True)] == one


def test_stream_resumes_at_the_recorded_position_across_epochs():
    dataset = list(range(10))

    def stream() -> BatchStream:
        sampler = ResumableBatchSampler(len(dataset), 3, seed=1)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=list)
        return BatchStream(loader, sampler)

    full = stream()
    expected = [next(full) for _ in range(8)]  # 3 batches per epoch: crosses two epoch boundaries
    first = stream()
    head = [next(first) for _ in range(4)]
    pos = first.position.as_dict()
    assert pos == {"epoch": 1, "index": 1}
    resumed = stream()
    resumed.seek(**pos)
    assert head + [next(resumed) for _ in range(4)] == expected


def test_too_little_data_for_one_batch_says_so():
    with pytest.raises(ValueError, match="cannot fill one global micro-batch"):
        ResumableBatchSampler(3, 2, world_size=2)
