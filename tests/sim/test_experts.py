import numpy as np
import pytest

from tests.sim.conftest import requires_metaworld
from vlm2vla.sim import ALL_TASKS, ScriptedExpert, SimConfig, expert_policy_name, make_env

pytestmark = requires_metaworld


def rollout(task: str, seed: int, expert: ScriptedExpert, cfg: SimConfig) -> tuple[bool, int]:
    env = make_env(task, cfg)
    obs, _ = env.reset(seed=seed)
    for t in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert(obs["observation.environment_state"]))
        if terminated or truncated:
            return info["is_success"], t + 1
    return False, env.max_episode_steps


def test_every_task_has_an_expert_class():
    import metaworld.policies

    for task in ALL_TASKS:
        assert hasattr(metaworld.policies, expert_policy_name(task)), task


@pytest.mark.parametrize("task", ["reach-v3", "button-press-v3"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_succeeds(task, seed):
    cfg = SimConfig(image_size=32, max_episode_steps=200)
    success, steps = rollout(task, seed, ScriptedExpert(task), cfg)
    assert success, f"{task} seed {seed}: no success in {steps} steps"


def test_noisy_expert_is_seeded_and_clipped():
    state = np.zeros(39)
    state[36:39] = [0.5, 0.8, 0.3]  # a far goal: the raw action saturates
    a = [ScriptedExpert("reach", noise_std=0.5, seed=1)(state) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    assert a[0].dtype == np.float32 and a[0].shape == (4,) and np.abs(a[0]).max() <= 1.0
    assert not np.array_equal(a[0], ScriptedExpert("reach", noise_std=0.5, seed=2)(state))
    with pytest.raises(ValueError, match="environment_state"):
        ScriptedExpert("reach")(np.zeros(4))


# (task, seed) pairs on which Meta-World's scripted expert fails within the 500-step cap (measured
# 2026-12-01 at 32 px over seeds 0-2 of all 50 tasks: these two, every other pair succeeds).
KNOWN_EXPERT_FAILURES = {("soccer-v3", 0), ("stick-pull-v3", 0)}


@pytest.mark.slow
@pytest.mark.parametrize("task", ALL_TASKS)
def test_expert_success_all_tasks(task):
    cfg = SimConfig(image_size=32)
    failed = {(task, seed) for seed in range(3) if not rollout(task, seed, ScriptedExpert(task), cfg)[0]}
    assert failed == {pair for pair in KNOWN_EXPERT_FAILURES if pair[0] == task}, f"{task}: failed on {failed}"
