import numpy as np
import pytest

from tests.sim.conftest import requires_metaworld
from vlm2vla.sim import SimConfig, make_env

pytestmark = requires_metaworld
IMAGE = "observation.images.corner2"


@pytest.fixture(scope="module")
def env(small_cfg):
    env = make_env("pick-place-v3", small_cfg)
    yield env
    env.close()


def test_spaces_and_attributes(env):
    assert env.task == "pick-place-v3"
    assert env.instruction == "Pick and place a puck to a goal"
    assert env.max_episode_steps == 500
    space = env.observation_space
    assert set(space.spaces) == {IMAGE, "observation.state", "observation.environment_state"}
    assert space[IMAGE].shape == (64, 64, 3) and space[IMAGE].dtype == np.uint8
    assert space["observation.state"].shape == (4,) and space["observation.state"].dtype == np.float32
    assert space["observation.environment_state"].shape == (39,)
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()


def test_observation_matches_space(env):
    obs, info = env.reset(seed=0)
    assert info == {"is_success": False}
    assert env.observation_space.contains(obs)
    state = obs["observation.environment_state"]
    np.testing.assert_array_equal(obs["observation.state"], state[:4])
    assert np.abs(state[36:39]).sum() > 0, "goal must be observable (obs[36:39])"
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and not truncated and "is_success" in info


def test_seeded_reset_is_reproducible(env):
    first, _ = env.reset(seed=3)
    env.step(np.ones(4, np.float32))
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    layout = slice(4, 7), slice(36, 39)  # object and goal positions
    for part in layout:
        assert not np.allclose(
            first["observation.environment_state"][part], other["observation.environment_state"][part]
        )
    assert not np.array_equal(first[IMAGE], other[IMAGE])


def test_reproducible_across_env_instances(small_cfg):
    a, b = make_env("push-v3", small_cfg), make_env("push-v3", small_cfg)
    obs_a = [a.reset(seed=11)[0], a.reset()[0]]
    obs_b = [b.reset(seed=11)[0], b.reset()[0]]  # unseeded resets continue the seeded stream
    for x, y in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(x["observation.environment_state"], y["observation.environment_state"])
    assert not np.array_equal(obs_a[0]["observation.environment_state"], obs_a[1]["observation.environment_state"])


def test_image_not_blank_and_upright(env):
    obs, _ = env.reset(seed=0)
    image = obs[IMAGE].astype(np.float32)
    assert image.std() > 20 and 30 < image.mean() < 230
    assert np.array_equal(env.render(), obs[IMAGE])
    # Upright corner2 view: the gray backdrop is at the top, the wooden table (red-brown) below.
    top, bottom = image[:8], image[-16:]
    assert (bottom[..., 0] - bottom[..., 2]).mean() > (top[..., 0] - top[..., 2]).mean()


def test_fast_render_differs_but_keeps_the_scene():
    fast, slow = (
        make_env("reach-v3", SimConfig(image_size=64)),
        make_env("reach-v3", SimConfig(image_size=64, fast_render=False)),
    )
    a, b = fast.reset(seed=0)[0][IMAGE], slow.reset(seed=0)[0][IMAGE]
    assert fast.unwrapped._env.model.vis.quality.offsamples == 0
    assert slow.unwrapped._env.model.vis.quality.offsamples > 0
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() > 0.5 and diff.mean() < 40  # shadows/reflections differ, layout the same


def test_truncation_at_max_episode_steps():
    env = make_env("reach-v3", SimConfig(image_size=32, max_episode_steps=3, terminate_on_success=False))
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4, np.float32))
    env.reset(seed=0)
    env.step(np.zeros(4, np.float32))


def test_step_before_reset_and_bad_action(small_cfg):
    env = make_env("reach-v3", small_cfg)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros(4, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))


def test_no_privileged_state_and_other_camera():
    env = make_env("reach", SimConfig(image_size=32, privileged_state=False, camera="topview"))
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation.images.topview", "observation.state"}
    with pytest.raises(ValueError, match="corner2"):
        make_env("reach", SimConfig(camera="nope"))


def test_several_envs_in_one_process_all_render():
    envs = [make_env(task, SimConfig(image_size=32)) for task in ("reach-v3", "push-v3", "door-open-v3")]
    frames = [env.reset(seed=0)[0][IMAGE] for env in envs]
    envs.pop().close()
    for env in envs:  # rendering after other envs were created (and one closed) still works
        obs = env.step(np.zeros(4, np.float32))[0]
        assert obs[IMAGE].std() > 10
    assert all(f.std() > 10 for f in frames)
