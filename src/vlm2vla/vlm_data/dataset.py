"""A torch Dataset over pool samples: images opened as RGB PIL images, conversations as chat messages.

    ds = VLMChatDataset(load_pool("runs/pool", split="train"))
    item = ds[0]   # {"id", "source", "images": [PIL.Image RGB, ...], "messages": [{"role", "content"}, ...]}

An image that fails to load at training time (deleted or corrupted since the pool was checked) is
never fatal. With `on_bad_image="next"` (the default) the item is replaced by the next sample whose
images load (wrapping around), so batches keep their size; the item's "id" says which sample it
really is. With `on_bad_image="none"` the item is None and the collate function must drop it:
wrap yours in `drop_none(collate)`. Either way `bad_images` counts the failures (per process, so
with DataLoader workers each worker counts its own) and each one is logged as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from vlm2vla.vlm_data.records import VLMSample, to_messages

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("next", "none")


class VLMChatDataset(torch.utils.data.Dataset):
    """Pool samples as {"id", "source", "images", "messages"} items (see the module docstring).

    Args:
        samples: the samples (e.g. `load_pool(path, split="train")`).
        on_bad_image: "next" (substitute the next loadable sample) or "none" (return None).
        max_tries: with "next", how many following samples to try before giving up with an error.
    """

    def __init__(self, samples: Sequence[VLMSample], on_bad_image: str = "next", max_tries: int = 100) -> None:
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        self.samples = list(samples)
        self.on_bad_image = on_bad_image
        self.max_tries = max_tries
        self.bad_images = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        tries = 1 if self.on_bad_image == "none" else min(self.max_tries, len(self.samples))
        for k in range(tries):
            sample = self.samples[(index + k) % len(self.samples)]
            images = self._load_images(sample)
            if images is not None:
                return {"id": sample.id, "source": sample.source, "images": images, "messages": to_messages(sample)}
        if self.on_bad_image == "none":
            return None
        raise RuntimeError(f"VLMChatDataset: {tries} samples in a row from index {index} have unreadable images; "
                           "the image files look gone. Rebuild the pool with `vlm2vla pool`.")

    def _load_images(self, sample: VLMSample) -> list[Image.Image] | None:
        images = []
        for path in sample.images:
            try:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))  # convert() loads the pixels, so the file can close
            except Exception as err:  # any decoding error: the sample is skipped, training goes on
                self.bad_images += 1
                log.warning("Skipping sample %s: cannot load image %s (%s: %s)", sample.id, path,
                            type(err).__name__, err)
                return None
        return images


def drop_none(collate: Callable[[list], Any]) -> Callable[[list], Any]:
    """Wrap a collate function so it drops None items (from `on_bad_image="none"`) first.

    Args:
        collate: the collate function for a list of items.

    Returns:
        A collate function; an all-None batch collates an empty list.
    """

    def collate_kept(batch: list) -> Any:
        return collate([item for item in batch if item is not None])

    return collate_kept
