"""`vlm2vla serve` as a process, and `vlm2vla eval policy.type=remote` against a served policy."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from serving_helpers import observation

from vlm2vla.cli import main
from vlm2vla.serving.server import ENDPOINT_FILE, read_endpoint

EVAL = ["tasks=[reach-v3,button-press-v3]", "episodes_per_task=2", "sim.image_size=32", "sim.max_episode_steps=30",
        "video_episodes=0", "progress=false", "num_envs=2", "seed=3"]


def _episodes(run_dir):
    with (run_dir / "episodes.csv").open() as f:
        return sorted((r["task"], r["episode"], r["success"], r["length"], r["reward"]) for r in csv.DictReader(f))


def test_remote_eval_reproduces_in_process_eval(tmp_path, start_server, policy_dirs):
    server = start_server("metaworld", max_wait_ms=50)
    assert main(["eval", f"run_dir={tmp_path / 'local'}", "policy.type=vla",
                 f"policy.path={policy_dirs['metaworld']}", *EVAL]) == 0
    assert main(["eval", f"run_dir={tmp_path / 'remote'}", "policy.type=remote", f"policy.url={server.url}",
                 *EVAL]) == 0
    local, remote = _episodes(tmp_path / "local"), _episodes(tmp_path / "remote")
    assert len(local) == 4
    # same episodes, lengths and rewards to 4 decimals: the served actions drove the same trajectories
    assert remote == local
    results = json.loads((tmp_path / "remote" / "results.json").read_text())
    assert results["policy"] == {"type": "remote", "path": server.url}
    assert server.server.stats["requests"] > 0


def test_remote_eval_without_a_server_says_how_to_start_one(tmp_path, caplog):
    code = main(["eval", f"run_dir={tmp_path / 'x'}", "policy.type=remote", "policy.url=ws://127.0.0.1:9", *EVAL])
    assert code != 0
    assert "vlm2vla serve" in caplog.text


def test_a_remote_policy_names_what_the_served_policy_reads(start_server):
    from vlm2vla.serving.remote_policy import RemotePolicy

    server = start_server("pi0")  # camera "front"
    remote = RemotePolicy(server.url)
    assert remote.chunk_size == 4 and remote.n_action_steps == 2
    batch = {"observation.images.corner2": np.zeros((1, 40, 40, 3), np.uint8),
             "observation.state": np.zeros((1, 4), np.float32), "task": ["open the drawer"]}
    with pytest.raises(ValueError, match=r"observation.images.front.*sim.camera=front"):
        remote.predict_chunk(batch)
    batch["observation.images.front"] = np.zeros((1, 64, 64, 3), np.uint8)  # not the 40 px it was trained on
    with pytest.raises(ConnectionError, match="is 64x64"):
        remote.predict_chunk(batch)
    batch["observation.images.front"] = np.zeros((1, 40, 40, 3), np.uint8)
    assert remote.predict_chunk(batch).shape == (1, 4, 4)  # a fresh connection after the error


def test_url_with_another_policy_type_is_refused(tmp_path, caplog):
    assert main(["eval", f"run_dir={tmp_path / 'x'}", "policy.type=random", "policy.url=ws://h:1"]) == 2
    assert "policy.type=remote" in caplog.text


def test_serve_command_serves_until_sigterm_and_records_its_counts(tmp_path, policy_dirs):
    run_dir = tmp_path / "serve"
    process = subprocess.Popen([sys.executable, "-m", "vlm2vla.cli", "serve", f"run_dir={run_dir}",
                                f"policy.path={policy_dirs['vlm4vla']}", "port=0"], env={**os.environ})
    try:
        deadline = time.time() + 120
        while not (run_dir / ENDPOINT_FILE).is_file():
            assert process.poll() is None and time.time() < deadline, "the server did not come up"
            time.sleep(0.2)
        url = read_endpoint(run_dir)
        client = WebsocketClientPolicy(url)
        assert client.infer(observation())["actions"].shape == (4, 4)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["metrics"]["requests"] == 1 and manifest["metrics"]["batch_sizes"] == {"1": 1}
