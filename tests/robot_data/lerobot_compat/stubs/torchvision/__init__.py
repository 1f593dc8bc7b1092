"""Minimal torchvision stand-in for running LeRobot's dataset code in a throwaway venv.

PyPI's torchvision wheels are built against CUDA torch and fail to load with the CPU wheel
used here. LeRobot's dataset modules need only `transforms.ToTensor`, `transforms.v2` names at
import time, and (for the "pyav" video backend) `io.VideoReader` plus `set_video_backend`.
This stub provides exactly those, implemented with PIL / PyAV. Used only by the LeRobot
compatibility check, never by vlm2vla.
"""

from torchvision import io, transforms  # noqa: F401

__version__ = "0.0.0+vlm2vla-stub"
_backend = "pyav"


def set_video_backend(backend: str) -> None:
    global _backend
    if backend != "pyav":
        raise ValueError(f"this stub only implements the pyav backend, not {backend!r}")
    _backend = backend


def get_video_backend() -> str:
    return _backend
