"""The embodied sources drawn from the grounded suite's scenes: coloured candidates to point at and relate."""

from __future__ import annotations

import numpy as np

from vlm2vla.sim import SimConfig, make_env
from vlm2vla.vlm_data.embedded import pointing, spatial
from vlm2vla.vlm_data.embedded.common import SourceWriter
from vlm2vla.vlm_data.embedded.frames import camera_model, frame_entities, sim_frame_bank, visible_pixels


def test_front_camera_projection_lands_on_each_candidate():
    env = make_env("grounded-push", SimConfig(name="grounded", camera="front"))
    obs, _ = env.reset(seed=2)
    camera, sawyer = camera_model(env), env._env
    image = obs["observation.images.front"].astype(int)
    for i, xyz in enumerate(env.object_positions()):
        kept = sawyer.positions.copy()
        sawyer.positions[i] = [0.6, 0.4, -0.5]
        sawyer.reset_model()
        changed = np.abs(env._render_image().astype(int) - image).sum(-1) > 30
        sawyer.positions[:] = kept
        sawyer.reset_model()
        u, v = camera.project(xyz[None])[0]
        # A window around the projection: the hand settles slightly differently at every reset.
        r, cu, cv = 9, int(u), int(v)
        vs, us = np.nonzero(changed[cv - r:cv + r, cu - r:cu + r])
        assert changed[cv, cu] and len(us) > 30
        assert abs(us.mean() + cu - r + 0.5 - u) < 2.5 and abs(vs.mean() + cv - r + 0.5 - v) < 2.5
    env.close()


def test_grounded_frames_feed_pointing_and_candidate_relations(tmp_path):
    bank = sim_frame_bank(("grounded-reach", "grounded-push"), episodes_per_task=1, action_noise=0.3, seed=0,
                          image_size=128, progress=False)
    assert bank.camera.flipped is False and len(bank) > 20
    names = set().union(*(frame_entities(bank, i) for i in range(len(bank))))
    assert {"blue ball", "green puck", "yellow puck", "goal disc", "gripper"} <= names
    rng = np.random.default_rng(0)
    point_writer = SourceWriter(tmp_path / "pointing", "pointing")
    pointing.generate(point_writer, 30, rng, bank)
    spatial_writer = SourceWriter(tmp_path / "spatial", "spatial")
    spatial.generate(spatial_writer, 60, rng, bank)
    point_writer.close()
    spatial_writer.close()
    for rec in point_writer.records:
        uv = bank.camera.project(np.array([rec["world_xyz"]]))[0]
        assert rec["conversations"][-1]["value"] == pointing.format_point(uv, bank.camera.size)
    asked = " ".join(r["conversations"][0]["value"] for r in point_writer.records + spatial_writer.records)
    assert sum(colour in asked for colour in ("blue", "green", "yellow")) == 3
    # Relations between two candidates are asked, and answered as the projections say.
    relations = [(i, axis, a, b) for answer, items in spatial.candidates(bank).items() for i, axis, a, b in items
                 if a != "gripper" and b not in ("gripper", "goal disc") and a != "goal disc"]
    assert relations
    for i, axis, a, b in relations[:50]:
        pix = visible_pixels(bank, i)
        assert spatial.relation(pix[a], pix[b], axis) is not None
