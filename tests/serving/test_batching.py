"""The micro-batcher: concurrent requests share a call, each gets its own result, a failure stays in its batch."""

import asyncio
import threading

import pytest

from vlm2vla.serving.batching import MicroBatcher


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_stacked_and_answered_in_order():
    calls = []

    def square(items):
        calls.append(list(items))
        return [x * x for x in items]

    async def main():
        batcher = MicroBatcher(square, max_batch_size=4, max_wait_s=0.05)
        runner = asyncio.create_task(batcher.run())
        results = await asyncio.gather(*(batcher.submit(x) for x in range(10)))
        runner.cancel()
        return batcher, [r for r, _ in results]

    batcher, results = _run(main())
    assert results == [x * x for x in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]  # max_batch_size holds
    assert sorted(x for c in calls for x in c) == list(range(10))
    assert batcher.batch_sizes == {4: 2, 2: 1}


def test_without_waiting_a_lone_request_runs_alone():
    async def main():
        batcher = MicroBatcher(lambda items: items, max_batch_size=8, max_wait_s=0.0)
        runner = asyncio.create_task(batcher.run())
        for x in range(3):
            await batcher.submit(x)
        runner.cancel()
        return batcher

    assert _run(main()).batch_sizes == {1: 3}


def test_requests_queued_during_a_forward_form_the_next_batch():
    release = threading.Event()
    sizes = []

    def slow(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            release.wait(5)
        return items

    async def main():
        batcher = MicroBatcher(slow, max_batch_size=16, max_wait_s=0.0)
        runner = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.05)  # the first batch is computing
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *rest)
        runner.cancel()

    _run(main())
    assert sizes == [1, 5]


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    def fragile(items):
        if "bad" in items:
            raise RuntimeError("forward failed")
        return items

    async def main():
        batcher = MicroBatcher(fragile, max_batch_size=2, max_wait_s=0.05)
        runner = asyncio.create_task(batcher.run())
        failed = await asyncio.gather(batcher.submit("bad"), batcher.submit("x"), return_exceptions=True)
        ok = await batcher.submit("y")
        assert await batcher.drain(1.0)
        runner.cancel()
        return failed, ok

    failed, ok = _run(main())
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert ok[0] == "y"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda x: x, max_batch_size=0)


def test_an_exception_as_one_result_fails_that_request_alone():
    def picky(items):
        return [ValueError(f"cannot take {x}") if x < 0 else x for x in items]

    async def main():
        batcher = MicroBatcher(picky, max_batch_size=4, max_wait_s=0.05)
        runner = asyncio.create_task(batcher.run())
        out = await asyncio.gather(*(batcher.submit(x) for x in (1, -1, 2)), return_exceptions=True)
        runner.cancel()
        return out

    good, bad, other = _run(main())
    assert good[0] == 1 and other[0] == 2
    assert isinstance(bad, ValueError) and "cannot take -1" in str(bad)
