"""`vlm2vla eval` end to end through the CLI, on real Meta-World tasks."""

import json

import pytest

from vlm2vla.cli import main
from vlm2vla.evaluation.evaluate import EvalConfig, episode_jobs

EASY = "tasks=[reach-v3,button-press-v3,drawer-close-v3]"


def _eval(run_dir, *overrides):
    code = main(["eval", f"run_dir={run_dir}", "progress=false", "sim.image_size=64", *overrides])
    assert code == 0
    return json.loads((run_dir / "results.json").read_text())


def test_expert_scores_high_random_scores_low(tmp_path):
    expert = _eval(tmp_path / "expert", EASY, "episodes_per_task=5", "policy.type=expert", "video_episodes=1")
    assert expert["overall"]["success_rate"] >= 0.9
    for task in ("reach-v3", "button-press-v3", "drawer-close-v3"):
        assert (tmp_path / "expert" / "videos" / task / "canonical_ep0.mp4").stat().st_size > 0
    random = _eval(tmp_path / "random", "tasks=[reach-v3,button-press-v3]", "episodes_per_task=3",
                   "policy.type=random", "video_episodes=0")
    assert random["overall"]["success_rate"] <= expert["overall"]["success_rate"] - 0.5
    rows = (tmp_path / "expert" / "per_task.csv").read_text().splitlines()
    assert rows[0].startswith("task,split,group,n,successes,success_rate,ci_low,ci_high")
    assert len(rows) == 4
    manifest = json.loads((tmp_path / "expert" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["success_rate"] >= 0.9


def test_resume_runs_only_missing_episodes(tmp_path):
    run_dir = tmp_path / "ev"
    args = ["tasks=[reach-v3]", "episodes_per_task=4", "video_episodes=0", "num_envs=1"]
    _eval(run_dir, *args)
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    # keep two finished episodes and a half-written third, as a killed run would leave them
    (run_dir / "episodes.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    done = {(json.loads(ln)["task"], json.loads(ln)["split"], json.loads(ln)["episode"]) for ln in lines[:2]}
    results = _eval(run_dir, *args)
    assert results["overall"]["n"] == 4
    episodes = [ln for ln in (run_dir / "episodes.csv").read_text().splitlines()[1:]]
    assert len(episodes) == 4
    cfg = EvalConfig(tasks=("reach-v3",), episodes_per_task=4)
    assert len(list(episode_jobs(cfg, done))) == 2


def test_splits_share_initial_states_and_use_their_instructions(tmp_path):
    from vlm2vla.sim import get_instructions

    cfg = EvalConfig(tasks=("reach-v3",), episodes_per_task=3, splits=("canonical", "unseen"))
    jobs = list(episode_jobs(cfg))
    canonical = [j for j in jobs if j.split == "canonical"]
    unseen = [j for j in jobs if j.split == "unseen"]
    assert [j.seed for j in canonical] == [j.seed for j in unseen]
    instructions = get_instructions("reach-v3")
    assert all(j.instruction == instructions.canonical for j in canonical)
    assert all(j.instruction in instructions.unseen for j in unseen)


def test_unknown_task_is_a_clear_error(tmp_path, caplog):
    code = main(["eval", f"run_dir={tmp_path}/x", "tasks=[reach-v2]"])
    assert code == 2
    assert "reach-v3" in caplog.text


@pytest.mark.parametrize("override", ["episodes_per_task=0", "splits=[heldout]", "num_envs=0"])
def test_bad_values_are_rejected(tmp_path, caplog, override):
    assert main(["eval", f"run_dir={tmp_path}/x", override]) == 2
    assert override.split("=")[0] in caplog.text


class _CountingPolicy:
    """Zero actions in chunks of 5; re-planning every 3 (its own n_action_steps); counts its calls."""

    chunk_size = 5
    n_action_steps = 3
    calls = 0

    def reset(self) -> None:
        pass

    def predict_chunk(self, batch):
        import numpy as np

        type(self).calls += 1
        return np.zeros((len(batch["task"]), 5, 4), dtype=np.float32)


def test_default_n_action_steps_is_the_policys_own(tmp_path):
    from vlm2vla.evaluation.policy_interface import register_policy

    register_policy("test-counting", lambda cfg, seed: _CountingPolicy())
    args = ["tasks=[reach-v3]", "episodes_per_task=1", "video_episodes=0", "num_envs=1", "asynchronous=false",
            "sim.max_episode_steps=9", "policy.type=test-counting"]
    _eval(tmp_path / "own", *args)
    assert _CountingPolicy.calls == 3  # 9 steps / 3 actions per chunk
    _CountingPolicy.calls = 0
    _eval(tmp_path / "explicit", *args, "n_action_steps=1")
    assert _CountingPolicy.calls == 9
