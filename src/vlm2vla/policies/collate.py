"""VLACollator: dataset items or eval observations -> the batch a VLAPolicy trains and predicts on.

Picklable (DataLoader workers): it holds the backbone's Collator (processor only), the policy
config and NumPy copies of the normaliser's shift/scale, never the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlm2vla.backbones.chat import ChatExample
from vlm2vla.backbones.encoding import Collator
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.policies.errors import PolicyInputError

STATE_KEY = "observation.state"
ACTION_KEY = "action"


@dataclass
class VLACollator:
    """Maps a list of items to {"prefix", "language_mask", "state"?, "action"?, "action_is_pad"?}.

    Items are RobotEpisodeDataset items (images float [3, H, W] in [0, 1]) or single eval
    observations (images uint8 [H, W, 3]); "task" is the instruction string.

    Attributes:
        backbone_collator: VLMBackbone.collator().
        config: the policy config (cameras, prompt, dims, max_prompt_length).
        num_queries: query slots the head needs after the prompt.
        norm: feature key -> (shift, scale) float32 arrays (Normalizer.numpy_params()).
    """

    backbone_collator: Collator
    config: VLAConfig
    num_queries: int
    norm: dict[str, tuple[np.ndarray, np.ndarray]]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate ``items``.

        Returns:
            "prefix": the backbone batch (left padded, assistant prompt, ``num_queries`` query slots);
            "language_mask": [B, L] bool, the instruction prompt's text tokens;
            "state": [B, state_dim] normalised (only when state_dim > 0);
            "action": [B, chunk, action_dim] normalised and "action_is_pad": [B, chunk] bool (only when
            the items have actions).

        Raises:
            PolicyInputError: a configured camera or the state is missing, or has the wrong size.
        """
        if not items:
            raise PolicyInputError("cannot collate an empty list of items")
        cfg = self.config
        for item in items:
            self._check_keys(item)
        examples = [ChatExample(images=[to_pil(item[k]) for k in cfg.image_keys],
                                messages=[{"role": "user", "content": "<image>" * len(cfg.cameras)
                                           + self.prompt(item["task"])}]) for item in items]
        prefix = self.backbone_collator(examples, add_generation_prompt=True, num_queries=self.num_queries,
                                        max_length=cfg.max_prompt_length)
        out: dict[str, Any] = {"prefix": prefix,
                               "language_mask": self.language_mask(prefix, [self.prompt(i["task"]) for i in items])}
        if cfg.state_dim > 0:
            state = np.stack([_numpy(item[STATE_KEY]).reshape(-1) for item in items])
            if state.shape[1] != cfg.state_dim:
                raise PolicyInputError(f"observation.state has {state.shape[1]} values but the policy config has "
                                       f"state_dim={cfg.state_dim}; set state_dim to match the data")
            out["state"] = self._normalize(STATE_KEY, state)
        if all(ACTION_KEY in item for item in items):
            actions = np.stack([_numpy(item[ACTION_KEY]).reshape(-1, cfg.action_dim) for item in items])
            out["action"] = self._normalize(ACTION_KEY, actions)
            pads = [_numpy(item["action_is_pad"]) if "action_is_pad" in item else np.zeros(actions.shape[1], bool)
                    for item in items]
            out["action_is_pad"] = torch.from_numpy(np.stack(pads).astype(bool))
        return out

    def prompt(self, task: str) -> str:
        """The user prompt for one instruction."""
        return self.config.prompt.format(task=task)

    def language_mask(self, prefix: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        """[B, L] bool: the positions of each row's prompt text tokens.

        The prompt's own token ids are searched for in the row (last occurrence). When the template
        tokenised them differently (merges across the boundary, truncation), every real token that
        is not special (image, padding, turn markers) and not a query slot counts instead.
        """
        tokenizer = self.backbone_collator.processor.tokenizer
        ids = prefix["input_ids"]
        special = _special_ids(tokenizer)
        keep = prefix["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))
        if "query_mask" in prefix:
            keep &= ~prefix["query_mask"]
        mask = torch.zeros_like(keep)
        for row, text in enumerate(prompts):
            span = tokenizer(text.strip(), add_special_tokens=False)["input_ids"]
            start = _find_last(ids[row].tolist(), span)
            if start is None:
                mask[row] = keep[row]
            else:
                mask[row, start: start + len(span)] = True
        return mask

    def _check_keys(self, item: dict[str, Any]) -> None:
        cfg = self.config
        for key in cfg.image_keys:
            if key not in item:
                raise PolicyInputError(f"observation has no {key!r} (available keys: {sorted(item)}); set the "
                                       f"policy config's `cameras` (now {list(cfg.cameras)}) to cameras the data has")
        if cfg.state_dim > 0 and STATE_KEY not in item:
            raise PolicyInputError(f"observation has no {STATE_KEY!r} (available keys: {sorted(item)}); the policy "
                                   f"config has state_dim={cfg.state_dim}: set state_dim=0 to use no state")
        if "task" not in item:
            raise PolicyInputError(f"observation has no 'task' instruction (available keys: {sorted(item)})")

    def _normalize(self, key: str, x: np.ndarray) -> torch.Tensor:
        shift, scale = self.norm[key]
        return torch.from_numpy(((x.astype(np.float32) - shift) / scale).astype(np.float32))


def to_pil(image: Any) -> Image.Image:
    """A PIL RGB image from float [3, H, W] in [0, 1] (tensor or array) or uint8 [H, W, 3]."""
    array = _numpy(image)
    if array.ndim != 3:
        raise PolicyInputError(f"an image must have 3 dimensions ([3, H, W] or [H, W, 3]), got shape {array.shape}")
    if array.dtype != np.uint8:  # float in [0, 1], channels first (RobotEpisodeDataset)
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
        if array.shape[0] == 3 and array.shape[-1] != 3:
            array = array.transpose(1, 2, 0)
    elif array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(array))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _special_ids(tokenizer: Any) -> set[int]:
    """Ids of special tokens: eos/pad/bos etc. plus added special tokens (image, turn markers)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special)
    return ids


def _find_last(seq: list[int], span: list[int]) -> int | None:
    """Start of the last occurrence of ``span`` in ``seq``, or None."""
    n = len(span)
    if not n:
        return None
    for start in range(len(seq) - n, -1, -1):
        if seq[start: start + n] == span:
            return start
    return None
