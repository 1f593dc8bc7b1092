import gymnasium as gym
import numpy as np

from tests.sim.conftest import requires_metaworld
from vlm2vla.sim import SimConfig, env_fn

pytestmark = requires_metaworld


def test_async_vector_env_spawn_two_processes():
    cfg = SimConfig(image_size=32)
    fns = [env_fn("reach-v3", cfg), env_fn("button-press-v3", cfg)]
    envs = gym.vector.AsyncVectorEnv(fns, context="spawn")
    try:
        obs, _ = envs.reset(seed=[5, 6])
        assert obs["observation.images.corner2"].shape == (2, 32, 32, 3)
        for _ in range(3):
            obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 4), np.float32))
        assert obs["observation.environment_state"].shape == (2, 39)
        assert info["is_success"].shape == (2,)
        assert obs["observation.images.corner2"].std() > 10
    finally:
        envs.close()
