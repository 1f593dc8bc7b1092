"""Normalizer: round trips for every mode, the [-1, 1] targets, zero ranges and missing stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm2vla.policies import PolicyInputError
from vlm2vla.policies.configuration import NORMALIZATION_MODES
from vlm2vla.policies.normalize import Normalizer


def _stats() -> dict:
    return {"action": {"min": [-2.0, 0.0, 5.0], "max": [2.0, 1.0, 5.0], "mean": [0.1, 0.5, 5.0],
                       "std": [1.5, 0.2, 0.0], "q01": [-1.9, 0.01, 5.0], "q99": [1.9, 0.99, 5.0]}}


@pytest.mark.parametrize("mode", NORMALIZATION_MODES)
def test_round_trip(mode):
    norm = Normalizer({"action": mode}, {"action": 3}, _stats())
    x = torch.tensor([[-1.0, 0.3, 5.0], [1.5, 0.9, 5.0]])
    y = norm.normalize("action", x)
    assert torch.isfinite(y).all()
    assert torch.allclose(norm.unnormalize("action", y), x, atol=1e-5)


@pytest.mark.parametrize(("mode", "low", "high"), [("min_max", "min", "max"), ("quantile", "q01", "q99")])
def test_range_modes_map_to_minus_one_and_one(mode, low, high):
    stats = _stats()["action"]
    norm = Normalizer({"action": mode}, {"action": 3}, _stats())
    ends = torch.tensor([stats[low], stats[high]])
    y = norm.normalize("action", ends)
    assert torch.allclose(y[:, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-5)
    assert torch.equal(y[:, 2], torch.zeros(2))  # zero range: constant maps to 0, not NaN


def test_mean_std_and_state_dict_round_trip():
    norm = Normalizer({"action": "mean_std"}, {"action": 3}, _stats())
    y = norm.normalize("action", torch.tensor([[1.6, 0.7, 5.0]]))
    assert torch.allclose(y, torch.tensor([[1.0, 1.0, 0.0]]), atol=1e-5)
    again = Normalizer({"action": "mean_std"}, {"action": 3}, None)
    again.load_state_dict(norm.state_dict())
    x = torch.randn(5, 3)
    assert torch.equal(again.normalize("action", x), norm.normalize("action", x))
    shift, scale = again.numpy_params()["action"]
    assert isinstance(shift, np.ndarray) and scale.min() > 0


def test_missing_stat_names_key_and_mode():
    stats = {"action": {"min": [0.0], "max": [1.0]}}
    with pytest.raises(PolicyInputError, match=r"'q01'.*'quantile'"):
        Normalizer({"action": "quantile"}, {"action": 1}, stats)
    with pytest.raises(PolicyInputError, match="'mean'.*'mean_std'"):
        Normalizer({"action": "mean_std"}, {"action": 1}, {})
    with pytest.raises(PolicyInputError, match="1 values but the policy expects dimension 2"):
        Normalizer({"action": "min_max"}, {"action": 2}, stats)
