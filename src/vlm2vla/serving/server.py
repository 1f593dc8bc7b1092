"""`vlm2vla serve`: a trained policy behind openpi's websocket protocol, with requests batched across clients.

    vlm2vla serve policy.path=runs/train-policy host=0.0.0.0 port=8000
    python -c "from openpi_client.websocket_client_policy import WebsocketClientPolicy as C; \\
               print(C('localhost', 8000).get_server_metadata())"

Protocol (openpi's): a client opens ws://host:port and receives one metadata message (the policy's
config, cameras, the request layout of serving/layout.py, the chunk size); then every binary message it
sends is one observation and is answered by one action chunk, both msgpack with NumPy arrays
(serving/codec.py). Actions come back in robot units: the checkpoint's normaliser runs inside the
server. GET /healthz answers 200 "OK" while serving and 503 while shutting down.

Requests from all connections that arrive within `max_wait_ms` of each other run as one forward of at
most `max_batch_size` (serving/batching.py). Each connection has its own start-noise stream for
flow-matching experts, seeded with `seed` on connect and on a {"reset": true} message, so one client
gets exactly the actions `vlm2vla eval policy.type=vla seed=<seed>` computes in-process.

Errors go to the client that caused them, as a text frame saying what was wrong, and the server keeps
serving: undecodable msgpack, a request that breaks the layout, a message over `max_message_mb` (the
connection is closed with code 1009 and the limit), a missing or wrong API key (HTTP 401 at connect).
On SIGTERM or SIGINT the server refuses new connections (HTTP 503 with the reason), answers the requests
already queued, then closes every connection with code 1001.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import itertools
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from vlm2vla.config import config_to_dict
from vlm2vla.fileio import atomic_write_json
from vlm2vla.runs import Run
from vlm2vla.serving import codec
from vlm2vla.serving.batching import MicroBatcher
from vlm2vla.serving.layout import ACTIONS, RESET, STATS, ObservationLayout, RequestError

log = logging.getLogger(__name__)

PROTOCOL = "openpi-websocket-msgpack-numpy"
ENDPOINT_FILE = "endpoint.json"


@dataclass(frozen=True)
class ServedPolicyConfig:
    """Which policy to serve and how it runs."""

    # a saved policy folder (<train-policy run>/policy, checkpoints/step-N/model) or a train-policy run directory
    path: str | None = None
    # torch device ("" = cuda when available, else cpu)
    device: str = ""
    # Euler steps of flow-matching experts (0 = the policy config's)
    num_steps: int = 0


@dataclass(frozen=True)
class ServeConfig:
    """Settings of a policy server."""

    # run directory: config, manifest (request and batch counts when the server stops), endpoint.json
    run_dir: str = "runs/serve"
    # the policy
    policy: ServedPolicyConfig = field(default_factory=ServedPolicyConfig)
    # interface to listen on (0.0.0.0: every interface; keep 127.0.0.1 unless clients are on other machines)
    host: str = "127.0.0.1"
    # port (0 = any free port; the one chosen is written to <run_dir>/endpoint.json)
    port: int = 8000
    # most requests stacked into one forward
    max_batch_size: int = 16
    # how long the first request of a batch waits for others (milliseconds; 0 = batch only what is queued)
    max_wait_ms: float = 5.0
    # largest message a client may send, in MiB (a 224x224 RGB frame is 0.14 MiB); larger ones close the connection
    max_message_mb: float = 8.0
    # environment variable holding the API key clients must send ("Authorization: Api-Key <key>", as
    # openpi_client's api_key does); "" = no key. The key itself never goes into the saved config.
    api_key_env: str = ""
    # seed of each connection's start-noise stream (flow-matching experts), restarted by {"reset": true}
    seed: int = 0
    # request keys renamed before checking (client key -> layout key),
    # e.g. {observation/image: observation/images/corner2}
    aliases: dict[str, str] = field(default_factory=dict)
    # on SIGTERM, how long queued requests may take to finish before connections are closed anyway (seconds)
    shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.policy.path:
            raise ValueError("serve needs policy.path=<policy folder or train-policy run directory>")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_batch_size < 1 or self.max_wait_ms < 0 or self.max_message_mb <= 0:
            raise ValueError("need max_batch_size >= 1, max_wait_ms >= 0 and max_message_mb > 0")


@dataclass
class _Connection:
    """Per-connection state: its noise stream and counters."""

    id: int
    address: str
    generator: torch.Generator
    requests: int = 0


class PolicyServer:
    """Serves one loaded VLAPolicy (see the module docstring); `await server.run()` until `shutdown()`.

    Args:
        policy: the loaded policy, on its device, in eval mode.
        cfg: the server settings.
        source: where the policy was loaded from (reported in the metadata).
    """

    def __init__(self, policy: Any, cfg: ServeConfig, source: str = "") -> None:
        self.policy = policy
        self.cfg = cfg
        self.layout = ObservationLayout.of_policy(policy.config, policy.input_features, cfg.aliases)
        self.api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        if cfg.api_key_env and not self.api_key:
            raise ValueError(f"api_key_env={cfg.api_key_env} but that environment variable is empty or unset: "
                             f"export {cfg.api_key_env}=<key>, or drop api_key_env to serve without a key")
        self.metadata = self._metadata(source)
        self.batcher = MicroBatcher(self._predict, cfg.max_batch_size, cfg.max_wait_ms / 1000)
        self.draining = False
        self.stats = {"connections": 0, "requests": 0, "errors": 0, "refused": 0}
        self._ids = itertools.count()
        self._server: Server | None = None
        self._stopped: asyncio.Event | None = None
        self.port: int | None = None

    # ----------------------------------------------------------------------------- lifecycle
    async def run(self, ready: asyncio.Event | None = None, handle_signals: bool = True) -> None:
        """Listen until `shutdown()` (or SIGTERM / SIGINT when `handle_signals`)."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        batching = asyncio.create_task(self.batcher.run())
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda s=sig: asyncio.ensure_future(self.shutdown(s.name)))
        async with serve(self._handle, self.cfg.host, self.cfg.port, compression=None,
                         max_size=int(self.cfg.max_message_mb * 2**20), process_request=self._process_request
                         ) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            log.info("Serving %s on ws://%s:%d (batch <= %d, wait %.1f ms)", self.metadata["policy"]["head"],
                     self.cfg.host, self.port, self.cfg.max_batch_size, self.cfg.max_wait_ms)
            if ready is not None:
                ready.set()
            await self._stopped.wait()
        batching.cancel()
        await asyncio.gather(batching, return_exceptions=True)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def shutdown(self, reason: str = "shutdown") -> None:
        """Refuse new connections, finish the queued requests, then close every connection (code 1001)."""
        if self.draining:
            return
        self.draining = True
        log.info("%s: refusing new connections, finishing queued requests", reason)
        if not await self.batcher.drain(self.cfg.shutdown_timeout_s):
            log.warning("Requests still queued after %.0f s; closing connections anyway", self.cfg.shutdown_timeout_s)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    # ----------------------------------------------------------------------------- connections
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Health checks, refusal while shutting down, and the API key: before the websocket handshake."""
        if request.path == "/healthz":
            if self.draining:
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.draining:
            self.stats["refused"] += 1
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "The policy server is shutting down and takes no new connections; "
                                      "connect to another server or retry when it is back.\n")
        if self.api_key:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Api-Key {self.api_key}".encode()):
                self.stats["refused"] += 1
                log.warning("Refused %s: %s API key", connection.remote_address, "wrong" if sent else "no")
                return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          f"{'Wrong' if sent else 'Missing'} API key: send the header "
                                          "'Authorization: Api-Key <key>' (openpi_client: "
                                          "WebsocketClientPolicy(host, port, api_key=<key>)).\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        conn = _Connection(next(self._ids), str(websocket.remote_address),
                           torch.Generator().manual_seed(self.cfg.seed))
        self.stats["connections"] += 1
        log.info("Connection %d from %s", conn.id, conn.address)
        try:
            await websocket.send(codec.packb(self.metadata))
            async for message in websocket:
                try:
                    reply = await self._answer(conn, message)
                except (RequestError, codec.DecodeError) as err:
                    self.stats["errors"] += 1
                    log.info("Connection %d: bad request: %s", conn.id, err)
                    await websocket.send(f"Bad request: {err}")
                    continue
                except Exception as err:  # the policy failed on a checked request: a server error, said so
                    self.stats["errors"] += 1
                    log.exception("Connection %d: the policy failed", conn.id)
                    await websocket.send(f"Server error while predicting: {type(err).__name__}: {err}")
                    continue
                await websocket.send(codec.packb(reply))
        except ConnectionClosed as closed:
            # a client that leaves mid-request only loses its own reply
            log.info("Connection %d closed (%s)", conn.id, closed)
        finally:
            log.info("Connection %d done after %d requests", conn.id, conn.requests)

    async def _answer(self, conn: _Connection, message: Any) -> dict[str, Any]:
        if isinstance(message, str):
            raise RequestError("send observations as binary msgpack frames (openpi_client.msgpack_numpy.packb), "
                               "not text")
        start = time.perf_counter()
        request = codec.unpackb(message)
        if isinstance(request, dict) and request.get(RESET) is True:
            conn.generator.manual_seed(self.cfg.seed)
            return {RESET: True}
        if isinstance(request, dict) and request.get(STATS) is True:
            return self.counts()
        if self.draining:
            raise RequestError("the server is shutting down and takes no new requests")
        item, noise = self.layout.check(request)
        if noise is None:  # this connection's stream, so one client sees what in-process evaluation computes
            noise = torch.randn(self.layout.chunk_size, self.layout.action_dim, generator=conn.generator).numpy()
        (actions, infer_s), waited = await self.batcher.submit((item, noise))
        conn.requests += 1
        self.stats["requests"] += 1
        return {ACTIONS: actions, "server_timing": {"infer_ms": infer_s * 1000, "queue_ms": waited * 1000,
                                                    "total_ms": (time.perf_counter() - start) * 1000}}

    def counts(self) -> dict[str, Any]:
        """Connections, requests, errors, refusals, forwards run and how many of each batch size."""
        sizes = self.batcher.batch_sizes
        return {**self.stats, "batches": sum(sizes.values()),
                "batch_sizes": {str(k): v for k, v in sorted(sizes.items())}}

    # ----------------------------------------------------------------------------- the model
    def _predict(self, requests: list[tuple[dict[str, Any], np.ndarray]]) -> list[Any]:
        """One forward over stacked requests (runs in the batcher's worker thread). If it fails, each request
        runs alone, so a request the policy cannot take fails by itself, not the others stacked with it."""
        try:
            return self._forward(requests)
        except Exception:
            if len(requests) == 1:
                raise
        out: list[Any] = []
        for request in requests:
            try:
                out.extend(self._forward([request]))
            except Exception as err:
                out.append(err)
        return out

    def _forward(self, requests: list[tuple[dict[str, Any], np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        start = time.perf_counter()
        items = [item for item, _ in requests]
        # lists, not stacked arrays: frames of a policy that records no size may differ between requests
        batch: dict[str, Any] = {k: [it[k] for it in items] for k in items[0]}
        noise = torch.from_numpy(np.stack([n for _, n in requests])).to(self.policy.device)
        num_steps = self.cfg.policy.num_steps or None
        actions = self.policy.predict_action_chunk(batch, noise=noise, num_steps=num_steps)
        out = actions.float().cpu().numpy().astype(np.float32)
        elapsed = time.perf_counter() - start
        return [(row, elapsed) for row in out]

    def _metadata(self, source: str) -> dict[str, Any]:
        config = self.policy.config
        return {"protocol": PROTOCOL, "server": "vlm2vla",
                "policy": {"head": config.head, "path": source, "config": config_to_dict(config)},
                "cameras": list(config.cameras), "state_dim": config.state_dim, "action_dim": config.action_dim,
                "chunk_size": config.chunk_size, "n_action_steps": config.n_action_steps,
                "prompt_format": config.prompt, "layout": self.layout.describe(),
                "max_message_bytes": int(self.cfg.max_message_mb * 2**20), "max_batch_size": self.cfg.max_batch_size}


def load_policy(cfg: ServedPolicyConfig) -> tuple[Any, str]:
    """The VLAPolicy at cfg.path (a policy folder or a train-policy run directory), on its device."""
    from vlm2vla.evaluation.policy_interface import PolicyConfig, resolve_policy_config
    from vlm2vla.policies.policy import VLAPolicy

    resolved = resolve_policy_config(PolicyConfig(type="vla", path=cfg.path))
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return VLAPolicy.from_pretrained(resolved.path).to(device).eval(), str(resolved.path)


def serve_policy(cfg: ServeConfig, run: Run) -> dict[str, Any]:
    """The `serve` stage: load the policy, serve it until SIGTERM / SIGINT, record the counts in the manifest."""
    policy, source = load_policy(cfg.policy)
    if policy.input_features is None:
        log.warning("%s does not record its training images' size (trained before it was saved): requests of any "
                    "H x W are accepted", source)
    server = PolicyServer(policy, cfg, source)
    run.update(inputs={"policy": source})

    async def main() -> None:
        ready = asyncio.Event()
        serving = asyncio.create_task(server.run(ready))
        await ready.wait()
        url = f"ws://{cfg.host}:{server.port}"
        atomic_write_json(run.dir / ENDPOINT_FILE, {"url": url, "pid": os.getpid()})
        run.update(outputs={"endpoint": url})
        await serving

    asyncio.run(main())
    stats = server.counts()
    log.info("Server stopped: %s", json.dumps(stats))
    run.finish(metrics=stats)
    return stats


def read_endpoint(run_dir: str | Path) -> str:
    """The ws:// URL a `serve` run in `run_dir` listens on (from its endpoint.json)."""
    return json.loads((Path(run_dir) / ENDPOINT_FILE).read_text())["url"]
