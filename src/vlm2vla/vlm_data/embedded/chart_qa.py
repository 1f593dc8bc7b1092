"""Source `chart_qa`: questions on bar charts drawn with PIL.

Each chart has 3-5 bars labelled A-E with integer values 1-9 on a 0-10 axis with a grid line at every
integer, so values can be read off. Question types (round-robin):
    "Which bar is the highest?"     -> a label (the maximum is unique)
    "Which bar is the lowest?"      -> a label (the minimum is unique)
    "What is the value of bar C?"   -> a digit
    "How many bars are there?"      -> a digit, 3-5
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick

LABELS = "ABCDE"
BAR_COLOURS = ((60, 110, 200), (220, 120, 40), (70, 160, 90), (170, 70, 160))
HIGH_Q = ("Which bar is the highest?", "Which label has the largest value?", "Which bar is tallest?")
LOW_Q = ("Which bar is the lowest?", "Which label has the smallest value?", "Which bar is shortest?")
VALUE_Q = ("What is the value of bar {label}?", "How high is bar {label}?", "Read the value of {label}.")
COUNT_Q = ("How many bars are there?", "How many bars does the chart have?")
MAX_VALUE = 10


def draw_chart(values: list[int], size: int, colour: tuple[int, int, int]) -> Image.Image:
    """A bar chart of `values` (bars labelled A, B, ...), with y-axis numbers 0, 2, ..., 10."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, size // 12))
    left, right, top, bottom = size * 0.16, size * 0.97, size * 0.05, size * 0.85
    unit = (bottom - top) / MAX_VALUE
    for v in range(MAX_VALUE + 1):
        y = bottom - v * unit
        draw.line([(left, y), (right, y)], fill=(215, 215, 215) if v else (0, 0, 0))
        if v % 2 == 0:
            draw.text((2, y - size // 24), str(v), fill=(0, 0, 0), font=font)
    slot = (right - left) / len(values)
    for i, v in enumerate(values):
        x0 = left + slot * (i + 0.2)
        draw.rectangle([x0, bottom - v * unit, x0 + slot * 0.6, bottom], fill=colour)
        draw.text((x0 + slot * 0.3 - size // 40, bottom + 2), LABELS[i], fill=(0, 0, 0), font=font)
    return image


def _chart(rng: np.random.Generator, unique: str | None) -> list[int]:
    """3-5 values in 1-9; with unique="max"/"min" that extreme occurs once."""
    while True:
        values = [int(v) for v in rng.integers(1, MAX_VALUE, size=int(rng.integers(3, 6)))]
        extreme = {"max": max, "min": min}.get(unique or "", None)
        if extreme is None or values.count(extreme(values)) == 1:
            return values


def _question(rng: np.random.Generator, k: int) -> tuple[list[int], str, str]:
    kind = k % 4
    if kind in (0, 1):
        values = _chart(rng, "max" if kind == 0 else "min")
        fn = max if kind == 0 else min
        return values, pick(rng, HIGH_Q if kind == 0 else LOW_Q), LABELS[values.index(fn(values))]
    if kind == 2:
        values = _chart(rng, None)
        i = int(rng.integers(len(values)))
        return values, pick(rng, VALUE_Q).format(label=LABELS[i]), str(values[i])
    values = _chart(rng, None)
    return values, pick(rng, COUNT_Q), str(len(values))


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, image_size: int) -> None:
    """Write `n` chart-QA samples (see the module docstring).

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        image_size: image side in pixels.
    """
    for k in range(n):
        values, question, answer = _question(rng, k)
        writer.add(draw_chart(values, image_size, pick(rng, BAR_COLOURS)), question, answer)
