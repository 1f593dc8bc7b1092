"""The embedded pool: generated through `vlm2vla pool`, deterministic, balanced, and answerable.

One small pool (the CLI run) is shared by the tests of this module; the simulator sources use two
tasks and one episode each to keep the whole module to a few seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mujoco
import numpy as np
import pytest

from vlm2vla.cli import main
from vlm2vla.sim import SimConfig, make_env
from vlm2vla.vlm_data import load_pool
from vlm2vla.vlm_data.embedded import ALL_SOURCES, EmbeddedPoolConfig, generate_embedded_pool
from vlm2vla.vlm_data.embedded.frames import camera_model
from vlm2vla.vlm_data.embedded.ocr import WORDS, render_text
from vlm2vla.vlm_data.embedded.pointing import format_point, parse_point
from vlm2vla.vlm_data.embedded.robot_action import grip_word, move_word
from vlm2vla.vlm_data.embedded.robot_state import gripper_state

SIZE = 24
SMALL = {"samples_per_source": SIZE, "sim_tasks": ["push-v3", "reach-v3"], "sim_episodes_per_task": 1}


def _records(root: Path, source: str) -> list[dict]:
    return [json.loads(line) for line in (root / source / "data.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pool") / "run"
    overrides = [f"embedded.{k}=[{','.join(v)}]" if isinstance(v, list) else f"embedded.{k}={v}"
                 for k, v in SMALL.items()]
    assert main(["pool", f"run_dir={run_dir}", "progress=false", "embedded.sizes={ocr: 30}", *overrides]) == 0
    return run_dir


def test_cli_builds_every_source_with_the_requested_size(pool_dir):
    samples = load_pool(pool_dir / "pool.parquet")
    counts = Counter(s.source for s in samples)
    assert counts == {s: (30 if s == "ocr" else SIZE) for s in ALL_SOURCES}
    report = json.loads((pool_dir / "pool_report.json").read_text())
    assert report["kinds"]["general"] == sorted(["captions", "shapes_vqa", "ocr", "chart_qa"])
    assert report["kinds"]["embodied"] == sorted(["spatial", "pointing", "robot_state", "robot_action"])
    assert report["total"]["skipped"] == 0 and "heldout" in report["splits"]
    manifest = json.loads((pool_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["samples"] == len(samples)


def test_same_seed_same_records_and_image_bytes(pool_dir, tmp_path):
    cfg = EmbeddedPoolConfig(**{**SMALL, "sim_tasks": tuple(SMALL["sim_tasks"])}, sizes={"ocr": 30})
    generate_embedded_pool(cfg, tmp_path / "again", progress=False)
    for source in ALL_SOURCES:
        first, second = pool_dir / "embedded" / source, tmp_path / "again" / source
        assert (first / "data.jsonl").read_bytes() == (second / "data.jsonl").read_bytes(), source
        for rec in _records(pool_dir / "embedded", source):
            assert (first / rec["image"]).read_bytes() == (second / rec["image"]).read_bytes(), source
    other = EmbeddedPoolConfig(sources=("captions", "ocr"), samples_per_source=SIZE, seed=1)
    generate_embedded_pool(other, tmp_path / "seed1", progress=False)
    assert _records(tmp_path / "seed1", "ocr") != _records(pool_dir / "embedded", "ocr")


def test_answers_are_short_and_not_one_majority_answer(pool_dir):
    for source in ALL_SOURCES:
        answers = [r["conversations"][-1]["value"] for r in _records(pool_dir / "embedded", source)]
        limit = 8 if source == "captions" else 2  # a caption names up to 2 shapes; "(x, y)" is two words
        assert all(0 < len(a.split()) <= limit for a in answers), source
        top = Counter(answers).most_common(1)[0][1]
        assert top / len(answers) <= 0.5, (source, Counter(answers).most_common(3))
        questions = {r["conversations"][0]["value"] for r in _records(pool_dir / "embedded", source)}
        assert len(questions) > 1 and all(q.startswith("<image>\n") for q in questions)


def test_pointing_answers_are_the_projection_of_the_object(pool_dir):
    env = make_env("push-v3", SimConfig())
    env.reset(seed=0)
    camera = camera_model(env)
    env.close()
    records = _records(pool_dir / "embedded", "pointing")
    for rec in records:
        uv = camera.project(np.array([rec["world_xyz"]]))[0]
        answer = rec["conversations"][-1]["value"]
        assert answer == format_point(uv, camera.size)
        assert parse_point(answer) is not None and all(0 <= c <= 100 for c in parse_point(answer))
    assert {r["conversations"][0]["value"].split()[-1].rstrip(".") for r in records} & {"gripper", "puck"}


def test_camera_projection_lands_on_the_rendered_object():
    # Move the puck away and re-render: the pixels that change around the projection are the puck's.
    env = make_env("push-v3", SimConfig())
    obs, _ = env.reset(seed=0)
    camera, state = camera_model(env), obs["observation.environment_state"]
    sawyer = env.unwrapped._env
    sawyer._set_obj_xyz(np.array([state[4], state[5] - 0.3, state[6]]))
    mujoco.mj_forward(sawyer.model, sawyer.data)
    after = env._render_image().astype(int)
    env.close()
    changed = np.abs(after - obs["observation.images.corner2"].astype(int)).sum(-1) > 30
    u, v = camera.project(state[None, 4:7])[0]
    vs, us = np.nonzero(changed[int(v) - 8:int(v) + 8, int(u) - 8:int(u) + 8])
    assert len(us) > 5 and changed[int(v), int(u)]
    assert abs(us.mean() + int(u) - 8 - u) < 2.5 and abs(vs.mean() + int(v) - 8 - v) < 2.5


def test_robot_state_and_action_answers_agree_with_the_state(pool_dir):
    state_records = _records(pool_dir / "embedded", "robot_state")
    gripper = [r for r in state_records if "gripper open or closed" in r["conversations"][0]["value"]
               or "open or closed?" in r["conversations"][0]["value"]]
    assert gripper, "no gripper questions"
    for rec in gripper:
        assert rec["conversations"][-1]["value"] == gripper_state(rec["gripper_opening"])
    answers = Counter(r["conversations"][-1]["value"] for r in gripper)
    assert set(answers) == {"open", "closed"}
    for rec in _records(pool_dir / "embedded", "robot_action"):
        answer, action = rec["conversations"][-1]["value"], np.array(rec["action"])
        assert answer in (move_word(action), grip_word(action))


@pytest.mark.parametrize("size", [64, 128])
def test_ocr_text_is_bold_and_whole_inside_the_image(size):
    """Every vocabulary entry, at the sizes and positions the renderer draws, fits with its bold strokes."""
    rng = np.random.default_rng(0)
    for word in WORDS:
        for _ in range(4):
            image = np.asarray(render_text(rng, word, size)).astype(int)
            background = image[0, 0]
            ink = np.abs(image - background).sum(-1) > 60
            assert ink.any(), word
            ring = np.ones_like(ink)
            ring[1:-1, 1:-1] = False
            assert not (ink & ring).any(), f"{word!r} touches the image border at size {size}"
            # bold: the typical horizontal ink run (a stroke's width) is >= size/16 px; the regular
            # weight this replaced gave 2 px at 64 and 3-4 px at 128, which the tiny ViT could not read
            edges = np.diff(np.pad(ink.astype(int), ((0, 0), (1, 1))), axis=1)  # +1 run start, -1 run end
            runs = np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1]
            assert np.median(runs) >= size / 16, (word, np.median(runs))
