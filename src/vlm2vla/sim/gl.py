"""Pick the MuJoCo OpenGL backend before MuJoCo is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so this module runs from
``vlm2vla/sim/__init__.py`` before any simulator module imports it. A value the user already set
is respected; otherwise "egl" (headless GPU) is used when an NVIDIA device is visible and
"osmesa" (software, CPU) otherwise.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


def default_gl_backend() -> str:
    """Return "egl" when an NVIDIA GPU device node exists, else "osmesa"."""
    return "egl" if os.path.exists("/dev/nvidia0") else "osmesa"


def configure_mujoco_gl() -> str:
    """Set ``MUJOCO_GL`` unless the user set it (MuJoCo then sets ``PYOPENGL_PLATFORM`` to match).

    Returns:
        The backend in effect.
    """
    backend = os.environ.get("MUJOCO_GL")
    if backend:
        return backend
    backend = default_gl_backend()
    if "mujoco" in sys.modules:
        logger.warning(
            "mujoco was imported before vlm2vla.sim and MUJOCO_GL is unset; set MUJOCO_GL=%s "
            "before importing mujoco to render headless.",
            backend,
        )
    os.environ["MUJOCO_GL"] = backend
    return backend
