"""Policy server under load on loopback: latency, throughput, batching speed-up, overhead, correctness.

    python benchmarks/bench_serve.py [--head pi0] [--clients 1 4 16] [--requests 10] [--max-batch 16]
                                     [--wait-ms 5] [--threads 2]

A random-weight policy on the tiny default VLM (latency does not depend on the weights) is served by
`vlm2vla serve` in its own process, twice: batching up to --max-batch, and batch size 1. For each
number of clients N, N threads each open one connection and send --requests observations one after
the other (each its own image, state, instruction and start noise). It prints, per server and N:

    p50 / p99    request latency as a client sees it (send -> reply), ms
    req/s        requests answered per second of wall time
    mean batch   requests per forward on the server
    wrong, lost  replies that differ from the in-process actions for that request (atol 1e-4), and
                 requests with no reply: both must be 0

then the speed-up of batching (throughput at the largest N, batched vs batch size 1) and the serving
overhead: one client's mean latency over the in-process `predict_action_chunk` of the same
observations (same process count, measured in this run). Server and clients share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from websockets.sync.client import connect

from vlm2vla.backbones import VLMBackbone, build_tiny_vlm
from vlm2vla.policies import VLAConfig, VLAPolicy
from vlm2vla.serving import codec
from vlm2vla.serving.layout import ObservationLayout
from vlm2vla.serving.server import ENDPOINT_FILE, read_endpoint

logger = logging.getLogger("bench_serve")
IMAGE = 128
TASKS = ("open the drawer", "push the button", "pick up the red block", "close the window")


def make_policy(folder: Path, head: str) -> Path:
    """Save a random-weight policy on the tiny default VLM; returns its folder."""
    vlm = build_tiny_vlm(folder / "vlm", [f"{t} {i}" for t in TASKS for i in range(50)])
    config = VLAConfig(head=head)
    stats = config.fake_stats()
    features = {"observation.images.corner2": {"dtype": "video", "shape": [IMAGE, IMAGE, 3]},
                "observation.state": {"dtype": "float32", "shape": [config.state_dim]}}
    torch.manual_seed(0)
    return VLAPolicy.build(config, VLMBackbone.from_pretrained(str(vlm)), stats, features).save_pretrained(
        folder / "policy")


def workload(layout: ObservationLayout, clients: int, requests: int) -> list[list[dict]]:
    """Per client, its requests: distinct frames, states, instructions and noise."""
    out = []
    for c in range(clients):
        rng = np.random.default_rng(1000 + c)
        batch = {"observation.images.corner2": rng.integers(0, 256, (requests, IMAGE, IMAGE, 3), dtype=np.uint8),
                 "observation.state": rng.standard_normal((requests, layout.state_dim)).astype(np.float32),
                 "task": [TASKS[(c + k) % len(TASKS)] for k in range(requests)]}
        noise = rng.standard_normal((requests, layout.chunk_size, layout.action_dim)).astype(np.float32)
        out.append([layout.request(batch, k, noise[k]) for k in range(requests)])
    return out


def in_process(policy: VLAPolicy, message: dict) -> tuple[np.ndarray, float]:
    """The policy's own actions for one request and the seconds they took."""
    batch = {"observation.images.corner2": message["observation/images/corner2"][None],
             "observation.state": message["observation/state"][None], "task": [message["prompt"]]}
    start = time.perf_counter()
    actions = policy.predict_action_chunk(batch, noise=torch.from_numpy(message["noise"][None]))
    return actions[0].numpy(), time.perf_counter() - start


class Server:
    """`vlm2vla serve` in a subprocess on a free loopback port."""

    def __init__(self, policy: Path, run_dir: Path, max_batch: int, wait_ms: float) -> None:
        self.run_dir = run_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vlm2vla.cli", "--log-level", "WARNING", "serve", f"run_dir={run_dir}",
             f"policy.path={policy}", "port=0", f"max_batch_size={max_batch}", f"max_wait_ms={wait_ms}"])
        deadline = time.time() + 300
        while not (run_dir / ENDPOINT_FILE).is_file():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        self.url = read_endpoint(run_dir)

    def stop(self) -> dict:
        """SIGTERM, then the counts the server recorded."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        return json.loads((self.run_dir / "manifest.json").read_text())["metrics"]


def load(url: str, jobs: list[list[dict]], expected: list[list[np.ndarray]]) -> dict:
    """Run every client's requests concurrently; latencies, wrong and lost replies."""
    latencies: list[float] = []
    wrong, answered = [0], [0]
    lock = threading.Lock()
    barrier = threading.Barrier(len(jobs))

    def client(c: int) -> None:
        with connect(url, compression=None, max_size=None) as ws:
            codec.unpackb(ws.recv())  # metadata
            barrier.wait()
            for k, message in enumerate(jobs[c]):
                data = codec.packb(message)
                start = time.perf_counter()
                ws.send(data)
                reply = ws.recv(timeout=120)
                took = time.perf_counter() - start
                ok = not isinstance(reply, str) and np.allclose(codec.unpackb(reply)["actions"], expected[c][k],
                                                                atol=1e-4)
                with lock:
                    latencies.append(took)
                    answered[0] += 1
                    wrong[0] += not ok

    threads = [threading.Thread(target=client, args=(c,)) for c in range(len(jobs))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    total = sum(len(j) for j in jobs)
    ms = sorted(x * 1000 for x in latencies)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "mean": statistics.fmean(ms), "rps": len(ms) / wall, "wrong": wrong[0], "lost": total - answered[0]}


def main() -> None:
    """Serve, load, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--head", default="pi0", choices=["pi0", "gr00t", "vlm4vla"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("vlm2vla").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_policy(Path(tmp), args.head)
        policy = VLAPolicy.from_pretrained(folder)
        layout = ObservationLayout.of_policy(policy.config, policy.input_features)
        jobs = workload(layout, max(args.clients), args.requests)
        expected, own = [], []
        for messages in jobs:
            pairs = [in_process(policy, m) for m in messages]
            expected.append([a for a, _ in pairs])
            own.extend(s for _, s in pairs)
        in_process_ms = statistics.fmean(own[len(jobs[0]):]) * 1000  # the first client's warm-up left out
        del policy
        logger.info("== %s head on the tiny default, loopback, %d requests per client, %d torch threads",
                    args.head, args.requests, args.threads)
        logger.info("%-16s %7s %9s %9s %9s %10s %6s %5s", "server", "clients", "p50 ms", "p99 ms", "req/s",
                    "mean batch", "wrong", "lost")
        throughput = {}
        one_client = None
        for max_batch in (args.max_batch, 1):
            server = Server(folder, Path(tmp) / f"serve-{max_batch}", max_batch, args.wait_ms)
            try:
                load(server.url, [jobs[0][:2]], [expected[0][:2]])  # warm-up
                before = 2
                for n in args.clients:
                    result = load(server.url, jobs[:n], expected[:n])
                    metrics = server_batches(server)
                    batches, before = metrics - before, metrics
                    mean_batch = n * args.requests / max(batches, 1)
                    throughput[(max_batch, n)] = result["rps"]
                    if n == 1 and max_batch == args.max_batch:
                        one_client = result["mean"]
                    logger.info("%-16s %7d %9.1f %9.1f %9.1f %10.2f %6d %5d", f"max_batch={max_batch}", n,
                                result["p50"], result["p99"], result["rps"], mean_batch, result["wrong"],
                                result["lost"])
            finally:
                server.stop()
        top = max(args.clients)
        logger.info("batching speed-up at %d clients: %.2fx the throughput of batch size 1",
                    top, throughput[(args.max_batch, top)] / throughput[(1, top)])
        if one_client is not None:
            logger.info("serving overhead, 1 client: %.1f ms per request vs %.1f ms in-process = %.2fx",
                        one_client, in_process_ms, one_client / in_process_ms)


def server_batches(server: Server) -> int:
    """Forwards the server has run so far (its {"stats": true} control message)."""
    with connect(server.url, compression=None, max_size=None) as ws:
        codec.unpackb(ws.recv())
        ws.send(codec.packb({"stats": True}))
        reply = ws.recv(timeout=30)
    return int(codec.unpackb(reply)["batches"]) if not isinstance(reply, str) else -1


if __name__ == "__main__":
    main()
