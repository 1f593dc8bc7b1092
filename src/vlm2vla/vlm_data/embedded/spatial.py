"""Source `spatial`: spatial relations between things in simulator frames, answered in image terms.

    "Is the puck to the left or to the right of the gripper?"   -> left / right
    "Is the puck above or below the gripper in the image?"      -> above / below
    "Is the green dot left or right of the puck?"               -> left / right

Relations come from the 3-D positions in the Meta-World state projected through the camera; pairs
closer than MIN_GAP pixels along the asked axis are not asked (too close to call from the image).
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick
from vlm2vla.vlm_data.embedded.frames import FrameBank, visible_pixels

MIN_GAP = 6.0
HORIZONTAL_Q = ("Is the {a} to the left or to the right of the {b}?", "Is the {a} left or right of the {b}?",
                "Relative to the {b}, is the {a} on the left or the right?")
VERTICAL_Q = ("Is the {a} above or below the {b} in the image?", "In the picture, is the {a} higher or lower "
              "than the {b}? Answer above or below.")


def relation(uv_a: np.ndarray, uv_b: np.ndarray, axis: int) -> str | None:
    """"left"/"right" (axis 0) or "above"/"below" (axis 1) of a relative to b in pixels; None if too close."""
    gap = float(uv_a[axis] - uv_b[axis])
    if abs(gap) < MIN_GAP:
        return None
    if axis == 0:
        return "right" if gap > 0 else "left"
    return "below" if gap > 0 else "above"  # image v grows downwards


def pairs(names: list[str]) -> list[tuple[str, str]]:
    """(a, b) pairs to ask about: each thing relative to the gripper, each target dot relative to each object,
    and the objects of a scene with several (the grounded suite's candidates) relative to each other."""
    others = [n for n in names if n != "gripper"]
    out = [(n, "gripper") for n in others] if "gripper" in names else []
    targets = [n for n in others if n.endswith(" dot")]
    objects = [o for o in others if o not in targets]
    return out + [(t, o) for t in targets for o in objects] + [(a, b) for a in objects for b in objects if a != b]


def candidates(bank: FrameBank) -> dict[str, list[tuple[int, int, str, str]]]:
    """Every askable (frame, axis, a, b) in the bank, grouped by answer."""
    out: dict[str, list[tuple[int, int, str, str]]] = {"left": [], "right": [], "above": [], "below": []}
    for i in range(len(bank)):
        pix = visible_pixels(bank, i)
        for a, b in pairs(list(pix)):
            for axis in (0, 1):
                answer = relation(pix[a], pix[b], axis)
                if answer is not None:
                    out[answer].append((i, axis, a, b))
    return out


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, bank: FrameBank) -> None:
    """Write `n` spatial-relation samples, answers balanced over left/right/above/below.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        bank: simulator frames with env_state and camera.
    """
    pools = candidates(bank)
    answers = [a for a in ("left", "right", "above", "below") if pools[a]]
    for k in range(n):
        answer = answers[k % len(answers)]
        i, axis, a, b = pools[answer][int(rng.integers(len(pools[answer])))]
        question = pick(rng, HORIZONTAL_Q if axis == 0 else VERTICAL_Q).format(a=a, b=b)
        writer.add(bank.images[i], question, answer, frame_task=bank.tasks[i])
