import pytest

from vlm2vla.sim.base import SimConfig

# Simulator tests need Meta-World + MuJoCo; the pure-Python ones (tasks, instructions) do not.
requires_metaworld = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("metaworld"), reason="metaworld is not installed"
)


@pytest.fixture(scope="session")
def small_cfg() -> SimConfig:
    return SimConfig(image_size=64)
