"""VLA policies: a VLM backbone plus an action head (VLM4VLA query token, pi0- or GR00T-style experts).

    from vlm2vla.backbones import VLMBackbone
    from vlm2vla.policies import VLAConfig, VLAPolicy

    backbone = VLMBackbone.from_pretrained("runs/tiny-vlm")
    policy = VLAPolicy.build(VLAConfig(head="vlm4vla", cameras=("corner2",)), backbone, reader.stats)
    loss, logs = policy(policy.collator()(dataset_items))
    policy.save_pretrained("runs/policy")
    actions = VLAPolicy.from_pretrained("runs/policy").predict_action_chunk(eval_batch)

Evaluate a saved policy with `vlm2vla eval policy.type=vla policy.path=runs/policy`.
"""

from __future__ import annotations

from typing import Any

from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.policies.errors import PolicyCheckpointError, PolicyInputError

__all__ = ["PolicyCheckpointError", "PolicyInputError", "VLAConfig", "VLAPolicy"]


def __getattr__(name: str) -> Any:
    # VLAPolicy pulls in transformers; import it only when asked for.
    if name == "VLAPolicy":
        from vlm2vla.policies.policy import VLAPolicy

        return VLAPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
