"""The "vla" evaluation policy: a saved VLAPolicy behind the rollout engine's Policy interface.

    vlm2vla eval policy.type=vla policy.path=runs/x/policy 'policy.kwargs={num_steps: 10, device: cuda}'

The engine executes EvalConfig.n_action_steps actions of each chunk; left at 0 it takes the adapter's
``n_action_steps``, the value in the policy config (what the policy was trained for).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlm2vla.evaluation.policy_interface import Policy, PolicyConfig
from vlm2vla.policies.policy import VLAPolicy

KWARGS = ("num_steps", "device")


class VLAEvalPolicy(Policy):
    """Wraps a VLAPolicy: numpy float32 [B, chunk, A] actions clipped to the simulator's [-1, 1].

    Args:
        policy: the loaded policy (moved to ``device``).
        num_steps: Euler steps for flow-matching heads (None = the policy config's).
        device: torch device to run on.
        seed: seed of the start noise of flow-matching heads (repeatable evaluations).
    """

    def __init__(self, policy: VLAPolicy, *, num_steps: int | None = None, device: str = "cpu", seed: int = 0) -> None:
        self.policy = policy.to(device).eval()
        self.num_steps = num_steps
        self.chunk_size = policy.config.chunk_size
        self.n_action_steps = policy.config.n_action_steps
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Restart the noise stream, so each evaluation draws the same noise sequence."""
        self._generator = torch.Generator().manual_seed(self.seed)

    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        """Actions [B, chunk_size, action_dim] float32 in [-1, 1] for B observations."""
        cfg = self.policy.config
        noise = torch.randn(len(batch["task"]), cfg.chunk_size, cfg.action_dim, generator=self._generator)
        actions = self.policy.predict_action_chunk(batch, noise=noise.to(self.policy.device), num_steps=self.num_steps)
        return np.clip(actions.float().cpu().numpy(), -1.0, 1.0).astype(np.float32)


def build_vla_policy(cfg: PolicyConfig, seed: int) -> VLAEvalPolicy:
    """Load ``cfg.path`` with VLAPolicy.from_pretrained; ``cfg.kwargs`` may set num_steps and device."""
    if not cfg.path:
        raise ValueError("policy.type=vla needs policy.path=<folder written by VLAPolicy.save_pretrained>")
    unknown = sorted(set(cfg.kwargs) - set(KWARGS))
    if unknown:
        raise ValueError(f"policy.kwargs {unknown} are not understood by the vla policy; it takes {list(KWARGS)}")
    device = cfg.kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    num_steps = cfg.kwargs.get("num_steps")
    return VLAEvalPolicy(VLAPolicy.from_pretrained(cfg.path), num_steps=None if num_steps is None else int(num_steps),
                         device=str(device), seed=seed)
