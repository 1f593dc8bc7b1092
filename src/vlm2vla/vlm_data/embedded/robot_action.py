"""Source `robot_action`: the scripted expert's next action on a robot frame, written as words.

    "Which way will the gripper move next?"     -> forward / backward / left / right / up / down
    "Will the gripper open or close next?"      -> open / close

Directions are the robot's (Meta-World world frame, the robot at the origin facing +y): +x right,
-x left, +y forward (away from the robot base), -y backward, +z up, -z down. The direction is the
largest component of the action's xyz part, asked only when it is clear: |a| >= MIN_MOVE and at
least DOMINANCE times the second largest. The gripper effort's sign decides open (< 0) / close (> 0).
For simulator frames the action is the expert's noise-free action at that frame.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick
from vlm2vla.vlm_data.embedded.frames import FrameBank

MIN_MOVE = 0.3
DOMINANCE = 1.5
AXIS_WORDS = (("left", "right"), ("backward", "forward"), ("down", "up"))
MOVE_Q = ("Which way will the gripper move next?", "In which direction should the robot move its gripper next?",
          "What is the robot's next move: left, right, forward, backward, up or down?")
GRIP_Q = ("Will the gripper open or close next?", "Should the robot open or close its gripper now?")


def move_word(action: np.ndarray) -> str | None:
    """The dominant direction of action[:3] as a word, or None when no direction dominates."""
    xyz = np.abs(np.asarray(action[:3], dtype=np.float64))
    order = np.argsort(xyz)[::-1]
    top, second = xyz[order[0]], xyz[order[1]]
    if top < MIN_MOVE or top < DOMINANCE * second:
        return None
    return AXIS_WORDS[int(order[0])][int(action[order[0]] > 0)]


def grip_word(action: np.ndarray) -> str:
    """"close" for a positive gripper effort, else "open"."""
    return "close" if float(action[3]) > 0 else "open"


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, bank: FrameBank) -> None:
    """Write `n` robot-action samples, answers balanced over the directions and open/close.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        bank: robot frames with the action taken at each.
    """
    pools: dict[tuple[str, str], list[int]] = {}
    for i, action in enumerate(bank.action):
        if (word := move_word(action)) is not None:
            pools.setdefault(("move", word), []).append(i)
        pools.setdefault(("grip", grip_word(action)), []).append(i)
    # Half the questions on movement, half on the gripper; answers balanced within each.
    moves = sorted(k for k in pools if k[0] == "move")
    grips = sorted(k for k in pools if k[0] == "grip")
    for k in range(n):
        group = moves if (k % 2 == 0 and moves) or not grips else grips
        kind, answer = group[(k // 2) % len(group)]
        i = pools[(kind, answer)][int(rng.integers(len(pools[(kind, answer)])))]
        writer.add(bank.images[i], pick(rng, MOVE_Q if kind == "move" else GRIP_Q), answer,
                   action=[round(float(v), 4) for v in bank.action[i]])
