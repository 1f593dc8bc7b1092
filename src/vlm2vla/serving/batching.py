"""Micro-batching: requests that arrive close together share one model forward.

    batcher = MicroBatcher(predict_many, max_batch_size=16, max_wait_s=0.005)
    task = asyncio.create_task(batcher.run())
    result = await batcher.submit(request)   # from any number of connection handlers

The model runs in one worker thread, so the event loop keeps reading and decoding requests while a
batch computes; whatever queued meanwhile forms the next batch, which is why throughput grows with
the number of clients. Written by hand because the serving libraries that batch (Ray Serve, Triton,
TorchServe) are whole deployment systems, far more than one websocket server needs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects requests for at most `max_wait_s` after the first (or until `max_batch_size`), then calls
    `fn(items) -> results` (one result per item, in order; an exception as an item's result fails that
    request alone) in a worker thread.

    Attributes:
        batch_sizes: how many batches of each size ran.
        in_flight: requests in the batch computing now.
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch_size: int = 16,
                 max_wait_s: float = 0.005) -> None:
        if max_batch_size < 1 or max_wait_s < 0:
            raise ValueError(f"need max_batch_size >= 1 and max_wait_s >= 0, got {max_batch_size}, {max_wait_s}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.batch_sizes: Counter[int] = Counter()
        self.in_flight = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self._idle = asyncio.Event()
        self._idle.set()

    async def submit(self, item: Any) -> tuple[Any, float]:
        """Queue one request; returns (its result, seconds it waited before its batch started)."""
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        self._idle.clear()
        await self._queue.put(pending)
        return await pending.future

    async def run(self) -> None:
        """Form and run batches until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = await self._collect(loop)
                if not batch:  # every client in it left before it ran
                    if self._queue.empty():
                        self._idle.set()
                    continue
                started = time.perf_counter()
                self.in_flight = len(batch)
                try:
                    results = await loop.run_in_executor(self._executor, self.fn, [p.item for p in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} "
                                           "requests")
                except Exception as err:  # a failed forward fails its batch, not the server
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(err)
                else:
                    for p, result in zip(batch, results, strict=True):
                        if p.future.done():  # its client has gone
                            continue
                        if isinstance(result, BaseException):
                            p.future.set_exception(result)
                        else:
                            p.future.set_result((result, started - p.queued))
                finally:
                    self.batch_sizes[len(batch)] += 1
                    self.in_flight = 0
                    if self._queue.empty():
                        self._idle.set()
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued request has been answered; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending]:
        """The next batch: the first request, then whatever arrives within max_wait_s, up to the maximum."""
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.cancelled()]
