"""Our v3.0 files against the real LeRobot library (run in a separate venv; see compat_check.py).

    LEROBOT_PYTHON=/tmp/lerobot-venv/bin/python pytest -m slow tests/robot_data/test_lerobot_compat.py
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "lerobot_compat"))

import compat_check  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lerobot_python():
    python, reason = compat_check.lerobot_python()
    if python is None:
        pytest.skip(f"LeRobot is not importable: {reason}")
    return python


@pytest.mark.parametrize("image_dtype", ["image", "video"])
@pytest.mark.parametrize("check", compat_check.CHECKS, ids=lambda c: c.__name__)
def test_against_lerobot(lerobot_python, tmp_path_factory, check, image_dtype):
    # The cross-append check extends the datasets the first two checks wrote: share one folder.
    tmp = tmp_path_factory.getbasetemp() / f"lerobot-compat-{image_dtype}"
    tmp.mkdir(exist_ok=True)
    if check is compat_check.check_cross_append and not (tmp / f"lerobot-{image_dtype}").exists():
        pytest.skip("needs the datasets of the two previous checks")
    assert check(lerobot_python, tmp, image_dtype) == []
