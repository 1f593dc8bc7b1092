"""Source `captions`: a short caption of a generated shape scene.

The caption lists the objects from left to right ("a red circle and a blue square"), so it is fully
determined by the image and can be scored by exact match.
"""

from __future__ import annotations

import numpy as np

from vlm2vla.vlm_data.embedded.common import SourceWriter, balanced_answers, pick
from vlm2vla.vlm_data.embedded.scenes import background_for, draw_scene, random_objects, random_scene

QUESTIONS = (
    "Describe the image in a few words.",
    "Write a short caption for this picture.",
    "What is in the image?",
    "List the shapes you see, from left to right.",
)


def caption(shapes: list) -> str:
    """'a red circle, a blue square and a green triangle' (left to right)."""
    ordered = sorted(shapes, key=lambda s: s.x)
    names = [f"{'an' if s.colour[0] in 'aeiou' else 'a'} {s.colour} {s.kind}" for s in ordered]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, image_size: int) -> None:
    """Write `n` caption samples.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        image_size: image side in pixels.
    """
    for count in balanced_answers(n, (1, 2, 3), rng):
        shapes = random_scene(rng, image_size, random_objects(rng, count))
        image = draw_scene(shapes, image_size, background_for(rng))
        writer.add(image, pick(rng, QUESTIONS), caption(shapes))
