"""Source `ocr`: text-centric questions on rendered text; the answer is the text itself.

Each image shows one entry of a closed vocabulary (32 short words and numbers, each equally often)
in a large bold font (about a third of the image side, strokes thickened by ~1/20 of the font size),
dark on a light plain background, near the centre (jittered by up to 1/16 of the side), drawn with
PIL's built-in font. Real OCR pools are dominated by common words; the earlier random 4-character
codes and 2-4 digit numbers (thousands of answers, ~2 training images each, glyphs ~16 px high anywhere
in the image) could not be read by the tiny default at all. Why bold: the tiny default's vision
encoder is a ViT trained from scratch, and on the thin 2 px strokes of regular text it sat on an
image-blind plateau for the whole pretraining budget (a standalone probe of the same ViT on 2700
regular-weight images: 13% word accuracy after 15 epochs, while a small CNN reached 99.7%); with
bold strokes the same probe reached 23% after 4 epochs and 63% after 12. In the whole VLM, OCR-only
pretraining (800 steps x 16) went from 0.033 (regular) to 0.234 (bold) held-out exact match. OCR is
still the source learnt last, so configs/pool_tiny.yaml gives it the most samples. Always giving one
answer still scores only ~3%.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlm2vla.vlm_data.embedded.common import SourceWriter, balanced_answers, pick

WORDS = (
    "apple", "robot", "table", "house", "water", "clock", "train", "tiger", "push", "pull", "open", "stop",
    "left", "right", "up", "down", "cup", "box", "door", "key", "sun", "moon", "star", "fish",
    "book", "exit", "sale", "hotel", "7", "25", "40", "100",
)
QUESTIONS = (
    "What does the text in the image say?",
    "Read the text in the image.",
    "What is written in this picture?",
    "Transcribe the text.",
)
PALETTE = ((20, 20, 20), (170, 20, 20), (20, 40, 160), (10, 100, 30))  # dark inks, on a light background


def render_text(rng: np.random.Generator, text: str, size: int) -> Image.Image:
    """The text drawn near the centre in a large bold dark ink on a random light background."""
    fg = pick(rng, PALETTE)
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    font_size = int(rng.integers(size // 3 - 2, size // 3 + 3))
    stroke = max(1, font_size // 20)
    font = ImageFont.load_default(size=font_size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    while right - left > size - 8 and font_size > 8:  # long text: shrink until it fits
        font_size -= 2
        font = ImageFont.load_default(size=font_size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    jitter = size // 16
    x = (size - (right - left)) // 2 + int(rng.integers(-jitter, jitter + 1))
    y = (size - (bottom - top)) // 2 + int(rng.integers(-jitter, jitter + 1))
    x = min(max(x, 2), max(2, size - (right - left) - 2)) - left  # keep the whole text inside
    y = min(max(y, 2), max(2, size - (bottom - top) - 2)) - top
    draw.text((x, y), text, fill=fg, font=font, stroke_width=stroke, stroke_fill=fg)
    return image


def generate(writer: SourceWriter, n: int, rng: np.random.Generator, image_size: int) -> None:
    """Write `n` OCR samples.

    Args:
        writer: the source's writer.
        n: number of samples.
        rng: the source's random generator.
        image_size: image side in pixels.
    """
    for text in balanced_answers(n, WORDS, rng):
        writer.add(render_text(rng, text, image_size), pick(rng, QUESTIONS), text)
