"""The "vla" evaluation policy built through make_policy from a saved VLAPolicy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm2vla.evaluation.policy import Policy, PolicyConfig, make_policy
from vlm2vla.policies import VLAPolicy


def test_make_policy_predicts_clipped_chunks(tiny_backbone, vla_config, fake_stats, eval_batch, tmp_path):
    policy = VLAPolicy.build(vla_config, tiny_backbone, fake_stats)
    with torch.no_grad():
        policy.head.decoder[-1].bias.fill_(5.0)  # far outside [-1, 1]: the adapter must clip
    policy.save_pretrained(tmp_path / "policy")
    evaluated = make_policy(PolicyConfig(type="vla", path=str(tmp_path / "policy"), kwargs={"device": "cpu"}))
    assert isinstance(evaluated, Policy)
    assert evaluated.chunk_size == 4 and evaluated.n_action_steps == 2
    evaluated.reset()
    actions = evaluated.predict_chunk(eval_batch(3))
    assert actions.shape == (3, 4, 4) and actions.dtype == np.float32
    assert actions.min() >= -1.0 and actions.max() <= 1.0


def test_unknown_kwargs_and_missing_path_are_refused(tmp_path):
    with pytest.raises(ValueError, match="policy.path"):
        make_policy(PolicyConfig(type="vla"))
    with pytest.raises(ValueError, match="temperature"):
        make_policy(PolicyConfig(type="vla", path=str(tmp_path), kwargs={"temperature": 1.0}))
