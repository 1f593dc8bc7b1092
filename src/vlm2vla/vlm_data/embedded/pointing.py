"""Source `pointing`: "Point to the puck." on simulator frames, answered with the thing's image position.

Answer format (used everywhere in this project): "(x, y)" with x and y integers in 0-100, the pixel
position divided by the image side: x from the left edge, y from the top edge. The position is the
projection of the thing's 3-D position (Meta-World state) through the simulator camera; the record
also keeps that 3-D position ("world_xyz") so the answer can be checked.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick
from vlm2vla.vlm_data.embedded.frames import FrameBank, frame_entities, visible_pixels

QUESTIONS = ("Point to the {name}.", "Where is the {name}? Answer with (x, y) coordinates.",
             "Give the image coordinates of the {name}.", "Locate the {name} in the image.")


def format_point(uv: np.ndarray, size: int) -> str:
    """'(x, y)' on the 0-100 grid for pixel position uv in a size x size image."""
    x, y = (int(np.clip(round(float(c) / size * 100), 0, 100)) for c in uv)
    return f"({x}, {y})"


def parse_point(text: str) -> tuple[int, int] | None:
    """Inverse of format_point: '(x, y)' -> (x, y), or None when the text is not a point."""
    parts = text.strip().strip("()").split(",")
    try:
        return (int(parts[0]), int(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, bank: FrameBank) -> None:
    """Write `n` pointing samples, cycling over the kinds of thing (gripper, objects, targets).

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        bank: simulator frames with env_state and camera.
    """
    by_kind: dict[str, list[tuple[int, str]]] = {"gripper": [], "object": [], "target": []}
    for i in range(len(bank)):
        for name in visible_pixels(bank, i):
            kind = "gripper" if name == "gripper" else "target" if name.endswith(" dot") else "object"
            by_kind[kind].append((i, name))
    kinds = [k for k, v in by_kind.items() if v]
    for k in range(n):
        options = by_kind[kinds[k % len(kinds)]]
        i, name = options[int(rng.integers(len(options)))]
        xyz = frame_entities(bank, i)[name]
        uv = bank.camera.project(xyz[None])[0]
        writer.add(bank.images[i], pick(rng, QUESTIONS).format(name=name), format_point(uv, bank.camera.size),
                   world_xyz=[round(float(v), 5) for v in xyz], frame_task=bank.tasks[i])
