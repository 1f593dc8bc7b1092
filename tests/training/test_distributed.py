"""Slow: the trainer under torchrun (2 CPU processes, gloo) and a run killed with SIGKILL.

Both launch `python -m vlm2vla.cli pretrain` in subprocesses, as a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_helpers import load_weights

from vlm2vla.training.metrics import read_metrics
from vlm2vla.training.next_token_config import MOVED_FIELDS

pytestmark = pytest.mark.slow

PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def _args(run_dir: Path, model: Path, data: Path, **overrides) -> list[str]:
    values = {"run_dir": run_dir, "model": model, "data": data, "optim.max_steps": 8, "optim.lr": 3e-3,
              "num_workers": 0, "log_interval": 1, "checkpoint.interval": 2, "progress": "false",
              "eval.max_samples_per_source": 4, "eval.max_new_tokens": 4, **overrides}
    # Keyword names stay short (batch_size=...); the optimisation and checkpoint ones live in optim.* / checkpoint.*
    return ["pretrain", *(f"{MOVED_FIELDS.get(k, k)}={v}" for k, v in values.items())]


def _env() -> dict[str, str]:
    # One thread per process: two processes on a 2-core machine, and the same math in both layouts.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_at_the_same_global_batch(tmp_path, model_dir, data_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([PYTHON, "-m", "vlm2vla.cli", *_args(one, model_dir, data_dir / "pool", batch_size=4)],
                   check=True, env=_env(), timeout=600)
    subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "vlm2vla.cli",
                    *_args(two, model_dir, data_dir / "pool", batch_size=2)], check=True, env=_env(), timeout=600)
    losses_one = [r["loss"] for r in read_metrics(one / "metrics.jsonl")]
    losses_two = [r["loss"] for r in read_metrics(two / "metrics.jsonl")]
    assert len(losses_one) == len(losses_two) == 8
    assert losses_two == pytest.approx(losses_one, rel=1e-4)
    a, b = load_weights(one / "model"), load_weights(two / "model")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)


def test_sigkill_mid_run_then_rerun_matches_uninterrupted(tmp_path, model_dir, data_dir):
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    subprocess.run([PYTHON, "-m", "vlm2vla.cli", *_args(ref, model_dir, data_dir / "pool")], check=True,
                   env=_env(), timeout=600)
    proc = subprocess.Popen([PYTHON, "-m", "vlm2vla.cli", *_args(killed, model_dir, data_dir / "pool")],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-00000004").is_dir():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its step-4 checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists()
    subprocess.run([PYTHON, "-m", "vlm2vla.cli", *_args(killed, model_dir, data_dir / "pool")], check=True,
                   env=_env(), timeout=600)
    steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl")]
    assert steps == list(range(1, 9))  # lines logged after the last checkpoint were replaced, not repeated
    assert [r["loss"] for r in read_metrics(killed / "metrics.jsonl")] == pytest.approx(
        [r["loss"] for r in read_metrics(ref / "metrics.jsonl")], rel=1e-6)
    a, b = load_weights(ref / "model"), load_weights(killed / "model")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
