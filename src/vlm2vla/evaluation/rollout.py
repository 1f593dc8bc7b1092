"""Closed-loop rollouts of a policy over a pool of simulator processes.

The engine keeps `num_envs` environments busy (a gymnasium AsyncVectorEnv: one process each) and
feeds them a queue of episode jobs — (task, seed, instruction) — so one pool serves every task of
an evaluation or a collection. Each environment switches task at reset and idles once its episode
has ended, until the engine hands it the next job; the policy runs batched in this process over the
environments that need a new action chunk.

    jobs ──► [env 0] [env 1] ... [env N-1]   (worker processes, one episode each at a time)
                 ▲ actions        │ observations
                 └──── policy ◄───┘            (this process, batched, re-plans every n_action_steps)

`run_episodes` yields an `EpisodeResult` as each episode finishes, with its frames when the job asks
to record them (demonstrations, videos).
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from vlm2vla.evaluation.policy_interface import Policy
from vlm2vla.sim import SimConfig, make_env

# Worker processes are started with "spawn": a forked child would inherit this process's OpenGL
# state and thread pools (torch, OSMesa), which deadlocks or crashes renderers.
DEFAULT_MP_CONTEXT = "spawn"
# Start methods a config may choose; "fork" is offered for simulators that do not render with OpenGL.
MP_CONTEXTS = (DEFAULT_MP_CONTEXT, "forkserver", "fork")


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to run: which task, from which initial state, with which instruction."""

    task: str
    seed: int
    instruction: str
    episode: int = 0
    split: str = "canonical"
    record: bool = False
    # env.reset(options=...) of this episode (the grounded suite: which candidate is named, layout)
    options: dict[str, Any] = field(default_factory=dict)
    # what the episode records besides the instruction (dataset columns, eval rows)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique within a run: policies that keep per-episode state index it by this."""
        return f"{self.task}/{self.split}/{self.episode}/{self.seed}"


@dataclass
class EpisodeResult:
    """What happened in one episode; `frames` holds observation.* and action arrays [T, ...] if recorded."""

    job: EpisodeJob
    success: bool
    length: int
    reward: float
    frames: dict[str, np.ndarray] | None = None
    # a distractor reached its goal instead of the named target (suites with several candidates)
    wrong_target: bool = False


class JobEnv(gym.Env):
    """A worker's environment: switches task at reset and idles after its episode ends.

    The engine sets `next_task` before a masked reset. Idling matters because a vector env steps all
    workers together: a finished episode must not be stepped past the simulator's step cap.
    """

    def __init__(self, sim_cfg: SimConfig, first_task: str, cache_size: int = 4) -> None:
        self.sim_cfg = sim_cfg
        self.cache_size = cache_size
        self.next_task = first_task
        self.next_options: dict[str, Any] = {}
        self._envs: dict[str, gym.Env] = {}
        env = self._env_for(first_task)
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self._active: gym.Env = env
        self._done = True
        self._last_obs: dict[str, np.ndarray] | None = None

    def _env_for(self, task: str) -> gym.Env:
        if task not in self._envs:
            if len(self._envs) >= self.cache_size:
                oldest = next(iter(self._envs))
                self._envs.pop(oldest).close()
            self._envs[task] = make_env(task, self.sim_cfg)
        return self._envs[task]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._active = self._env_for(self.next_task)
        obs, info = self._active.reset(seed=seed, options=dict(self.next_options) or None)
        self._done, self._last_obs = False, obs
        return obs, {**info, "is_success": False, "wrong_target": False}

    def step(self, action):
        if self._done:
            return self._last_obs, 0.0, False, False, {"is_success": False, "wrong_target": False}
        obs, reward, terminated, truncated, info = self._active.step(action)
        self._done, self._last_obs = bool(terminated or truncated), obs
        return obs, reward, terminated, truncated, {"is_success": bool(info.get("is_success", False)),
                                                    "wrong_target": bool(info.get("wrong_target", False))}

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def make_vector_env(sim_cfg: SimConfig, first_task: str, num_envs: int, asynchronous: bool = True,
                    context: str = DEFAULT_MP_CONTEXT) -> gym.vector.VectorEnv:
    """A vector env of `num_envs` JobEnvs; asynchronous = one worker process per env."""
    fns = [functools.partial(JobEnv, sim_cfg, first_task) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.DISABLED
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context=context, autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


@dataclass
class _Slot:
    """An environment's current episode."""

    job: EpisodeJob
    actions: deque = field(default_factory=deque)
    length: int = 0
    reward: float = 0.0
    success: bool = False
    wrong_target: bool = False
    frames: dict[str, list] = field(default_factory=dict)


def run_episodes(jobs: Iterable[EpisodeJob], policy: Policy, sim_cfg: SimConfig, num_envs: int = 2,
                 n_action_steps: int = 1, asynchronous: bool = True, context: str = DEFAULT_MP_CONTEXT,
                 ) -> Iterator[EpisodeResult]:
    """Run every job to the end and yield its result as soon as it finishes (not in job order).

    Args:
        jobs: episodes to run; consumed lazily.
        policy: returns [B, chunk, action_dim] chunks; re-queried every `n_action_steps` actions.
        sim_cfg: simulator settings shared by all workers.
        num_envs: environments run side by side (worker processes when asynchronous).
        n_action_steps: actions executed from each chunk before re-planning (capped at the chunk size).
        asynchronous: one process per environment; False steps them in this process (debugging).
        context: multiprocessing start method for the workers.
    """
    queue = iter(jobs)
    # Look ahead at most num_envs jobs and start no more environments than there are jobs: every
    # environment must be reset before the first step (gymnasium batches every worker's observation,
    # and one never reset has none), and an environment without a job would only cost a process.
    head = list(itertools.islice(queue, num_envs))
    if not head:
        return
    num_envs = len(head)
    queue = itertools.chain(head, queue)
    n_action_steps = max(1, min(n_action_steps, policy.chunk_size))
    first = head[0]
    envs = make_vector_env(sim_cfg, first.task, num_envs, asynchronous, context)
    slots: list[_Slot | None] = [None] * num_envs
    tasks = [first.task] * num_envs
    try:
        obs = _assign_jobs(envs, slots, tasks, queue, None)
        while any(slots):
            _plan(policy, obs, slots, n_action_steps)
            actions = np.zeros((num_envs, *envs.single_action_space.shape), dtype=np.float32)
            for i, slot in enumerate(slots):
                if slot is not None:
                    actions[i] = slot.actions.popleft()
                    if slot.job.record:
                        _record(slot, obs, i, actions[i])
            obs, reward, terminated, truncated, info = envs.step(actions)
            success = np.asarray(info.get("is_success", np.zeros(num_envs, bool)), dtype=bool)
            wrong = np.asarray(info.get("wrong_target", np.zeros(num_envs, bool)), dtype=bool)
            for i, slot in enumerate(slots):
                if slot is None:
                    continue
                slot.length += 1
                slot.reward += float(reward[i])
                slot.success |= bool(success[i])
                slot.wrong_target |= bool(wrong[i])
                if terminated[i] or truncated[i]:
                    slots[i] = None
                    yield _result(slot)
            obs = _assign_jobs(envs, slots, tasks, queue, obs)
    finally:
        envs.close()


def _assign_jobs(envs: gym.vector.VectorEnv, slots: list, tasks: list[str], jobs: Iterator[EpisodeJob],
                 obs: dict | None) -> dict | None:
    """Give free environments the next jobs and reset just those; returns the updated observations.

    `tasks` holds each environment's current task and is updated in place; idle environments keep
    theirs, since set_attr writes every environment.
    """
    started = np.zeros(len(slots), dtype=bool)
    for i, slot in enumerate(slots):
        if slot is None:
            job = next(jobs, None)
            if job is None:
                break
            slots[i], tasks[i], started[i] = _Slot(job=job), job.task, True
    if not started.any():
        return obs
    envs.set_attr("next_task", list(tasks))
    # Every environment is written; idle ones are not reset, so their options do not matter.
    envs.set_attr("next_options", [slot.job.options if slot is not None else {} for slot in slots])
    seeds = [slot.job.seed if started[i] else None for i, slot in enumerate(slots)]
    new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": started})
    return new_obs


def _plan(policy: Policy, obs: dict, slots: list, n_action_steps: int) -> None:
    """Query the policy for every environment whose action queue ran out."""
    need = [i for i, slot in enumerate(slots) if slot is not None and not slot.actions]
    if not need:
        return
    batch: dict[str, Any] = {key: value[need] for key, value in obs.items()}
    batch["task"] = [slots[i].job.instruction for i in need]
    batch["task_name"] = [slots[i].job.task for i in need]
    batch["episode_key"] = [slots[i].job.key for i in need]
    chunks = np.asarray(policy.predict_chunk(batch))
    if chunks.ndim != 3 or chunks.shape[0] != len(need):
        raise ValueError(f"Policy returned actions of shape {chunks.shape}; expected [{len(need)}, chunk, dim].")
    for row, i in enumerate(need):
        slots[i].actions.extend(chunks[row, :n_action_steps])


def _record(slot: _Slot, obs: dict, i: int, action: np.ndarray) -> None:
    # Copies: asynchronous observations live in shared memory that the next step overwrites.
    for key, value in obs.items():
        slot.frames.setdefault(key, []).append(np.array(value[i], copy=True))
    slot.frames.setdefault("action", []).append(np.array(action, copy=True))


def _result(slot: _Slot) -> EpisodeResult:
    frames = {k: np.stack(v) for k, v in slot.frames.items()} if slot.job.record else None
    return EpisodeResult(job=slot.job, success=slot.success, length=slot.length, reward=slot.reward,
                         frames=frames, wrong_target=slot.wrong_target and not slot.success)
