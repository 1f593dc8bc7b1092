"""`vlm2vla collect` and `vlm2vla eval` on the grounded suite: dataset metadata, held-out refusal,
wrong-target tables."""

from __future__ import annotations

import csv
import json

from vlm2vla.cli import main
from vlm2vla.robot_data.reader import LeRobotDatasetReader
from vlm2vla.robot_data.writer import LeRobotDatasetWriter
from vlm2vla.sim.grounded import tasks as gt

SIM = ["sim.name=grounded", "sim.camera=front", "sim.image_size=32", "progress=false"]


def test_collect_records_family_target_and_split_and_reads_back(tmp_path):
    run = tmp_path / "c"
    assert main(["collect", f"run_dir={run}", *SIM, "tasks=[grounded-reach,grounded-lift]", "episodes_per_task=4",
                 "instruction_split=seen", "use_videos=false", "num_envs=2"]) == 0
    report = json.loads((run / "collect_report.json").read_text())
    assert report["expert_success_rate"] >= 0.75 and report["expert_wrong_targets"] == 0
    reader = LeRobotDatasetReader.open(run / "dataset")
    assert reader.num_episodes == report["episodes"] and "observation.images.front" in reader.features
    seen = set()
    for i in range(reader.num_episodes):
        meta = reader.episode_metadata(i)
        task = reader.episodes[i]["tasks"][0]
        assert meta["split"] == "seen" and meta["layout"] == "train"
        assert (meta["family"], meta["target"]) not in gt.HELD_OUT
        assert meta["target"] in task and gt.instruction_split(f"grounded-{meta['family']}", task) == "seen"
        seen.add(meta["family"])
    assert seen == {"reach", "lift"}
    # Reopened for appending, the dataset keeps every episode's metadata; one added without any has none.
    first = reader.load_episode(0)
    with LeRobotDatasetWriter.open(run / "dataset") as writer:
        writer.add_episode({k: first[k] for k in ("observation.images.front", "observation.state", "action")},
                           task="Reach the blue ball")
    reader = LeRobotDatasetReader.open(run / "dataset")
    has_metadata = [bool(reader.episode_metadata(i)) for i in range(reader.num_episodes)]
    assert has_metadata == [True] * report["episodes"] + [False]
    assert reader.episode_metadata(0)["family"] in seen


def test_collect_refuses_a_held_out_split_without_the_flag(tmp_path, caplog):
    args = ["collect", f"run_dir={tmp_path}/c", *SIM, "tasks=[grounded-reach]", "episodes_per_task=1",
            "instruction_split=unseen_composition", "use_videos=false", "asynchronous=false"]
    assert main(args) == 2
    assert "held out for evaluation" in caplog.text and "allow_held_out=true" in caplog.text
    assert main([*args, "allow_held_out=true"]) == 0
    reader = LeRobotDatasetReader.open(tmp_path / "c" / "dataset")
    assert reader.episode_metadata(0) == {"family": "reach", "target": "yellow", "split": "unseen_composition",
                                          "layout": "train"}


def test_unknown_split_or_family_lists_the_valid_ones(tmp_path, caplog):
    assert main(["eval", f"run_dir={tmp_path}/x", *SIM, "splits=[unseen]"]) == 2
    assert "unseen_paraphrase, unseen_composition, position" in caplog.text
    assert main(["eval", f"run_dir={tmp_path}/y", *SIM, "tasks=[grounded-stack]"]) == 2
    assert "grounded-reach-spatial" in caplog.text


def test_eval_reports_success_and_wrong_target_per_family_and_split(tmp_path):
    run = tmp_path / "e"
    assert main(["eval", f"run_dir={run}", *SIM, "policy.type=expert", "policy.kwargs.target=random",
                 "tasks=[grounded-reach,grounded-reach-spatial]", "episodes_per_task=12",
                 "splits=[seen,unseen_composition]", "video_episodes=0"]) == 0
    results = json.loads((run / "results.json").read_text())
    overall = results["overall"]
    # Aimed at a random candidate, the expert reaches one every time: right or wrong, never neither.
    assert overall["successes"] + overall["wrong_targets"] == overall["n"] == 36  # reach-spatial has no composition
    assert 0 < overall["wrong_target_rate"] < 1 and overall["wrong_ci_low"] < overall["wrong_target_rate"]
    assert set(results["per_task_split"]) == {"grounded-reach/seen", "grounded-reach/unseen_composition",
                                              "grounded-reach-spatial/seen"}
    rows = list(csv.DictReader((run / "episodes.csv").open()))
    assert {r["target"] for r in rows if r["split"] == "unseen_composition"} == {"yellow"}
    assert all(r["target"] in r["instruction"] for r in rows)


def test_rollout_workers_name_the_target_each_job_asks_for():
    from vlm2vla.evaluation.reference_policies import RandomPolicy
    from vlm2vla.evaluation.rollout import EpisodeJob, run_episodes
    from vlm2vla.sim import SimConfig

    cfg = SimConfig(name="grounded", camera="front", image_size=32, max_episode_steps=3)
    targets = ["yellow", "blue", "green", "yellow"]
    jobs = [EpisodeJob(task="grounded-reach", seed=k, instruction=f"Reach the {t} ball", episode=k, record=True,
                       options={"target": t, "layout": "train"}) for k, t in enumerate(targets)]
    named = {r.job.episode: int(r.frames["observation.environment_state"][0, -3:].argmax())
             for r in run_episodes(jobs, RandomPolicy(seed=0), cfg, num_envs=2)}
    assert [named[k] for k in range(4)] == [2, 0, 1, 2]
