"""Source `ocr`: text-centric questions on rendered text; the answer is the text itself.

Each image shows one word or code (a word, a 3-4 digit number or a 4-character code) in a random
size, colour and position on a plain or two-tone background, drawn with PIL's built-in font.
"""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlm2vla.vlm_data.embedded.common import SourceWriter, pick

WORDS = (
    "apple", "robot", "table", "green", "house", "water", "light", "stone", "river", "music", "paper", "glass",
    "chair", "plant", "cloud", "bread", "clock", "train", "smile", "ocean", "tiger", "lemon", "piano", "tower",
    "grip", "push", "pull", "open", "close", "lift", "drop", "move", "stop", "left", "right", "up", "down", "red",
    "blue", "cup", "box", "door", "key", "map", "pen", "sun", "moon", "star", "bird", "fish", "tree", "road",
    "ball", "book", "lamp", "exit", "enter", "sale", "hotel", "cafe", "bank", "park", "zone", "gate", "dock",
)
QUESTIONS = (
    "What does the text in the image say?",
    "Read the text in the image.",
    "What is written in this picture?",
    "Transcribe the text.",
)
PALETTE = ((20, 20, 20), (200, 30, 30), (30, 60, 190), (20, 120, 40), (250, 250, 250), (240, 200, 20))


def random_text(rng: np.random.Generator) -> str:
    """A word, a number or a short code, one kind in three each."""
    kind = int(rng.integers(3))
    if kind == 0:
        return pick(rng, WORDS)
    if kind == 1:
        return str(int(rng.integers(10, 10_000)))
    chars = string.ascii_uppercase + string.digits
    return "".join(pick(rng, chars) for _ in range(4))


def render_text(rng: np.random.Generator, text: str, size: int) -> Image.Image:
    """The text drawn at a random place, size and colour that contrasts with the background."""
    fg = pick(rng, PALETTE)
    # Background: light under dark text, dark under light text.
    dark_text = sum(fg) < 400
    low, high = (170, 256) if dark_text else (0, 90)
    bg = tuple(int(v) for v in rng.integers(low, high, 3))
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    font_size = int(rng.integers(size // 8, size // 5 + 1))
    font = ImageFont.load_default(size=font_size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    while right - left > size - 8 and font_size > 8:  # long text: shrink until it fits
        font_size -= 2
        font = ImageFont.load_default(size=font_size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(4, max(5, size - (right - left) - 4))) - left
    y = int(rng.integers(4, max(5, size - (bottom - top) - 4))) - top
    draw.text((x, y), text, fill=fg, font=font)
    return image


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, image_size: int) -> None:
    """Write `n` OCR samples.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        image_size: image side in pixels.
    """
    for _ in range(n):
        text = random_text(rng)
        writer.add(render_text(rng, text, image_size), pick(rng, QUESTIONS), text)
