"""The "remote" evaluation policy: the rollout engine's Policy interface over a `vlm2vla serve` server.

    vlm2vla serve policy.path=runs/train-policy port=8000 &
    vlm2vla eval policy.type=remote policy.url=ws://gpu-host:8000 tasks=[reach]

Many evaluation processes, on many machines, can drive one GPU server this way. The rows of a batch go
out as separate requests over one connection each, all sent before any reply is read, so the server
stacks them into one forward. The start noise of flow-matching experts is drawn here from the same
stream `policy.type=vla` draws in-process (seeded with the evaluation's seed) and sent with each
request, so a remote evaluation reproduces an in-process one on the same seeds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig
from vlm2vla.serving import codec
from vlm2vla.serving.layout import ACTIONS, ObservationLayout

KWARGS = ("api_key_env", "timeout_s")


class RemotePolicyError(ConnectionError):
    """The server refused the connection, answered with an error, or went away; says which and why."""


class RemotePolicy(Policy):
    """Asks a policy server for action chunks (see the module docstring).

    Args:
        url: ws://host:port of the server.
        seed: seed of the start-noise stream (as VLAEvalPolicy's).
        api_key: sent as "Authorization: Api-Key <key>" when given.
        timeout_s: how long to wait for the server to open a connection or answer a request.
    """

    def __init__(self, url: str, *, seed: int = 0, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.url = url
        self.seed = seed
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._connections: list[ClientConnection] = []
        self.metadata = self._connect()
        self.layout = ObservationLayout(cameras=tuple(self.metadata["cameras"]), image_shapes={},
                                        state_dim=int(self.metadata["state_dim"]),
                                        chunk_size=int(self.metadata["chunk_size"]),
                                        action_dim=int(self.metadata["action_dim"]))
        self.chunk_size = self.layout.chunk_size
        self.n_action_steps = int(self.metadata["n_action_steps"])
        self.reset()

    def reset(self) -> None:
        """Restart the noise stream, so each evaluation draws the same noise sequence."""
        self._generator = torch.Generator().manual_seed(self.seed)

    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        """Actions [B, chunk_size, action_dim] float32 in [-1, 1] for B observations, one request per row."""
        rows = len(batch["task"])
        noise = torch.randn(rows, self.layout.chunk_size, self.layout.action_dim, generator=self._generator).numpy()
        try:
            while len(self._connections) < rows:
                self._connect()
            for i in range(rows):  # all sent first: the server batches what arrives together
                self._send(self._connections[i], codec.packb(self.layout.request(batch, i, noise[i])))
            actions = [self._receive(self._connections[i])[ACTIONS] for i in range(rows)]
        except Exception:
            self.close()  # replies still in flight would answer the next call's requests
            raise
        return np.clip(np.stack(actions).astype(np.float32), -1.0, 1.0)

    def close(self) -> None:
        """Close every connection."""
        connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - already gone; closing is best effort
                pass

    def __del__(self) -> None:
        self.close()

    def _connect(self) -> dict[str, Any]:
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            connection = connect(self.url, compression=None, max_size=None, additional_headers=headers,
                                 open_timeout=self.timeout_s, legacy=True)  # one connection kept across calls
        except InvalidStatus as err:
            body = err.response.body.decode(errors="replace").strip() if err.response.body else ""
            raise RemotePolicyError(f"the policy server at {self.url} refused the connection "
                                    f"(HTTP {err.response.status_code}): {body}") from err
        except OSError as err:
            raise RemotePolicyError(f"cannot reach a policy server at {self.url} ({err}): start one with "
                                    "`vlm2vla serve policy.path=<policy> port=<port>` and pass its ws:// URL") from err
        self._connections.append(connection)
        return self._receive(connection)  # the metadata message

    def _send(self, connection: ClientConnection, data: bytes) -> None:
        try:
            connection.send(data)
        except ConnectionClosed as err:
            raise RemotePolicyError(f"the policy server at {self.url} closed the connection: {err}") from err

    def _receive(self, connection: ClientConnection) -> dict[str, Any]:
        try:
            reply = connection.recv(timeout=self.timeout_s)
        except TimeoutError as err:
            raise RemotePolicyError(f"the policy server at {self.url} did not answer within {self.timeout_s} s")\
                from err
        except ConnectionClosed as err:
            raise RemotePolicyError(f"the policy server at {self.url} closed the connection: {err}") from err
        if isinstance(reply, str):
            raise RemotePolicyError(f"the policy server at {self.url} answered: {reply}")
        return codec.unpackb(reply)


def build_remote_policy(cfg: PolicyConfig, seed: int) -> RemotePolicy:
    """A RemotePolicy on ``cfg.url``; ``cfg.kwargs`` may set api_key_env (the variable holding the key), timeout_s."""
    if not cfg.url:
        raise ValueError("policy.type=remote needs policy.url=ws://<host>:<port> of a `vlm2vla serve` server")
    unknown = sorted(set(cfg.kwargs) - set(KWARGS))
    if unknown:
        raise ValueError(f"policy.kwargs {unknown} are not understood by the remote policy; it takes {list(KWARGS)}")
    key_env = cfg.kwargs.get("api_key_env")
    api_key = os.environ.get(key_env) if key_env else None
    if key_env and not api_key:
        raise ValueError(f"policy.kwargs.api_key_env={key_env} but that environment variable is empty or unset")
    return RemotePolicy(cfg.url, seed=seed, api_key=api_key, timeout_s=float(cfg.kwargs.get("timeout_s", 120.0)))
