"""Generated shape scenes: a few coloured shapes on a plain background, drawn with PIL.

Shared by the captions and shapes_vqa sources. Objects never overlap and no two objects share
both shape and colour, so a caption or a question about "the red circle" has one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (240, 210, 30), "purple": (140, 60, 180), "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
BACKGROUNDS = ((235, 235, 235), (250, 245, 225), (205, 215, 225), (70, 70, 75))


@dataclass(frozen=True)
class Shape:
    """One drawn object: kind, colour name, centre and half-size in pixels."""

    kind: str
    colour: str
    x: float
    y: float
    r: float


def random_scene(rng: np.random.Generator, size: int, objects: list[tuple[str, str]],
                 radius: tuple[float, float] = (0.07, 0.11)) -> list[Shape]:
    """Place the given (shape, colour) objects at random, without overlaps.

    Args:
        rng: random generator.
        size: image side in pixels.
        objects: (shape kind, colour name) pairs.
        radius: range of an object's half-size, as a fraction of the image side.

    Returns:
        The placed shapes (fewer only if the image is too crowded, which the sizes here avoid).
    """
    placed: list[Shape] = []
    for kind, colour in objects:
        for _ in range(200):
            r = float(rng.uniform(*radius) * size)
            x, y = (float(v) for v in rng.uniform(r + 2, size - r - 2, size=2))
            if all((x - s.x) ** 2 + (y - s.y) ** 2 > (r + s.r + 3) ** 2 for s in placed):
                placed.append(Shape(kind, colour, x, y, r))
                break
    return placed


def random_objects(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """`count` distinct (shape, colour) pairs."""
    pairs = [(k, c) for k in SHAPES for c in COLOURS]
    idx = rng.choice(len(pairs), size=count, replace=False)
    return [pairs[int(i)] for i in idx]


def draw_scene(shapes: list[Shape], size: int, background: tuple[int, int, int]) -> Image.Image:
    """Render shapes on a plain background."""
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for s in shapes:
        fill = COLOURS[s.colour]
        if s.kind == "circle":
            draw.ellipse([s.x - s.r, s.y - s.r, s.x + s.r, s.y + s.r], fill=fill)
        elif s.kind == "square":
            h = s.r * 0.85
            draw.rectangle([s.x - h, s.y - h, s.x + h, s.y + h], fill=fill)
        elif s.kind == "triangle":
            draw.polygon([(s.x, s.y - s.r), (s.x - s.r, s.y + s.r * 0.8), (s.x + s.r, s.y + s.r * 0.8)], fill=fill)
        else:  # diamond
            draw.polygon([(s.x, s.y - s.r), (s.x + s.r, s.y), (s.x, s.y + s.r), (s.x - s.r, s.y)], fill=fill)
    return image


def background_for(rng: np.random.Generator) -> tuple[int, int, int]:
    """A background colour that no shape colour blends into."""
    return BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
