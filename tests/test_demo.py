"""The built-in default pipeline end to end, shrunk to seconds: every stage runs and the summary is written."""

import json

from vlm2vla.cli import main

SMALL = ["embed.batch_size=8", "embed.num_workers=0", "embed.frames_per_episode=2", "gap.map=pca",
         "gap.permutations=20", "midtrain.optim.max_steps=3", "midtrain.optim.batch_size=4", "midtrain.num_workers=0",
         "midtrain.eval.max_samples_per_source=2", "select.fraction=0.3",
         "collect.episodes_per_task=2", "pool.embedded.samples_per_source=30", "pool.embedded.sim_episodes_per_task=1",
         "pretrain.optim.max_steps=5", "pretrain.optim.batch_size=4", "pretrain.eval.max_samples_per_source=4",
         "pretrain.num_workers=0", "eval.episodes_per_task=1", "eval.tasks=[reach-v3]", "eval.video_episodes=0",
         "train_policy.optim.max_steps=3", "train_policy.optim.batch_size=4", "train_policy.num_workers=0"]


def test_demo_runs_every_stage_and_resumes(tmp_path):
    root = tmp_path / "demo"
    assert main(["demo", "--config", "demo", f"run_dir={root}", *SMALL]) == 0
    for stage in ("collect", "pool", "pretrain", "embed", "gap", "select", "midtrain", "train-policy", "eval-expert",
                  "eval-random", "eval-vla"):
        manifest = json.loads((root / stage / "manifest.json").read_text())
        assert manifest["status"] == "complete", stage
    assert (root / "pretrain" / "model" / "config.json").is_file()
    summary = (root / "summary.md").read_text()
    assert "held-out answer accuracy per source" in summary and "| **overall** |" in summary
    assert "distance to the robot data and selection" in summary
    assert (root / "select" / "mixture.jsonl").stat().st_size > 0
    expert = json.loads((root / "eval-expert" / "results.json").read_text())
    assert expert["overall"]["success_rate"] == 1.0
    assert (root / "train-policy" / "policy" / "policy_config.json").is_file()
    assert "| task / split | expert | random | vla |" in summary and "## VLA policy" in summary
    # A second run finds every stage done and only rewrites the summary.
    assert main(["demo", "--config", "demo", f"run_dir={root}", *SMALL]) == 0
    assert json.loads((root / "collect" / "manifest.json").read_text())["resumed"] == 1
