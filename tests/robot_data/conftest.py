"""Fixtures for the robot_data tests; makes robot_data_helpers importable from the test modules."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from robot_data_helpers import make_episodes  # noqa: E402


@pytest.fixture
def episodes():
    """Three episodes of 10, 17 and 24 frames (see robot_data_helpers.make_episode)."""
    return make_episodes()
