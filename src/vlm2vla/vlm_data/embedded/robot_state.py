"""Source `robot_state`: questions on the robot's state in a frame of a robot episode.

    "Is the gripper open or closed?"                          -> open / closed   (observation.state[3])
    "Which is nearer to the gripper, the puck or the blue dot?" -> the nearer one's name (3-D distance)

The gripper opening (observation.state[3]) is ~1.0 fully open and <= ~0.45 closed (on nothing or on an
object); frames in between (the fingers moving) are not asked. The "nearer" question needs the
simulator state and is asked only when one distance is at least NEAR_RATIO times the other.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick
from vlm2vla.vlm_data.embedded.frames import FrameBank, visible_pixels

OPEN_ABOVE = 0.8
CLOSED_BELOW = 0.5
NEAR_RATIO = 1.5
GRIPPER_Q = ("Is the gripper open or closed?", "Is the robot's gripper open or closed?",
             "What state is the gripper in, open or closed?")
NEAR_Q = ("Which is nearer to the gripper, the {a} or the {b}?", "Is the gripper closer to the {a} or the {b}?")


def gripper_state(opening: float) -> str | None:
    """"open", "closed", or None for a half-open gripper."""
    if opening > OPEN_ABOVE:
        return "open"
    return "closed" if opening < CLOSED_BELOW else None


def _near_candidates(bank: FrameBank) -> list[tuple[int, str, str, str]]:
    """(frame, a, b, nearer) for frames where both things are visible and one is clearly nearer."""
    if bank.env_state is None or bank.camera is None:
        return []
    out = []
    for i in range(len(bank)):
        pix = visible_pixels(bank, i)
        names = [n for n in pix if n != "gripper"]
        if len(names) != 2 or "gripper" not in pix:
            continue
        hand = bank.env_state[i][0:3]
        positions = {"object": bank.env_state[i][4:7], "target": bank.env_state[i][36:39]}
        obj, target = sorted(names, key=lambda n: n.endswith(" dot"))  # object first, then the target dot
        d_obj, d_target = (float(np.linalg.norm(positions[k] - hand)) for k in ("object", "target"))
        if max(d_obj, d_target) >= NEAR_RATIO * min(d_obj, d_target):
            out.append((i, obj, target, obj if d_obj < d_target else target))
    return out


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, bank: FrameBank) -> None:
    """Write `n` robot-state samples: gripper open/closed, and (with simulator state) the nearer thing.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        bank: robot frames; the "nearer" question needs env_state and camera.
    """
    grip = {"open": [], "closed": []}
    for i, opening in enumerate(bank.state[:, 3]):
        if (state := gripper_state(float(opening))) is not None:
            grip[state].append(i)
    near = _near_candidates(bank)
    near_by_answer = {"object": [c for c in near if c[3] == c[1]], "target": [c for c in near if c[3] == c[2]]}
    slots = [("grip", a) for a in grip if grip[a]] + [("near", a) for a in near_by_answer if near_by_answer[a]]
    for k in range(n):
        kind, answer = slots[k % len(slots)]
        if kind == "grip":
            i = grip[answer][int(rng.integers(len(grip[answer])))]
            writer.add(bank.images[i], pick(rng, GRIPPER_Q), answer, gripper_opening=round(float(bank.state[i, 3]), 4))
            continue
        i, a, b, nearer = near_by_answer[answer][int(rng.integers(len(near_by_answer[answer])))]
        first, second = (a, b) if rng.random() < 0.5 else (b, a)  # the answer is not always named first
        writer.add(bank.images[i], pick(rng, NEAR_Q).format(a=first, b=second), nearer,
                   gripper_opening=round(float(bank.state[i, 3]), 4))
