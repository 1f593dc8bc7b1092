"""Families, layouts, instructions and evaluation splits of the language-grounded suite.

A task is a family, named "grounded-<family>":

    grounded-reach          reach the {blue, green, yellow} ball
    grounded-push           push the {colour} puck onto the dark goal disc
    grounded-lift           pick up the {colour} block (lift it 10 cm)
    grounded-reach-spatial  reach the {left, middle, right} ball; the three balls look the same

Every scene holds all three candidates; their places are shuffled at every reset, so only the
instruction says which one is meant. Splits (fixed, never drawn at random):

    canonical           the first template x seen (family, attribute) pairs, training layouts
    seen                seen templates x seen pairs, training layouts (what training data uses)
    unseen_paraphrase   the 3 held-out templates x seen pairs, training layouts
    unseen_composition  seen templates x the held-out pairs (HELD_OUT), training layouts
    position            seen templates x seen pairs, layouts from the "shifted" region

HELD_OUT keeps each colour seen with two of the three colour families and each colour family
seen with two colours, so a held-out pair combines a known word with a known skill.
reach-spatial has no held-out pair (its words occur in no other family): it has no
unseen_composition episodes.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import yaml

from vlm2vla.sim.grounded.scene import COLOURS, NUM_TARGETS, SceneSpec
from vlm2vla.sim.tasks import UnknownTaskError

PREFIX = "grounded-"
SPATIAL = ("left", "middle", "right")
SPLITS: tuple[str, ...] = ("canonical", "seen", "unseen_paraphrase", "unseen_composition", "position")
# Splits training data may use; the others are held out for evaluation.
TRAIN_SPLITS: tuple[str, ...] = ("canonical", "seen")
LAYOUTS = ("train", "shifted")
NUM_UNSEEN_TEMPLATES = 3
# (family, attribute) pairs never named in training data (the unseen_composition split).
HELD_OUT: frozenset[tuple[str, str]] = frozenset({("reach", "yellow"), ("push", "blue"), ("lift", "green")})

# Candidate slots: a row across the table in front of the robot, shuffled at every reset, each
# jittered. "shifted" moves the row 12 cm farther away (never seen in training layouts).
SLOT_X = (-0.15, 0.0, 0.15)
ROW_Y = {"train": 0.62, "shifted": 0.74}
JITTER = (0.025, 0.03)
GOAL_Y = {"train": 0.82, "shifted": 0.88}
GOAL_X_RANGE = 0.1
_DATA_FILE = "instructions.yaml"


class UnknownGroundedNameError(UnknownTaskError):
    """A family, attribute, group or split name the grounded suite does not have."""


@dataclass(frozen=True)
class Family:
    """One task family: its scene, the words that name a candidate, and its goal test."""

    name: str
    scene: SceneSpec
    attributes: tuple[str, ...]
    max_steps: int
    # (tcp [3], object positions [k, 3], goal [3]) -> which candidates have reached their goal [k]
    reached: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

    @property
    def task(self) -> str:
        return PREFIX + self.name

    @property
    def templates(self) -> tuple[str, ...]:
        return _templates()[self.name]

    @property
    def seen_templates(self) -> tuple[str, ...]:
        return self.templates[:-NUM_UNSEEN_TEMPLATES]

    @property
    def unseen_templates(self) -> tuple[str, ...]:
        return self.templates[-NUM_UNSEEN_TEMPLATES:]

    def canonical(self, target: str) -> str:
        return self.templates[0].format(target=target)

    def attributes_in(self, split: str) -> tuple[str, ...]:
        """The attributes this family names in ``split``."""
        held = tuple(a for a in self.attributes if (self.name, a) in HELD_OUT)
        if split == "unseen_composition":
            return held
        return tuple(a for a in self.attributes if a not in held)


def _near_tcp(radius: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda tcp, objects, goal: np.linalg.norm(objects - tcp, axis=1) <= radius


def _on_goal(radius: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda tcp, objects, goal: np.linalg.norm(objects[:, :2] - goal[:2], axis=1) <= radius


def _lifted(height: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda tcp, objects, goal: objects[:, 2] >= height


COLOUR_NAMES = tuple(COLOURS)
FAMILIES: dict[str, Family] = {f.name: f for f in (
    # Meta-World's reach-v3 counts 5 cm as reached; the balls are 15 cm apart.
    Family("reach", SceneSpec("ball", 0.05, coloured=True, goal=False), COLOUR_NAMES, 150, _near_tcp(0.05)),
    Family("push", SceneSpec("puck", 0.035, coloured=True, goal=True), COLOUR_NAMES, 300, _on_goal(0.06)),
    Family("lift", SceneSpec("block", 0.03, coloured=True, goal=False), COLOUR_NAMES, 200, _lifted(0.10)),
    Family("reach-spatial", SceneSpec("ball", 0.05, coloured=False, goal=False), SPATIAL, 150, _near_tcp(0.05)),
)}
GROUPS: dict[str, tuple[str, ...]] = {
    "grounded": tuple(f.task for f in FAMILIES.values()),
    "colour": tuple(f.task for f in FAMILIES.values() if f.scene.coloured),
}


@functools.cache
def _templates() -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load(resources.files("vlm2vla.sim.grounded").joinpath(_DATA_FILE).read_text("utf-8"))
    if set(raw) != set(FAMILIES):
        raise ValueError(f"{_DATA_FILE}: families {sorted(raw)}, expected {sorted(FAMILIES)}")
    for name, templates in raw.items():
        if len(templates) < NUM_UNSEEN_TEMPLATES + 2 or any("{target}" not in t for t in templates):
            raise ValueError(f"{_DATA_FILE}, {name}: needs >= {NUM_UNSEEN_TEMPLATES + 2} templates, "
                             "each with {target}")
    return {name: tuple(t) for name, t in raw.items()}


def _unknown(kind: str, name: str, valid: Sequence[str]) -> UnknownGroundedNameError:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return UnknownGroundedNameError(f"Unknown grounded-suite {kind} {name!r}.{hint} Valid: {', '.join(valid)}.")


def resolve_family(name: str) -> Family:
    """The family of a task name ("grounded-push" or "push").

    Raises:
        UnknownGroundedNameError: not a family; the message lists the valid ones.
    """
    key = name.strip().lower().removeprefix(PREFIX)
    if key not in FAMILIES:
        raise _unknown("family", name, [f.task for f in FAMILIES.values()])
    return FAMILIES[key]


def resolve_tasks(spec: str | Sequence[str]) -> list[str]:
    """Expand families and groups ("grounded", "colour") into task names, de-duplicated, in order."""
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise ValueError(f"Empty task spec {spec!r}: name families or groups ({', '.join(GROUPS)}).")
    tasks: list[str] = []
    for name in names:
        group = GROUPS.get(name.lower())
        # Only prefixed names: a bare "push" or "reach" is a Meta-World task.
        if group is None and not (name.lower().startswith(PREFIX) and name.lower().removeprefix(PREFIX) in FAMILIES):
            raise _unknown("family or group", name, [*GROUPS, *(f.task for f in FAMILIES.values())])
        tasks.extend(group if group is not None else [resolve_family(name).task])
    return list(dict.fromkeys(tasks))


def check_split(split: str) -> str:
    """``split`` if it is a split of the suite, else an error listing them."""
    if split not in SPLITS:
        raise _unknown("split", split, SPLITS)
    return split


def check_attribute(family: Family, attribute: str) -> str:
    """``attribute`` if ``family`` names candidates by it, else an error listing the valid ones."""
    if attribute not in family.attributes:
        raise _unknown(f"{family.name} target", attribute, family.attributes)
    return attribute


def draw_layout(family: Family, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Candidate positions [k, 3] (scene order) and the goal [3] of one episode.

    The candidates take the row's slots in a random order, each jittered; the goal (push) sits
    beyond the row at a random x.
    """
    if layout not in LAYOUTS:
        raise _unknown("layout", layout, LAYOUTS)
    order = rng.permutation(NUM_TARGETS)
    jitter = rng.uniform(-1.0, 1.0, size=(NUM_TARGETS, 2)) * JITTER
    z = {"ball": family.scene.size, "puck": 0.02, "block": family.scene.size}[family.scene.kind]
    positions = np.array([[SLOT_X[order[i]] + jitter[i, 0], ROW_Y[layout] + jitter[i, 1], z]
                          for i in range(NUM_TARGETS)])
    goal = np.array([rng.uniform(-GOAL_X_RANGE, GOAL_X_RANGE), GOAL_Y[layout], 0.001])
    return positions, goal


def target_index(family: Family, attribute: str, positions: np.ndarray) -> int:
    """Scene index of the candidate ``attribute`` names, given the candidates' positions.

    Colours name a fixed object; position words name whichever ball is at that place in the
    image of the suite's front camera, which faces the robot from across the table: "left" is
    the ball with the largest world x (the robot's right-hand side).
    """
    check_attribute(family, attribute)
    if family.scene.coloured:
        return COLOUR_NAMES.index(attribute)
    by_image_x = np.argsort(-positions[:, 0])  # left to right in the image
    return int(by_image_x[SPATIAL.index(attribute)])


@dataclass(frozen=True)
class GroundedEpisode:
    """What one episode of a split asks for."""

    instruction: str
    target: str
    layout: str


def sample_episode(task: str, split: str, rng: np.random.Generator) -> GroundedEpisode | None:
    """Draw the named target and instruction of one episode of ``split``; None if the family has
    no episodes in that split (reach-spatial in unseen_composition)."""
    family = resolve_family(task)
    check_split(split)
    attributes = family.attributes_in(split)
    if not attributes:
        return None
    target = attributes[int(rng.integers(len(attributes)))]
    templates = {"canonical": family.templates[:1], "unseen_paraphrase": family.unseen_templates}.get(
        split, family.seen_templates)
    template = templates[int(rng.integers(len(templates)))]
    layout = "shifted" if split == "position" else "train"
    return GroundedEpisode(instruction=template.format(target=target), target=target, layout=layout)


def instruction_split(task: str, text: str) -> str | None:
    """Which template set ``text`` comes from for ``task`` ("seen" or "unseen_paraphrase"), or None."""
    family = resolve_family(task)
    key = " ".join(text.casefold().split())
    for split, templates in (("seen", family.seen_templates), ("unseen_paraphrase", family.unseen_templates)):
        for template in templates:
            if any(key == " ".join(template.format(target=a).casefold().split()) for a in family.attributes):
                return split
    return None
