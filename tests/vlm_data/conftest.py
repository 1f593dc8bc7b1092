"""Fixtures for the vlm_data tests; makes vlm_data_helpers importable from the test modules."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
