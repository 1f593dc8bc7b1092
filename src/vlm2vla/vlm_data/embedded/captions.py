"""Source `captions`: a short caption of a generated shape scene.

The caption lists the objects from left to right ("a red circle and a blue square"), so it is fully
determined by the image and can be scored by exact match.

Scenes hold one or two large shapes (half-size 13-19% of the side, about 2x the shapes_vqa ones):
with 16x16 patches and 16 image tokens per 128 px image, three small shapes left the tiny default
unable to name colour *and* shape of every object (it learnt the caption's grammar, not its content).
The answer space stays large (24 one-object and 552 two-object captions, balanced 1:1 by count), so
always giving one caption scores ~2%.
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
# Object counts per scene and their half-size range (fraction of the image side).
COUNTS = (1, 2)
RADIUS = (0.13, 0.19)
# Two objects are at least this far apart horizontally (fraction of the side), so "left to right" is
# never a near tie (one shape above the other).
MIN_DX = 0.2


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
    for count in balanced_answers(n, COUNTS, rng):
        objects = random_objects(rng, count)
        shapes = random_scene(rng, image_size, objects, radius=RADIUS)
        while len(shapes) == 2 and abs(shapes[0].x - shapes[1].x) < MIN_DX * image_size:
            shapes = random_scene(rng, image_size, objects, radius=RADIUS)
        image = draw_scene(shapes, image_size, background_for(rng))
        writer.add(image, pick(rng, QUESTIONS), caption(shapes))
