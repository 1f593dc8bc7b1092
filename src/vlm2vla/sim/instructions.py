"""Language instructions for Meta-World tasks, with a fixed seen/unseen paraphrase split.

The text lives in ``metaworld_instructions.yaml`` (package data). Every task has a canonical
instruction (LeRobot's TASK_DESCRIPTIONS text) and at least 8 paraphrases. The split rule is
fixed and position-based, so it never depends on a random seed:

    seen   = canonical + all paraphrases except the last 3
    unseen = the last 3 paraphrases

Train on "seen" (or "canonical") instructions; evaluate on "unseen" ones to measure
generalisation to new wordings (the APT claim).

    >>> get_instructions("reach").canonical
    'Reach a goal position'
    >>> sample_instruction("reach-v3", "unseen", np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import numpy as np
import yaml

from vlm2vla.sim.tasks import ALL_TASKS, resolve_task

Split = Literal["canonical", "seen", "unseen"]
SPLITS: tuple[str, ...] = ("canonical", "seen", "unseen")
# How many paraphrases (the last ones of each list) are held out as "unseen".
NUM_UNSEEN = 3
# Every task must have at least this many paraphrases.
MIN_PARAPHRASES = 8
_DATA_FILE = "metaworld_instructions.yaml"


@dataclass(frozen=True)
class TaskInstructions:
    """The instructions of one task.

    Attributes:
        canonical: the reference instruction (also the first entry of ``seen``).
        seen: instructions allowed in training data, canonical first.
        unseen: held-out paraphrases, for evaluation only.
    """

    canonical: str
    seen: tuple[str, ...]
    unseen: tuple[str, ...]


def _parse_entry(task: str, entry: object) -> TaskInstructions:
    where = f"{_DATA_FILE}, task {task!r}"
    if not isinstance(entry, dict) or not isinstance(entry.get("canonical"), str):
        raise ValueError(f"{where}: expected a mapping with a 'canonical' string, got {entry!r}")
    paraphrases = entry.get("paraphrases")
    if not isinstance(paraphrases, list) or not all(isinstance(p, str) for p in paraphrases):
        raise ValueError(f"{where}: 'paraphrases' must be a list of strings")
    if len(paraphrases) < MIN_PARAPHRASES:
        raise ValueError(f"{where}: has {len(paraphrases)} paraphrases, needs {MIN_PARAPHRASES}")
    texts = [entry["canonical"], *paraphrases]
    if len({_normalise(t) for t in texts}) != len(texts):
        raise ValueError(f"{where}: duplicate instructions in {texts}")
    return TaskInstructions(
        canonical=entry["canonical"],
        seen=(entry["canonical"], *paraphrases[:-NUM_UNSEEN]),
        unseen=tuple(paraphrases[-NUM_UNSEEN:]),
    )


@functools.cache
def _load() -> dict[str, TaskInstructions]:
    text = resources.files("vlm2vla.sim").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    missing = sorted(set(ALL_TASKS) - set(raw))
    extra = sorted(set(raw) - set(ALL_TASKS))
    if missing or extra:
        raise ValueError(f"{_DATA_FILE}: missing tasks {missing}, unknown tasks {extra}")
    return {task: _parse_entry(task, raw[task]) for task in ALL_TASKS}


def _normalise(text: str) -> str:
    return " ".join(text.strip().rstrip(".").casefold().split())


def get_instructions(task: str) -> TaskInstructions:
    """Return the canonical, seen and unseen instructions of ``task`` ("reach" or "reach-v3")."""
    return _load()[resolve_task(task)]


def sample_instruction(task: str, split: Split, rng: np.random.Generator) -> str:
    """Draw one instruction of ``task`` from ``split`` ("canonical", "seen" or "unseen").

    Args:
        task: a task name, with or without "-v3".
        split: "canonical" returns the canonical text (``rng`` is not used); "seen" and
            "unseen" draw uniformly from that split.
        rng: the generator to draw with, so callers control reproducibility.
    """
    instructions = get_instructions(task)
    if split == "canonical":
        return instructions.canonical
    if split not in SPLITS:
        raise ValueError(f"Unknown instruction split {split!r}; expected one of {SPLITS}.")
    choices = instructions.seen if split == "seen" else instructions.unseen
    return choices[int(rng.integers(len(choices)))]


def instruction_split(task: str, text: str) -> str | None:
    """Return which split ``text`` belongs to for ``task``: "canonical", "seen", "unseen" or None.

    Matching ignores case, surrounding whitespace, repeated spaces and a trailing period. The
    canonical text is reported as "canonical" although it is also part of the seen set.
    """
    instructions = get_instructions(task)
    key = _normalise(text)
    if key == _normalise(instructions.canonical):
        return "canonical"
    for split, texts in (("seen", instructions.seen), ("unseen", instructions.unseen)):
        if any(key == _normalise(t) for t in texts):
            return split
    return None
