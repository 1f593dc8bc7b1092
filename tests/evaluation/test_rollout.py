"""The rollout engine on real Meta-World environments (small step caps keep it fast)."""

import numpy as np
import pytest

from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig, make_policy
from vlm2vla.evaluation.rollout import EpisodeJob, run_episodes
from vlm2vla.sim import SimConfig

SIM = SimConfig(image_size=32, max_episode_steps=30)


class CountingChunkPolicy(Policy):
    """Returns chunks whose actions encode (call number, position in chunk)."""

    chunk_size = 5

    def __init__(self) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []

    def predict_chunk(self, batch):
        self.calls += 1
        n = len(batch["task_name"])
        self.batch_sizes.append(n)
        chunk = np.zeros((n, self.chunk_size, 4), dtype=np.float32)
        chunk[:, :, 0] = self.calls / 100
        chunk[:, :, 1] = np.arange(self.chunk_size) / 10
        return chunk


def test_replans_every_n_action_steps_and_records_executed_actions():
    policy = CountingChunkPolicy()
    jobs = [EpisodeJob(task="reach-v3", seed=1, instruction="reach", record=True)]
    (result,) = list(run_episodes(jobs, policy, SIM, num_envs=1, n_action_steps=3, asynchronous=False))
    assert result.length == 30 and not result.success
    assert policy.calls == 10  # 30 steps / 3 actions per chunk
    actions = result.frames["action"]
    assert actions.shape == (30, 4)
    # positions 0, 1, 2 of each chunk are executed, then a new chunk starts
    np.testing.assert_allclose(actions[:6, 1], [0, 0.1, 0.2, 0, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(actions[::3, 0], np.arange(1, 11) / 100, atol=1e-6)
    assert result.frames["observation.images.corner2"].shape == (30, 32, 32, 3)
    assert result.frames["observation.state"].shape == (30, 4)


def test_every_job_runs_once_across_tasks_with_more_jobs_than_envs():
    jobs = [EpisodeJob(task=t, seed=s, instruction=t, episode=s) for t in ("reach-v3", "button-press-v3")
            for s in range(3)]
    results = list(run_episodes(jobs, make_policy(PolicyConfig(type="random")), SIM, num_envs=2,
                                asynchronous=False))
    assert sorted((r.job.task, r.job.episode) for r in results) == sorted((j.task, j.episode) for j in jobs)
    assert all(r.length == 30 and r.frames is None for r in results)


def test_same_seed_same_rollout():
    sim = SimConfig(image_size=32, max_episode_steps=40)
    jobs = [EpisodeJob(task="button-press-v3", seed=7, instruction="x", record=True)]
    a, b = (list(run_episodes(jobs, make_policy(PolicyConfig(type="expert")), sim, num_envs=1,
                              asynchronous=False))[0] for _ in range(2))
    np.testing.assert_array_equal(a.frames["observation.state"], b.frames["observation.state"])


def test_policy_with_wrong_output_shape_is_reported():
    class Bad(Policy):
        def predict_chunk(self, batch):
            return np.zeros((4,))

    jobs = [EpisodeJob(task="reach-v3", seed=0, instruction="x")]
    with pytest.raises(ValueError, match="expected \\[1, chunk, dim\\]"):
        list(run_episodes(jobs, Bad(), SIM, num_envs=1, asynchronous=False))


def test_unknown_policy_type_suggests_close_names():
    with pytest.raises(ValueError, match=r"did you mean .random.\?"):
        make_policy(PolicyConfig(type="randm"))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_fewer_jobs_than_envs_runs_every_job(asynchronous):
    # One episode on a two-env pool: the env that never gets a job must not break the batch (it was
    # never reset and returned None, which the vector env could not write into its batch).
    jobs = [EpisodeJob(task="reach-v3", seed=3, instruction="reach")]
    policy = CountingChunkPolicy()
    results = list(run_episodes(jobs, policy, SIM, num_envs=2, asynchronous=asynchronous))
    assert [(r.job.task, r.length) for r in results] == [("reach-v3", 30)]
    assert set(policy.batch_sizes) == {1}

