"""`vlm2vla collect`: scripted-expert demonstrations written as a LeRobotDataset v3.0.

Runs Meta-World's scripted expert (optionally with Gaussian action noise, for diversity) for
`episodes_per_task` attempts per task in parallel worker processes, keeps the successful episodes and
reports the expert's success rate per task.

Resuming: every finished attempt is appended to <run_dir>/attempts.jsonl *before* its episode is
handed to the dataset writer, with the episode index it will get. On restart, attempts whose episode
made it into the dataset (index < the dataset's episode count) are done; a successful attempt whose
episode did not is run again; everything else is skipped. The dataset writer itself commits each
episode atomically, so a run killed at any moment loses at most the episode in flight.

Seeds: attempt k of task t starts from `seed + 100_000 * t + k`; the default seed (10,000,000) keeps
demonstrations off the initial states that `vlm2vla eval` uses by default (seeds below 100,000).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlm2vla.config import check_choices, choice
from vlm2vla.evaluation.policy_interface import PolicyConfig, make_policy
from vlm2vla.evaluation.rollout import MP_CONTEXTS, EpisodeJob, EpisodeResult, run_episodes
from vlm2vla.fileio import atomic_write_json, read_jsonl_log
from vlm2vla.robot_data.writer import LeRobotDatasetWriter
from vlm2vla.runs import Run
from vlm2vla.sim import SimConfig
from vlm2vla.sim.suites import get_suite

log = logging.getLogger(__name__)

# Meta-World's control rate: 80 steps per simulated second.
METAWORLD_FPS = 80
STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]


@dataclass(frozen=True)
class CollectConfig:
    """Settings of one demonstration-collection run."""

    # run directory; the dataset goes to <run_dir>/dataset; re-running the same command resumes
    run_dir: str = "runs/collect"
    # tasks and groups of the simulator (Meta-World: "reach-v3" or "reach", easy, medium, hard, very_hard,
    # mt10, all; grounded: grounded-reach, ..., grounded, colour); empty = its default (easy; grounded)
    tasks: tuple[str, ...] = ()
    # expert attempts per task; failed attempts are dropped unless keep_failed
    episodes_per_task: int = 10
    # base seed of the attempts' initial states (see module docstring)
    seed: int = 10_000_000
    # std of Gaussian noise added to the expert's actions, in action units ([-1, 1]); 0 = none
    action_noise: float = 0.0
    # which split each episode is drawn from: canonical, or seen (a random seen paraphrase; grounded: and
    # a seen (family, target) pair); held-out splits (unseen, unseen_paraphrase, unseen_composition,
    # position) need allow_held_out, since demonstrations of them leak the evaluation splits into training
    instruction_split: str = "canonical"
    # permit a held-out instruction_split (e.g. to build an oracle upper bound on purpose)
    allow_held_out: bool = False
    # keep episodes in which the expert failed
    keep_failed: bool = False
    # simulator settings
    sim: SimConfig = field(default_factory=SimConfig)
    # store camera frames as mp4 video (LeRobot's default) instead of PNG image columns
    use_videos: bool = True
    # video codec (libsvtav1 = AV1, LeRobot's default; h264 decodes faster)
    video_codec: str = "libsvtav1"
    # also store the privileged simulator state as observation.environment_state
    record_environment_state: bool = False
    # robot name written to meta/info.json
    robot_type: str = "sawyer"
    # environments run side by side, each in its own worker process
    num_envs: int = 2
    # run environments in worker processes (false: all in this process)
    asynchronous: bool = True
    # multiprocessing start method for the workers
    mp_context: str = choice(*MP_CONTEXTS)
    # show a progress bar
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
        if self.action_noise < 0:
            raise ValueError(f"action_noise must be >= 0, got {self.action_noise}")
        check_choices(self)
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if not self.sim.privileged_state:
            raise ValueError("The scripted expert needs privileged state: keep sim.privileged_state=true.")
        suite = get_suite(self.sim.name)
        suite.check_splits([self.instruction_split], "instruction_split")
        if self.instruction_split not in suite.train_splits and not self.allow_held_out:
            raise ValueError(
                f"instruction_split={self.instruction_split!r} is held out for evaluation in {suite.name}: "
                f"demonstrations of it would make that split seen. Training splits: {', '.join(suite.train_splits)}; "
                "pass allow_held_out=true if you mean it.")
        suite.resolve_or_default(self.tasks)


@dataclass(frozen=True)
class Attempt:
    """One finished expert attempt, as logged in attempts.jsonl."""

    task: str
    attempt: int
    seed: int
    success: bool
    length: int
    episode_index: int | None
    # a distractor reached its goal (suites with several candidates); the attempt counts as failed
    wrong_target: bool = False


def attempt_jobs(cfg: CollectConfig, skip: set[tuple[str, int]]) -> Iterator[EpisodeJob]:
    """The expert attempts still to run, task by task."""
    suite = get_suite(cfg.sim.name)
    for task in suite.resolve_or_default(cfg.tasks):
        task_id = suite.task_id(task)
        for k in range(cfg.episodes_per_task):
            if (task, k) in skip:
                continue
            spec = suite.episode(task, cfg.instruction_split, np.random.default_rng([cfg.seed, task_id, k]))
            if spec is None:
                break
            yield EpisodeJob(task=task, seed=cfg.seed + 100_000 * task_id + k, episode=k,
                             instruction=spec.instruction, record=True, split=cfg.instruction_split,
                             options=spec.options, metadata=spec.metadata)


def collect(cfg: CollectConfig, run: Run) -> dict:
    """Collect demonstrations into `run.dir / "dataset"`; returns the collection report."""
    dataset_root = run.dir / "dataset"
    attempts_path = run.dir / "attempts.jsonl"
    writer = None
    if (dataset_root / "meta" / "info.json").is_file():
        writer = LeRobotDatasetWriter.open(dataset_root, vcodec=cfg.video_codec)
    attempts = _finished_attempts(attempts_path, writer.num_episodes if writer else 0)
    jobs = list(attempt_jobs(cfg, {(a.task, a.attempt) for a in attempts}))
    if attempts:
        log.info("Resuming: %d attempts done, %d to go", len(attempts), len(jobs))
    policy = make_policy(PolicyConfig(type="expert", noise_std=cfg.action_noise), seed=cfg.seed)
    bar = tqdm(total=len(attempts) + len(jobs), initial=len(attempts), desc="expert attempts", unit="ep",
               disable=not cfg.progress)
    try:
        with attempts_path.open("a") as log_file:
            for result in run_episodes(jobs, policy, cfg.sim, num_envs=cfg.num_envs, asynchronous=cfg.asynchronous,
                                       context=cfg.mp_context):
                keep = result.success or cfg.keep_failed
                if keep and writer is None:
                    writer = _create_writer(cfg, dataset_root, result)
                attempt = Attempt(task=result.job.task, attempt=result.job.episode, seed=result.job.seed,
                                  success=result.success, length=result.length,
                                  episode_index=writer.num_episodes if keep else None,
                                  wrong_target=result.wrong_target)
                # Logged before the write: see the module docstring for how resume reconciles the two.
                log_file.write(json.dumps(attempt.__dict__) + "\n")
                log_file.flush()
                if keep:
                    writer.add_episode(_episode_frames(result, cfg), task=result.job.instruction,
                                       metadata=result.job.metadata)
                attempts.append(attempt)
                bar.update(1)
                bar.set_postfix(kept=sum(a.episode_index is not None for a in attempts))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    report = collection_report(attempts)
    atomic_write_json(run.dir / "collect_report.json", report)
    _log_report(report)
    run.finish(metrics={"expert_success_rate": report["expert_success_rate"], "episodes": report["episodes"],
                        "frames": report["frames"]},
               outputs={"dataset": dataset_root, "report": run.dir / "collect_report.json"})
    return report


def collection_report(attempts: list[Attempt]) -> dict:
    """Expert success rate overall and per task, with the kept episode and frame counts."""
    tries = Counter(a.task for a in attempts)
    wins = Counter(a.task for a in attempts if a.success)
    kept = [a for a in attempts if a.episode_index is not None]
    return {
        "attempts": len(attempts),
        "expert_success_rate": sum(wins.values()) / max(1, len(attempts)),
        "expert_wrong_targets": sum(a.wrong_target for a in attempts),
        "episodes": len(kept),
        "frames": sum(a.length for a in kept),
        "per_task": {t: {"attempts": n, "successes": wins[t], "success_rate": wins[t] / n} for t, n in tries.items()},
    }


def _finished_attempts(path: Path, num_episodes: int) -> list[Attempt]:
    """Attempts to keep from an earlier run: those whose episode is in the dataset, or that kept none."""
    done = [a for a in read_jsonl_log(path, lambda d: Attempt(**d))
            if a.episode_index is None or a.episode_index < num_episodes]
    # An episode index can appear twice only if a crashed write was retried; keep the last.
    by_index = {a.episode_index: a for a in done if a.episode_index is not None}
    return [a for a in done if a.episode_index is None] + list(by_index.values())


def _episode_frames(result: EpisodeResult, cfg: CollectConfig) -> dict[str, np.ndarray]:
    frames = dict(result.frames)
    if not cfg.record_environment_state:
        frames.pop("observation.environment_state", None)
    frames["action"] = frames["action"].astype(np.float32)
    return frames


def _create_writer(cfg: CollectConfig, root: Path, first: EpisodeResult) -> LeRobotDatasetWriter:
    features = {}
    for key, value in _episode_frames(first, cfg).items():
        if key.startswith("observation.images."):
            features[key] = {"dtype": "video" if cfg.use_videos else "image", "shape": list(value.shape[1:]),
                             "names": ["height", "width", "channels"]}
        else:
            names = {"observation.state": STATE_NAMES, "action": ACTION_NAMES}.get(key)
            features[key] = {"dtype": "float32", "shape": list(value.shape[1:]), "names": names}
    return LeRobotDatasetWriter.create(root, fps=METAWORLD_FPS, features=features, robot_type=cfg.robot_type,
                                       use_videos=cfg.use_videos, vcodec=cfg.video_codec)


def _log_report(report: dict) -> None:
    lines = [f"{'task':<30} {'attempts':>8} {'success':>8}"]
    lines += [f"{t:<30} {r['attempts']:>8} {r['success_rate']:>8.0%}" for t, r in report["per_task"].items()]
    log.info("Expert success %.1f%% over %d attempts; kept %d episodes, %d frames\n%s",
             100 * report["expert_success_rate"], report["attempts"], report["episodes"], report["frames"],
             "\n".join(lines))
