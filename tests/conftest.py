"""Shared test set-up: headless MuJoCo rendering before anything imports it."""

import os

os.environ.setdefault("MUJOCO_GL", "egl" if os.path.exists("/dev/nvidia0") else "osmesa")
