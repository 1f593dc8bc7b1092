"""`vlm2vla eval`: closed-loop evaluation of a policy, with success tables, CSVs and videos.

Protocol defaults follow LeRobot's Meta-World evaluation: the corner2 camera, 10 episodes per task
and the environment's own step cap (500). Episode k of a task starts from seed
`seed + 1000 * task_id + k` under every instruction split, so splits are compared on the same initial
states and differ only in wording.

Outputs in the run directory:
    episodes.jsonl   one line per finished episode (the run resumes from it)
    episodes.csv     the same, as a table
    per_task.csv     success rate, 95% Wilson interval, mean length per task and split
    results.json     every table: overall, per group, per split, per task, per task and split
    videos/<task>/<split>_ep<k>.mp4   the first `video_episodes` episodes of each task and split
"""

from __future__ import annotations

import csv
import io
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlm2vla.config import check_choices, choice
from vlm2vla.evaluation.metrics import EpisodeRecord, format_table, success_tables
from vlm2vla.evaluation.policy_interface import PolicyConfig, describe_policy, make_policy, resolve_policy_config
from vlm2vla.evaluation.rollout import MP_CONTEXTS, EpisodeJob, EpisodeResult, run_episodes
from vlm2vla.fileio import atomic_write_json, atomic_write_text, read_jsonl_log
from vlm2vla.runs import Run
from vlm2vla.sim import SimConfig
from vlm2vla.sim.suites import get_suite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run."""

    # where config, manifest, results and videos go; re-running with the same run_dir resumes
    run_dir: str = "runs/eval"
    # tasks and groups of the simulator (Meta-World: "reach-v3" or "reach", easy, medium, hard, very_hard,
    # mt10, all; grounded: grounded-reach, ..., grounded, colour); empty = its default (easy; grounded)
    tasks: tuple[str, ...] = ()
    # episodes per task and instruction split (LeRobot's Meta-World protocol uses 10)
    episodes_per_task: int = 10
    # instruction splits to evaluate (Meta-World: canonical, seen, unseen; grounded: canonical, seen,
    # unseen_paraphrase, unseen_composition, position); `vlm2vla tasks` describes them
    splits: tuple[str, ...] = ("canonical",)
    # base seed of the episodes' initial states and of the policy's randomness
    seed: int = 0
    # the policy under test
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # simulator settings
    sim: SimConfig = field(default_factory=SimConfig)
    # actions executed from each predicted chunk before the policy is asked again (0 = the policy's own
    # n_action_steps, e.g. what a VLA policy was trained with; 1 for policies without one)
    n_action_steps: int = 0
    # environments run side by side, each in its own worker process
    num_envs: int = 2
    # run environments in worker processes (false: all in this process, for debugging)
    asynchronous: bool = True
    # multiprocessing start method for the workers
    mp_context: str = choice(*MP_CONTEXTS)
    # episodes per task and split saved as mp4 (0 = none)
    video_episodes: int = 1
    # frame rate of the saved videos (Meta-World's control rate is 80 Hz)
    video_fps: int = 80
    # show a progress bar
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.n_action_steps < 0:
            raise ValueError(f"n_action_steps must be >= 1, or 0 for the policy's own, got {self.n_action_steps}")
        check_choices(self)
        suite = get_suite(self.sim.name)
        if not self.splits:
            raise ValueError(f"splits must be a non-empty subset of {suite.splits}, got {list(self.splits)}")
        suite.check_splits(self.splits, "splits")
        suite.resolve_or_default(self.tasks)  # raises with the closest names on a typo


def episode_jobs(cfg: EvalConfig, done: set[tuple[str, str, int]] = frozenset()) -> Iterator[EpisodeJob]:
    """Every episode the evaluation runs, minus those already in `done` ((task, split, episode) keys)."""
    suite = get_suite(cfg.sim.name)
    for split in cfg.splits:
        for task in suite.resolve_or_default(cfg.tasks):
            task_id = suite.task_id(task)
            for k in range(cfg.episodes_per_task):
                if (task, split, k) in done:
                    continue
                seed = cfg.seed + 1000 * task_id + k
                # Instruction choice has its own stream so it never shifts the initial states.
                spec = suite.episode(task, split, _rng(cfg.seed, task_id, k, split))
                if spec is None:  # the task has no episodes in this split
                    break
                yield EpisodeJob(task=task, seed=seed, instruction=spec.instruction, episode=k, split=split,
                                 record=k < cfg.video_episodes, options=spec.options, metadata=spec.metadata)


def evaluate(cfg: EvalConfig, run: Run) -> dict:
    """Run the evaluation described by `cfg` into `run.dir`; returns the results tables."""
    episodes_path = run.dir / "episodes.jsonl"
    records = read_jsonl_log(episodes_path, lambda d: EpisodeRecord(**d))
    done = {(r.task, r.split, r.episode) for r in records}
    jobs = list(episode_jobs(cfg, done))
    total = len(jobs) + len(records)
    if records:
        log.info("Resuming: %d of %d episodes already evaluated", len(records), total)
    suite = get_suite(cfg.sim.name)
    policy_cfg = resolve_policy_config(cfg.policy)  # "auto" -> a type; a path is never silently ignored
    measured = describe_policy(policy_cfg)
    log.info("Evaluating policy %s%s", measured["type"], f" from {measured['path']}" if measured["path"] else "")
    run.update(inputs={"policy": measured})
    policy = make_policy(policy_cfg, seed=cfg.seed)
    policy.reset()
    n_action_steps = cfg.n_action_steps or getattr(policy, "n_action_steps", 1)
    bar = tqdm(total=total, initial=len(records), desc="eval episodes", unit="ep", disable=not cfg.progress)
    with episodes_path.open("a") as out:
        for result in run_episodes(jobs, policy, cfg.sim, num_envs=cfg.num_envs,
                                   n_action_steps=n_action_steps, asynchronous=cfg.asynchronous,
                                   context=cfg.mp_context):
            record = _to_record(result, suite.task_group(result.job.task))
            records.append(record)
            out.write(json.dumps(asdict(record)) + "\n")
            out.flush()
            if result.frames is not None:
                _write_video(run.dir, result, fps=cfg.video_fps)
            bar.update(1)
            bar.set_postfix(success=f"{sum(r.success for r in records) / len(records):.0%}")
    bar.close()
    tables = write_results(run.dir, records, measured)
    log.info("Policy %s%s:\n%s", measured["type"], f" ({measured['path']})" if measured["path"] else "",
             format_table(tables["per_task"], "task"))
    log.info("\n%s", format_table(tables["per_group"], "group"))
    log.info("\n%s", format_table(tables["per_split"], "split"))
    run.finish(metrics={"success_rate": tables["overall"]["success_rate"], "episodes": len(records),
                        "wrong_target_rate": tables["overall"]["wrong_target_rate"],
                        **{f"success_rate/{g}": s["success_rate"] for g, s in tables["per_group"].items()}},
               outputs={"results": run.dir / "results.json", "episodes": run.dir / "episodes.csv"})
    return tables


def write_results(out_dir: Path, records: list[EpisodeRecord], policy: dict) -> dict:
    """Write results.json, episodes.csv and per_task.csv for `records`; returns the tables.

    Args:
        out_dir: the run directory.
        records: the evaluated episodes.
        policy: {"type", "path"} of the policy measured; recorded in results.json and per_task.csv.
    """
    records = sorted(records, key=lambda r: (r.split, r.task, r.episode))
    tables = {"policy": policy, **success_tables(records)}
    groups = {r.task: r.group for r in records}
    atomic_write_json(out_dir / "results.json", tables)
    _write_csv(out_dir / "episodes.csv", [asdict(r) for r in records])
    _write_csv(out_dir / "per_task.csv", [
        {"task": key.split("/")[0], "split": key.split("/")[1], "group": groups[key.split("/")[0]], **row,
         "policy_type": policy["type"], "policy_path": policy["path"] or ""}
        for key, row in tables["per_task_split"].items()
    ])
    return tables


def _to_record(result: EpisodeResult, group: str) -> EpisodeRecord:
    job = result.job
    return EpisodeRecord(task=job.task, group=group, split=job.split, episode=job.episode,
                         seed=job.seed, instruction=job.instruction, success=result.success,
                         length=result.length, reward=round(result.reward, 4),
                         target=job.metadata.get("target", ""), wrong_target=result.wrong_target)


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def _write_video(run_dir: Path, result: EpisodeResult, fps: int) -> None:
    from vlm2vla.robot_data.video import write_mp4

    job = result.job
    image_keys = [k for k in result.frames if k.startswith("observation.images.")]
    if not image_keys:
        return
    path = run_dir / "videos" / job.task / f"{job.split}_ep{job.episode}.mp4"
    write_mp4(result.frames[image_keys[0]], path, fps=fps)


def _rng(*keys: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in keys])
