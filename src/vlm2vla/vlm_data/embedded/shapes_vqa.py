"""Source `shapes_vqa`: questions on the shapes, colours and counts of a generated scene.

Question types (round-robin, answers drawn balanced first):
    "What colour is the circle?"           -> a colour (the only circle in the scene)
    "What shape is the blue object?"       -> a shape (the only blue object)
    "How many shapes are there?"           -> a digit, 1-5
    "How many red shapes are there?"       -> a digit, 0-3
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick
from vlm2vla.vlm_data.embedded.scenes import COLOURS, SHAPES, background_for, draw_scene, random_scene

COLOUR_Q = ("What colour is the {shape}?", "Which colour does the {shape} have?", "The {shape} is what colour?")
SHAPE_Q = ("What shape is the {colour} object?", "Which shape is {colour}?", "Name the shape of the {colour} object.")
COUNT_Q = ("How many shapes are there?", "Count the shapes in the image.", "How many objects can you see?")
COLOUR_COUNT_Q = ("How many {colour} shapes are there?", "Count the {colour} shapes.")


def _scene_with(rng: np.random.Generator, first: tuple[str, str], count: int,
                exclude_shape: str | None = None, exclude_colour: str | None = None) -> list[tuple[str, str]]:
    """`first` plus count-1 distinct objects avoiding a shape or colour (keeps the question's answer unique)."""
    pairs = [(k, c) for k in SHAPES for c in COLOURS if k != exclude_shape and c != exclude_colour and (k, c) != first]
    idx = rng.choice(len(pairs), size=count - 1, replace=False)
    return [first] + [pairs[int(i)] for i in idx]


def _colour_question(rng: np.random.Generator, k: int) -> tuple[list, str, str]:
    colour, shape = list(COLOURS)[k % len(COLOURS)], pick(rng, SHAPES)
    objects = _scene_with(rng, (shape, colour), int(rng.integers(1, 4)), exclude_shape=shape)
    return objects, pick(rng, COLOUR_Q).format(shape=shape), colour


def _shape_question(rng: np.random.Generator, k: int) -> tuple[list, str, str]:
    shape, colour = SHAPES[k % len(SHAPES)], pick(rng, list(COLOURS))
    objects = _scene_with(rng, (shape, colour), int(rng.integers(1, 4)), exclude_colour=colour)
    return objects, pick(rng, SHAPE_Q).format(colour=colour), shape


def _count_question(rng: np.random.Generator, k: int) -> tuple[list, str, str]:
    count = 1 + k % 5
    pairs = [(shape, c) for shape in SHAPES for c in COLOURS]
    objects = [pairs[int(i)] for i in rng.choice(len(pairs), size=count, replace=False)]
    return objects, pick(rng, COUNT_Q), str(count)


def _colour_count_question(rng: np.random.Generator, k: int) -> tuple[list, str, str]:
    colour, count = pick(rng, list(COLOURS)), k % 4
    same = [(SHAPES[int(i)], colour) for i in rng.permutation(len(SHAPES))[:count]]
    others = [(s, c) for s in SHAPES for c in COLOURS if c != colour]
    extra = [others[int(i)] for i in rng.choice(len(others), size=int(rng.integers(1, 3)), replace=False)]
    return same + extra, pick(rng, COLOUR_COUNT_Q).format(colour=colour), str(count)


MAKERS = (_colour_question, _shape_question, _count_question, _colour_count_question)


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, image_size: int) -> None:
    """Write `n` shape-VQA samples (see the module docstring).

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        image_size: image side in pixels.
    """
    for k in range(n):
        maker = MAKERS[k % len(MAKERS)]
        objects, question, answer = maker(rng, k // len(MAKERS))
        shapes = random_scene(rng, image_size, objects)
        while len(shapes) != len(objects):  # too crowded to place all (rare): the answer would be wrong
            shapes = random_scene(rng, image_size, objects)
        writer.add(draw_scene(shapes, image_size, background_for(rng)), question, answer)
