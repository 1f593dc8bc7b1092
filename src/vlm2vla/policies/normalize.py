"""Normalisation of proprio state and actions from a dataset's stats.json.

Every mode is an affine map ``y = (x - shift) / scale`` with per-dimension shift and scale:

    mean_std   shift = mean,              scale = std               (zero mean, unit variance)
    min_max    shift = (max + min) / 2,   scale = (max - min) / 2   (min -> -1, max -> +1)
    quantile   shift = (q99 + q01) / 2,   scale = (q99 - q01) / 2   (q01 -> -1, q99 -> +1)
    identity   shift = 0,                 scale = 1

Scales below ``EPS`` are raised to ``EPS`` so constant dimensions (e.g. an unused joint) map to 0
instead of NaN, and map back to their constant. Shift and scale are buffers, so they are saved and
loaded with the policy's state dict and a checkpoint needs no stats.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from vlm2vla.policies.configuration import NORMALIZATION_MODES
from vlm2vla.policies.errors import PolicyInputError

EPS = 1e-6

# stats.json keys each mode reads: (low/centre key, high/spread key)
MODE_STATS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99"), "identity": ()}


def affine_params(stats: Mapping[str, Any] | None, mode: str, dim: int, key: str = "feature"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale (float32 [dim]) of one feature for ``mode``.

    Args:
        stats: the feature's stats ({"mean": [...], "std": [...], ...}); may be None for identity.
        mode: one of NORMALIZATION_MODES.
        dim: expected feature dimension.
        key: feature name, for error messages.

    Returns:
        (shift, scale) with scale >= EPS.

    Raises:
        PolicyInputError: unknown mode, a stat the mode needs is missing, or its length is not ``dim``.
    """
    if mode not in NORMALIZATION_MODES:
        raise PolicyInputError(f"unknown normalisation mode {mode!r} for {key}; choose one of {NORMALIZATION_MODES}")
    if mode == "identity":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    stats = stats or {}
    values = []
    for name in MODE_STATS[mode]:
        if name not in stats:
            raise PolicyInputError(f"stats for {key!r} have no {name!r}, which {mode!r} normalisation needs "
                                   f"(stats keys: {sorted(stats)}); recompute the dataset stats or pick another "
                                   "normalisation mode in the policy config")
        v = np.asarray(stats[name], dtype=np.float64).reshape(-1)
        if v.shape[0] != dim:
            raise PolicyInputError(f"stats {key!r}/{name!r} have {v.shape[0]} values but the policy expects "
                                   f"dimension {dim}")
        values.append(v)
    a, b = values
    shift, scale = (a, b) if mode == "mean_std" else ((a + b) / 2, (b - a) / 2)
    return shift.astype(np.float32), np.maximum(scale, EPS).astype(np.float32)


class Normalizer(nn.Module):
    """Per-feature affine normalisation (see module docstring), stats held as buffers.

    Buffers are named ``<name>_shift`` / ``<name>_scale`` with ``name`` the feature key with dots
    replaced by underscores (``observation_state_shift``).

    Args:
        modes: feature key -> normalisation mode, e.g. {"observation.state": "mean_std", "action": "min_max"}.
        dims: feature key -> dimension.
        stats: feature key -> stats dict (reader.stats); None builds identity placeholders that a
            state dict loaded afterwards overwrites.
    """

    def __init__(self, modes: Mapping[str, str], dims: Mapping[str, int],
                 stats: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.modes = dict(modes)
        for key, mode in self.modes.items():
            if stats is None:
                shift, scale = affine_params(None, "identity", dims[key], key)
            else:
                shift, scale = affine_params(stats.get(key), mode, dims[key], key)
            self.register_buffer(f"{_slug(key)}_shift", torch.from_numpy(shift))
            self.register_buffer(f"{_slug(key)}_scale", torch.from_numpy(scale))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Dataset units -> normalised units; ``x`` [..., dim]."""
        shift, scale = self._params(key, x)
        return (x - shift) / scale

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        """Normalised units -> dataset units; ``y`` [..., dim]."""
        shift, scale = self._params(key, y)
        return y * scale + shift

    def numpy_params(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Feature key -> (shift, scale) as float32 NumPy copies (for picklable collators)."""
        return {k: tuple(getattr(self, f"{_slug(k)}_{p}").detach().cpu().numpy().copy() for p in ("shift", "scale"))
                for k in self.modes}

    def _params(self, key: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self.modes:
            raise KeyError(f"normaliser has no feature {key!r} (it has {sorted(self.modes)})")
        shift = getattr(self, f"{_slug(key)}_shift").to(like.device, like.dtype)
        scale = getattr(self, f"{_slug(key)}_scale").to(like.device, like.dtype)
        return shift, scale


def _slug(key: str) -> str:
    """A buffer name for a feature key (buffer names cannot contain dots)."""
    return key.replace(".", "_")
