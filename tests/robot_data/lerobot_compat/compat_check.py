"""Check vlm2vla's LeRobotDataset v3.0 reader/writer against the real LeRobot library.

LeRobot cannot live in vlm2vla's venv (it pins torch<2.11 and torchvision), so its half runs
in a separate "throwaway" venv, through lerobot_side.py, and the two exchange datasets on disk.

Set up the throwaway venv once (CPU torch, LeRobot without its heavy dependencies):

    python3 -m venv /tmp/lerobot-venv
    /tmp/lerobot-venv/bin/pip install torch==2.13.0            # the local CPU wheel
    /tmp/lerobot-venv/bin/pip install --no-deps lerobot==0.4.4  # newest release for Python 3.11
    /tmp/lerobot-venv/bin/pip install "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" \
        "av>=15,<16" "packaging>=24.2,<26" draccus==0.10.0 "pandas<3" jsonlines einops \
        termcolor safetensors pillow gymnasium pyyaml accelerate

torchvision is replaced by stubs/torchvision (PyPI's wheels need CUDA torch); LeRobot then
decodes videos with its "pyav" backend. Run:

    LEROBOT_PYTHON=/tmp/lerobot-venv/bin/python .venv/bin/python \
        tests/robot_data/lerobot_compat/compat_check.py

or `LEROBOT_PYTHON=... pytest -m slow tests/robot_data/test_lerobot_compat.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from robot_data_helpers import CAM, TASKS, make_episode, make_features  # noqa: E402

from vlm2vla.robot_data.reader import LeRobotDatasetReader, RobotEpisodeDataset  # noqa: E402
from vlm2vla.robot_data.writer import LeRobotDatasetWriter  # noqa: E402

CHUNK = 4
LENGTHS = (10, 17, 24)
VIDEO_ATOL = 2 / 255  # both sides decode the same packets with FFmpeg; allow rounding differences


def lerobot_python() -> tuple[str | None, str]:
    """The throwaway venv's python and why it is unusable (empty reason when usable)."""
    python = os.environ.get("LEROBOT_PYTHON")
    if not python and os.environ.get("LEROBOT_VENV"):
        python = str(Path(os.environ["LEROBOT_VENV"]) / "bin" / "python")
    if not python:
        return None, "set LEROBOT_PYTHON to the python of a venv where lerobot imports (see compat_check.py)"
    if not Path(python).exists():
        return None, f"LEROBOT_PYTHON={python} does not exist"
    probe = _run(python, ["-c", "import lerobot.datasets.lerobot_dataset"], check=False)
    if probe.returncode != 0:
        return None, f"lerobot does not import with {python}: {probe.stderr.strip().splitlines()[-1:]}"
    return python, ""


def _run(python: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(HERE / "stubs"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "SVT_LOG": "1"}
    with tempfile.TemporaryDirectory() as home:  # keep LeRobot's/HF's caches out of the user's home
        env["HF_HOME"] = home
        proc = subprocess.run([python, *args], env=env, capture_output=True, text=True, cwd=home)
    if check and proc.returncode != 0:
        raise RuntimeError(f"LeRobot side failed ({' '.join(args[:2])}):\n{proc.stderr[-3000:]}")
    return proc


def lerobot(python: str, *args: str) -> str:
    """Run lerobot_side.py with the given arguments; return its stdout."""
    return _run(python, [str(HERE / "lerobot_side.py"), *args]).stdout.strip()


def _episodes(seed0: int = 0) -> list[dict]:
    return [make_episode(n, seed0 + i) for i, n in enumerate(LENGTHS)]


def _compare_items(ours: RobotEpisodeDataset, theirs: dict, image_dtype: str) -> list[str]:
    """Differences between our items and LeRobot's dump, as messages (empty when equal)."""
    problems = []
    if len(ours) != int(theirs["len"]):
        return [f"length: ours {len(ours)}, LeRobot {int(theirs['len'])}"]
    items = [ours[i] for i in range(len(ours))]
    for key in ("observation.state", "action", "action_is_pad", "index", "episode_index", "frame_index",
                "task_index"):
        mine = np.stack([it[key].numpy() for it in items])
        if not np.array_equal(mine, theirs[key]):
            problems.append(f"{key} differs (max abs diff {np.abs(mine.astype(float) - theirs[key]).max()})")
    ts = np.stack([it["timestamp"].numpy() for it in items])
    if not np.allclose(ts, theirs["timestamp"], atol=1e-6):
        problems.append("timestamp differs")
    if [it["task"] for it in items] != theirs["task"].tolist():
        problems.append("task strings differ")
    images = np.stack([it[CAM].numpy() for it in items])
    diff = np.abs(images - theirs[CAM]).max()
    if diff > (0 if image_dtype == "image" else VIDEO_ATOL):
        problems.append(f"{CAM} differs: max abs diff {diff:.4f}")
    return problems


def check_lerobot_reads_ours(python: str, tmp: Path, image_dtype: str) -> list[str]:
    """We write (3 episodes, re-open, append 1); LeRobotDataset loads it; items must match ours."""
    root = tmp / f"ours-{image_dtype}"
    episodes = _episodes()
    with LeRobotDatasetWriter.create(root, fps=10, features=make_features(image_dtype), robot_type="toy") as w:
        for i, ep in enumerate(episodes[:2]):
            w.add_episode(ep, task=TASKS[i % 2])
    with LeRobotDatasetWriter.open(root) as w:
        w.add_episode(episodes[2], task=TASKS[0])
    lerobot(python, "read", str(root), str(tmp / "dump.npz"), str(CHUNK))
    theirs = dict(np.load(tmp / "dump.npz"))
    return _compare_items(RobotEpisodeDataset(LeRobotDatasetReader.open(root), action_chunk=CHUNK), theirs,
                          image_dtype)


def _save_episodes(path: Path, episodes: list[dict], tasks: list[str]) -> None:
    flat = {"num_episodes": np.array(len(episodes))}
    for e, (ep, task) in enumerate(zip(episodes, tasks, strict=True)):
        flat.update({f"ep{e}/{k}": v for k, v in ep.items()})
        flat[f"ep{e}/task"] = np.array(task)
    np.savez(path, **flat)


def check_we_read_lerobots(python: str, tmp: Path, image_dtype: str) -> list[str]:
    """LeRobot writes; our reader must return the raw data, and our stats must agree with LeRobot's."""
    root = tmp / f"lerobot-{image_dtype}"
    episodes = _episodes(seed0=5)
    tasks = [TASKS[i % 2] for i in range(len(episodes))]
    _save_episodes(tmp / "episodes.npz", episodes, tasks)
    lerobot(python, "write", str(root), str(tmp / "episodes.npz"), image_dtype)
    reader = LeRobotDatasetReader.open(root)
    problems = []
    if reader.num_episodes != len(episodes) or reader.tasks != TASKS:
        problems.append(f"metadata: {reader.num_episodes} episodes, tasks {reader.tasks}")
    for e, ep in enumerate(episodes):
        got = reader.load_episode(e)
        for key in ("observation.state", "action"):
            if not np.array_equal(got[key], ep[key]):
                problems.append(f"episode {e}: {key} differs")
        diff = np.abs(got[CAM].astype(int) - ep[CAM]).mean()
        if (image_dtype == "image" and diff != 0) or diff > 4.0:
            problems.append(f"episode {e}: {CAM} mean abs diff {diff:.2f}")
        if got["task"] != tasks[e]:
            problems.append(f"episode {e}: task {got['task']!r}")
    raw = np.concatenate([ep["action"] for ep in episodes]).astype(np.float64)
    for stat, value in (("mean", raw.mean(0)), ("std", raw.std(0)), ("min", raw.min(0)), ("max", raw.max(0))):
        if not np.allclose(reader.stats["action"][stat], value, rtol=1e-5, atol=1e-6):
            problems.append(f"LeRobot's stats.json action/{stat} != numpy")
    # Their items vs ours on their dataset (padding, names, image scaling).
    lerobot(python, "read", str(root), str(tmp / "dump.npz"), str(CHUNK))
    problems += _compare_items(RobotEpisodeDataset(reader, action_chunk=CHUNK), dict(np.load(tmp / "dump.npz")),
                               image_dtype)
    return problems


def check_cross_append(python: str, tmp: Path, image_dtype: str) -> list[str]:
    """We append to LeRobot's dataset and LeRobot appends to ours; both then read the result."""
    problems = []
    extra = [make_episode(12, 42)]
    _save_episodes(tmp / "extra.npz", extra, ["appended by lerobot"])
    # Ours, then LeRobot appends.
    ours = tmp / f"ours-{image_dtype}"
    lerobot(python, "append", str(ours), str(tmp / "extra.npz"))
    # LeRobot's, then we append.
    theirs = tmp / f"lerobot-{image_dtype}"
    with LeRobotDatasetWriter.open(theirs) as w:
        w.add_episode(make_episode(12, 43), task="appended by vlm2vla")
    for root, n in ((ours, 4), (theirs, 4)):
        reader = LeRobotDatasetReader.open(root)
        if reader.num_episodes != n:
            problems.append(f"{root.name}: {reader.num_episodes} episodes after append, expected {n}")
        last = reader.load_episode(n - 1)
        if not np.array_equal(last["index"], np.arange(reader.num_frames - 12, reader.num_frames)):
            problems.append(f"{root.name}: appended episode has indices {last['index'][:3]}...")
        lerobot(python, "read", str(root), str(tmp / "dump.npz"), str(CHUNK))
        problems += [f"{root.name} after append: {p}" for p in
                     _compare_items(RobotEpisodeDataset(reader, action_chunk=CHUNK), dict(np.load(tmp / "dump.npz")),
                                    image_dtype)]
    return problems


KILL_SCRIPT = """
import sys
sys.path.insert(0, {helpers!r})
from robot_data_helpers import make_episode, make_features
from vlm2vla.robot_data.writer import LeRobotDatasetWriter
writer = LeRobotDatasetWriter.create(sys.argv[1], fps=10, features=make_features(sys.argv[2]))
for i in range(10_000):
    writer.add_episode(make_episode(8 + i % 7, i), task="task %d" % (i % 3))
    print(i + 1, flush=True)
"""


def check_lerobot_reads_after_kill(python: str, tmp: Path, image_dtype: str) -> list[str]:
    """SIGKILL our writer mid-episode; LeRobot must load the dataset as left (no recovery run)."""
    problems = []
    for attempt, delay in enumerate((0.0, 0.005, 0.011, 0.017)):
        root = tmp / f"killed-{image_dtype}-{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(helpers=str(HERE.parent)), str(root),
                                 image_dtype], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while int(proc.stdout.readline() or 0) < 3:
            if proc.poll() is not None:
                return [f"writer process died (exit {proc.returncode})"]
        time.sleep(delay)
        proc.kill()
        proc.wait()
        lerobot(python, "read", str(root), str(tmp / "dump.npz"), str(CHUNK))
        ours = RobotEpisodeDataset(LeRobotDatasetReader.open(root), action_chunk=CHUNK)
        problems += [f"kill after {delay}s: {p}" for p in _compare_items(ours, dict(np.load(tmp / "dump.npz")),
                                                                          image_dtype)]
    return problems


CHECKS = (check_lerobot_reads_ours, check_we_read_lerobots, check_cross_append, check_lerobot_reads_after_kill)


def run_all(python: str, tmp: Path) -> dict[str, list[str]]:
    """Every check for image and video datasets: {check name: problems}."""
    results = {}
    for image_dtype in ("image", "video"):
        for check in CHECKS:
            results[f"{check.__name__}[{image_dtype}]"] = check(python, tmp, image_dtype)
    return results


def main() -> int:
    python, reason = lerobot_python()
    if python is None:
        print(f"SKIPPED: {reason}")
        return 2
    version = _run(python, ["-c", "import importlib.metadata as m; print(m.version('lerobot'))"]).stdout.strip()
    print(f"lerobot {version} at {python}")
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(python, Path(tmp))
    for name, problems in results.items():
        print(f"{'PASS' if not problems else 'FAIL'}  {name}")
        for p in problems:
            print(f"      {p}")
    return 0 if not any(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
