"""What the serving tests share: saved-policy settings, requests in the served layout, a server in a thread."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from vlm2vla.serving.server import PolicyServer

TEXTS = ("open the drawer", "push the button", "pick up the red block", "reach the goal")
IMAGE = 40  # the training frames' size the saved policies record


def _stats(dim: int, low: float, high: float, mean: float, std: float) -> dict[str, np.ndarray]:
    lo, hi = np.full(dim, low), np.full(dim, high)
    return {"min": lo, "max": hi, "mean": np.full(dim, mean), "std": np.full(dim, std), "q01": lo, "q99": hi,
            "count": np.array([100])}


# Dataset units that normalisation changes (state mean 10 / std 3, actions in [-3, 5]): a server that
# skipped the normaliser would answer other numbers than the in-process policy.
STATS = {"observation.state": _stats(4, 1.0, 19.0, 10.0, 3.0), "action": _stats(4, -3.0, 5.0, 1.0, 2.0)}
FEATURES = {"observation.images.front": {"dtype": "video", "shape": [IMAGE, IMAGE, 3]},
            "observation.state": {"dtype": "float32", "shape": [4]}, "action": {"dtype": "float32", "shape": [4]}}


def observation(seed: int = 0, prompt: str = "open the drawer", size: int = IMAGE) -> dict:
    """One request in the served layout (openpi's flat keys)."""
    rng = np.random.default_rng(seed)
    return {"observation/images/front": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation/state": rng.uniform(4.0, 16.0, 4).astype(np.float32), "prompt": prompt}


def as_batch(request: dict) -> dict:
    """The same observation as an in-process eval batch of one."""
    return {"observation.images.front": request["observation/images/front"][None],
            "observation.state": request["observation/state"][None], "task": [request["prompt"]]}


class RunningServer:
    """A PolicyServer on 127.0.0.1, in its own thread and event loop."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main() -> None:
            started = asyncio.Event()
            task = asyncio.create_task(server.run(started, handle_signals=False))
            await started.wait()
            ready.set()
            await task

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(60), "the server did not start"
        self.port = server.port
        self.url = f"ws://127.0.0.1:{self.port}"

    def shutdown(self, wait: bool = True) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.shutdown("test"), self.loop)
        if wait:
            future.result(60)
            self.thread.join(60)
