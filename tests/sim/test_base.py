import pickle

import pytest

from vlm2vla.sim import gl
from vlm2vla.sim.base import SimConfig, available_simulators, env_fn, make_env, register_simulator


def test_defaults():
    cfg = SimConfig()
    assert (cfg.name, cfg.image_size, cfg.camera, cfg.fast_render) == ("metaworld", 128, "corner2", True)
    assert cfg.max_episode_steps is None and cfg.terminate_on_success and cfg.privileged_state
    assert "metaworld" in available_simulators()


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"name": "libero"}, "libero"),
        ({"image_size": 0}, "0"),
        ({"camera": ""}, "camera"),
        ({"max_episode_steps": -3}, "-3"),
    ],
)
def test_config_validation_names_bad_value(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        SimConfig(**kwargs)


def test_register_simulator_rejects_conflicts():
    suite = "vlm2vla.sim.metaworld_suite:SUITE"
    register_simulator("metaworld", "vlm2vla.sim.metaworld_env:make_metaworld_env", suite)  # same: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_simulator("metaworld", "other.module:make", suite)
    with pytest.raises(ValueError, match="module:attribute"):
        register_simulator("other", "no_colon", suite)


def test_env_fn_is_picklable():
    fn = pickle.loads(pickle.dumps(env_fn("reach-v3", SimConfig(image_size=32))))
    assert fn.func is make_env and fn.args == ("reach-v3", SimConfig(image_size=32))


def test_gl_backend_choice(monkeypatch):
    monkeypatch.setattr(gl.os.path, "exists", lambda path: path == "/dev/nvidia0")
    assert gl.default_gl_backend() == "egl"
    monkeypatch.setattr(gl.os.path, "exists", lambda path: False)
    assert gl.default_gl_backend() == "osmesa"
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    assert gl.configure_mujoco_gl() == "glfw"  # a user's choice is kept
