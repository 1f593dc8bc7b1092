"""The policy server through openpi's own client: metadata, exact actions, batching, bad input, shutdown."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
import torch
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from serving_helpers import IMAGE, as_batch, observation
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from vlm2vla.policies.policy import VLAPolicy


def _in_process(folder, requests, seed=0):
    """What `eval policy.type=vla seed=<seed>` computes for these requests, one call each, in dataset units."""
    policy = VLAPolicy.from_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for request in requests:
        noise = torch.randn(1, policy.config.chunk_size, policy.config.action_dim, generator=generator)
        out.append(policy.predict_action_chunk(as_batch(request), noise=noise)[0].numpy())
    return out


def test_openpi_client_gets_metadata_then_the_in_process_actions(start_server, policy_dirs):
    server = start_server("pi0")
    client = WebsocketClientPolicy(server.url)
    meta = client.get_server_metadata()
    assert meta["cameras"] == ["front"] and meta["chunk_size"] == 4 and meta["action_dim"] == 4
    assert meta["policy"]["head"] == "pi0" and meta["policy"]["config"]["pi0"]["num_steps"] == 3
    assert meta["layout"]["observation"]["observation/images/front"]["shape"] == [IMAGE, IMAGE, 3]
    requests = [observation(0), observation(1, "push the button"), observation(0)]
    expected = _in_process(policy_dirs["pi0"], requests)
    got = [client.infer(r) for r in requests]
    for reply, want in zip(got, expected, strict=True):
        assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (4, 4)
        np.testing.assert_array_equal(reply["actions"], want)  # batch of one: bit for bit
        assert reply["server_timing"]["infer_ms"] > 0
    # the third request repeats the first observation but draws the next noise: other actions
    assert not np.allclose(got[2]["actions"], got[0]["actions"])
    # a reset restarts this connection's noise stream
    assert client.infer({"reset": True}) == {"reset": True}
    np.testing.assert_array_equal(client.infer(requests[0])["actions"], expected[0])


def test_concurrent_clients_are_batched_and_never_get_anothers_actions(start_server, policy_dirs):
    server = start_server("pi0", max_batch_size=8, max_wait_ms=50)
    clients, per_client = 4, 3
    requests = {c: [observation(10 * c + k, ["open the drawer", "push the button"][c % 2]) for k in range(per_client)]
                for c in range(clients)}
    expected = {c: _in_process(policy_dirs["pi0"], requests[c]) for c in range(clients)}
    got: dict[int, list] = {}
    barrier = threading.Barrier(clients)

    def work(c):
        client = WebsocketClientPolicy(server.url)
        barrier.wait()
        got[c] = [client.infer(r)["actions"] for r in requests[c]]

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(got) == list(range(clients))
    for c in range(clients):
        for k in range(per_client):
            # stacked with other rows, the forward may round differently in the last bits, never more
            np.testing.assert_allclose(got[c][k], expected[c][k], atol=1e-5)
            others = [expected[o][k] for o in range(clients) if o != c]
            assert all(np.abs(got[c][k] - other).max() > 1e-3 for other in others)
    counts = WebsocketClientPolicy(server.url).infer({"stats": True})
    sizes = {int(n): count for n, count in counts["batch_sizes"].items()}
    assert sum(n * count for n, count in sizes.items()) == counts["requests"] == clients * per_client
    assert max(sizes) > 1  # the 50 ms window stacked requests of different clients


def _healthy(url):
    with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=10) as response:
        return response.status, response.read().decode()


def _rejection(url, **kwargs):
    with pytest.raises(InvalidStatus) as info:
        connect(url, open_timeout=10, legacy=True, **kwargs)
    return info.value.response.status_code, info.value.response.body.decode()


def _raw(url):
    connection = connect(url, max_size=None, open_timeout=10, legacy=True)
    msgpack_numpy.unpackb(connection.recv(timeout=10))  # metadata
    return connection


def _bad_requests():
    good = observation()
    yield "malformed msgpack", b"\xc1\x00garbage", "not a msgpack message"
    yield "text frame", "hello", "binary msgpack"
    yield "not a map", msgpack_numpy.packb([1, 2, 3]), "msgpack map"
    yield "missing image", msgpack_numpy.packb({k: v for k, v in good.items() if "images" not in k}), \
        "no 'observation/images/front'"
    yield "missing state", msgpack_numpy.packb({k: v for k, v in good.items() if "state" not in k}), \
        "no 'observation/state'"
    big = np.zeros((64, 64, 3), np.uint8)
    yield "wrong image size", msgpack_numpy.packb({**good, "observation/images/front": big}), "is 64x64"
    yield "wrong image dtype", msgpack_numpy.packb({**good, "observation/images/front": np.zeros((IMAGE, IMAGE, 3))}), \
        "uint8"
    yield "wrong state size", msgpack_numpy.packb({**good, "observation/state": np.zeros(7, np.float32)}), \
        "must hold 4 numbers"
    yield "object array", msgpack.packb({"x": {b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}}), \
        "refused"


def test_each_bad_request_gets_its_own_error_and_the_server_keeps_serving(start_server, policy_dirs):
    server = start_server("vlm4vla")
    bystander = WebsocketClientPolicy(server.url)
    want = _in_process(policy_dirs["vlm4vla"], [observation(5)])[0]
    offender = WebsocketClientPolicy(server.url)
    for name, data, words in _bad_requests():
        offender._ws.send(data)
        reply = offender._ws.recv(timeout=30)
        assert isinstance(reply, str) and words in reply, (name, reply)
        # the openpi client raises the server's text
        np.testing.assert_allclose(bystander.infer(observation(5))["actions"], want, atol=1e-6)
    with pytest.raises(RuntimeError, match="must hold 4 numbers"):
        offender.infer({**observation(), "observation/state": np.zeros(3, np.float32)})
    # the offender's connection still works once it sends a good request
    np.testing.assert_allclose(offender.infer(observation(5))["actions"], want, atol=1e-6)
    assert server.server.stats["errors"] == len(list(_bad_requests())) + 1


def test_an_oversized_message_closes_only_that_connection(start_server):
    server = start_server("vlm4vla", max_message_mb=0.01)  # 10 KiB: a 40x40 frame fits, 128x128 does not
    bystander = WebsocketClientPolicy(server.url)
    offender = _raw(server.url)
    offender.send(msgpack_numpy.packb({**observation(), "padding": np.zeros(20000, np.uint8)}))
    with pytest.raises(ConnectionClosedError) as info:
        offender.recv(timeout=30)
    assert info.value.rcvd.code == 1009 and "limit" in info.value.rcvd.reason
    assert bystander.infer(observation())["actions"].shape == (4, 4)


def test_a_wrong_or_missing_api_key_is_refused_at_connect(start_server, monkeypatch):
    monkeypatch.setenv("TEST_SERVE_KEY", "s3cret")
    server = start_server("vlm4vla", api_key_env="TEST_SERVE_KEY")
    status, body = _rejection(server.url, additional_headers={"Authorization": "Api-Key nope"})
    assert status == 401 and "Wrong API key" in body and "api_key=" in body
    status, body = _rejection(server.url)
    assert status == 401 and "Missing API key" in body
    client = WebsocketClientPolicy(server.url, api_key="s3cret")
    assert client.infer(observation())["actions"].shape == (4, 4)
    assert _healthy(server.url) == (200, "OK\n")  # health checks need no key


def test_a_missing_key_variable_is_a_clear_error(policy_dirs, monkeypatch):
    from vlm2vla.serving.server import PolicyServer, ServeConfig, ServedPolicyConfig, load_policy

    monkeypatch.delenv("TEST_SERVE_KEY", raising=False)
    cfg = ServeConfig(policy=ServedPolicyConfig(path=str(policy_dirs["vlm4vla"])), api_key_env="TEST_SERVE_KEY")
    with pytest.raises(ValueError, match="TEST_SERVE_KEY.*empty or unset"):
        PolicyServer(load_policy(cfg.policy)[0], cfg)


def test_a_client_that_leaves_mid_request_costs_no_one_else(start_server, policy_dirs):
    from vlm2vla.serving.server import load_policy

    policy, _ = load_policy(_served(policy_dirs))
    started, release = threading.Event(), threading.Event()
    predict = policy.predict_action_chunk

    def slow(*args, **kwargs):  # holds the forward until the leaving client is gone
        started.set()
        release.wait(10)
        return predict(*args, **kwargs)

    policy.predict_action_chunk = slow
    server = start_server("vlm4vla", policy=policy, max_wait_ms=0)
    leaver = _raw(server.url)
    leaver.send(msgpack_numpy.packb(observation(1)))
    assert started.wait(30)
    leaver.close()
    release.set()
    policy.predict_action_chunk = predict
    client = WebsocketClientPolicy(server.url)
    want = _in_process(policy_dirs["vlm4vla"], [observation(2)])[0]
    np.testing.assert_allclose(client.infer(observation(2))["actions"], want, atol=1e-6)
    assert server.server.stats["requests"] >= 1


def _served(policy_dirs):
    from vlm2vla.serving.server import ServedPolicyConfig

    return ServedPolicyConfig(path=str(policy_dirs["vlm4vla"]))


def test_shutdown_finishes_queued_requests_then_refuses_and_closes(start_server, policy_dirs):
    from vlm2vla.serving.server import load_policy

    policy, _ = load_policy(_served(policy_dirs))
    started, release = threading.Event(), threading.Event()
    predict = policy.predict_action_chunk

    def slow(*args, **kwargs):
        started.set()
        release.wait(10)
        return predict(*args, **kwargs)

    policy.predict_action_chunk = slow
    server = start_server("vlm4vla", policy=policy, max_wait_ms=0)
    assert _healthy(server.url) == (200, "OK\n")
    client = WebsocketClientPolicy(server.url)
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(reply=client.infer(observation())))
    worker.start()
    assert started.wait(30)
    server.shutdown(wait=False)  # SIGTERM's handler: the request above is in flight
    deadline = time.time() + 10
    while not server.server.draining and time.time() < deadline:
        time.sleep(0.01)
    status, body = _rejection(server.url)
    assert status == 503 and "shutting down" in body
    with pytest.raises(urllib.error.HTTPError) as health:
        _healthy(server.url)
    assert health.value.code == 503
    release.set()
    worker.join(30)
    assert answer["reply"]["actions"].shape == (4, 4)  # the in-flight request was answered
    server.thread.join(30)
    assert not server.thread.is_alive()
    with pytest.raises(ConnectionClosed) as closed:
        client._ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1001  # going away


def test_a_request_the_policy_fails_on_fails_alone_in_its_batch(start_server, policy_dirs):
    policy, _ = _loaded(policy_dirs)
    predict = policy.predict_action_chunk

    def fussy(batch, **kwargs):  # the policy cannot take one instruction
        if "explode" in batch["task"]:
            raise RuntimeError("cannot tokenise this instruction")
        return predict(batch, **kwargs)

    policy.predict_action_chunk = fussy
    server = start_server("vlm4vla", policy=policy, max_wait_ms=500)
    want = _in_process(policy_dirs["vlm4vla"], [observation(4)])[0]
    replies = {}
    barrier = threading.Barrier(2)

    def ask(name, request):
        client = WebsocketClientPolicy(server.url)
        barrier.wait()
        try:
            replies[name] = client.infer(request)["actions"]
        except RuntimeError as err:
            replies[name] = str(err)

    threads = [threading.Thread(target=ask, args=("bad", observation(3, "explode"))),
               threading.Thread(target=ask, args=("good", observation(4)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert WebsocketClientPolicy(server.url).infer({"stats": True})["batch_sizes"] == {"2": 1}  # stacked
    assert "Server error" in replies["bad"] and "cannot tokenise" in replies["bad"]
    np.testing.assert_allclose(replies["good"], want, atol=1e-6)


def test_frames_of_other_sizes_share_a_batch_when_the_policy_records_none(start_server, policy_dirs):
    server = start_server("metaworld", max_wait_ms=500)
    replies = {}
    barrier = threading.Barrier(2)

    def ask(size):
        request = observation(size, size=size)
        request["observation/images/corner2"] = request.pop("observation/images/front")
        client = WebsocketClientPolicy(server.url)
        barrier.wait()
        replies[size] = client.infer(request)["actions"]

    threads = [threading.Thread(target=ask, args=(size,)) for size in (24, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert replies[24].shape == replies[40].shape == (4, 4)
    assert WebsocketClientPolicy(server.url).infer({"stats": True})["batch_sizes"] == {"2": 1}


def _loaded(policy_dirs):
    from vlm2vla.serving.server import load_policy

    return load_policy(_served(policy_dirs))
