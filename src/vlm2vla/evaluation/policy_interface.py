"""The policy interface the rollout engine drives, and the registry that builds policies by name.

A policy sees a batch of observations from several environments at once and returns an action chunk
per environment; the engine executes the first `n_action_steps` actions of a chunk and then asks again
(receding-horizon control, as pi0 and ACT do). Actions are in the simulator's space, [-1, 1].

Observation batches use LeRobot's keys:

    "observation.images.<camera>"   uint8   [B, H, W, 3]
    "observation.state"             float32 [B, state_dim]
    "observation.environment_state" float32 [B, D]  (privileged simulator state, when enabled)
    "task"                          list[str]  the instruction given to each environment
    "task_name"                     list[str]  the simulator task id, e.g. "reach-v3"
    "episode_key"                   list[str]  unique per episode (for per-episode state)

Policy types are entries of `POLICIES` (a new one: its builder's module plus one `register_policy`
line); `make_policy` looks it up by the config's `type`, so the engine never special-cases a policy.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vlm2vla.registry import Registry


class Policy(abc.ABC):
    """Maps a batch of observations to a batch of action chunks."""

    #: number of actions each call returns per environment
    chunk_size: int = 1

    @abc.abstractmethod
    def predict_chunk(self, batch: dict[str, Any]) -> np.ndarray:
        """Return actions of shape [B, chunk_size, action_dim] for a batch of B observations."""

    def reset(self) -> None:  # noqa: B027 - stateless policies need no reset
        """Forget any state carried between calls (called before an evaluation starts)."""


@dataclass(frozen=True)
class PolicyConfig:
    """Which policy to evaluate."""

    # registered policy type: "auto" (the type of the folder at `path`, else the scripted expert), "expert",
    # "random", "vla" (a trained VLAPolicy), "remote" (a policy served by `vlm2vla serve` at `url`), or one a
    # policy package registers
    type: str = "auto"
    # a learned policy's folder (e.g. runs/train-policy/policy, or the train-policy run directory itself);
    # refused by the reference policies, which take none
    path: str | None = None
    # policy.type=remote: the ws://host:port address of a `vlm2vla serve` server
    url: str | None = None
    # std of Gaussian noise added to expert actions (demonstration diversity); 0 = none
    noise_std: float = 0.0
    # actions per call for policies without a natural chunk (random)
    chunk_size: int = 1
    # extra keyword arguments passed to the policy's builder
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.noise_std < 0:
            raise ValueError(f"policy.noise_std must be >= 0, got {self.noise_std}")
        if self.chunk_size < 1:
            raise ValueError(f"policy.chunk_size must be >= 1, got {self.chunk_size}")
        if self.url and self.type not in (REMOTE, AUTO):
            raise ValueError(f"policy.url={self.url} is given but policy.type={self.type} does not use it: set "
                             f"policy.type={REMOTE} to evaluate the served policy, or drop policy.url")
        if self.url and self.path:
            raise ValueError(f"policy.url={self.url} and policy.path={self.path} are both given: a served policy "
                             "is loaded by its server, so pass one of them")


PolicyBuilder = Callable[[PolicyConfig, int], Policy]
AUTO = "auto"
REMOTE = "remote"
# Policy type -> "module:function" building it from (cfg, seed). `folder_marker`: for policies loaded from
# `policy.path`, a file every saved folder of that type holds (how "auto" recognises the type).
POLICIES = Registry("policy type")
POLICIES.register("expert", "vlm2vla.evaluation.reference_policies:build_expert")
POLICIES.register("random", "vlm2vla.evaluation.reference_policies:build_random")
POLICIES.register("vla", "vlm2vla.policies.eval_policy:build_vla_policy", folder_marker="policy_config.json")
POLICIES.register(REMOTE, "vlm2vla.serving.remote_policy:build_remote_policy")


def register_policy(name: str, builder: str | PolicyBuilder, folder_marker: str | None = None) -> None:
    """Register `builder(cfg, seed) -> Policy` ("module:function", or the function) as `policy.type=name`.

    Args:
        name: the `policy.type` value.
        builder: where the builder lives, imported when the type is first built.
        folder_marker: for policies loaded from `policy.path`, a file every saved folder of this type
            holds (how "auto" recognises the type); None for policies that take no path.
    """
    if name == AUTO:
        raise ValueError(f"Policy type {AUTO!r} is reserved (it means: the type of the folder at policy.path)")
    POLICIES.register(name, builder, **({} if folder_marker is None else {"folder_marker": folder_marker}))


def _folder_markers() -> dict[str, str]:
    """Policy type -> the file that marks a folder as a saved policy of that type."""
    return {n: POLICIES.entry(n).info["folder_marker"] for n in POLICIES.names()
            if "folder_marker" in POLICIES.entry(n).info}


def resolve_policy_config(cfg: PolicyConfig) -> PolicyConfig:
    """`cfg` with its type and path made explicit: what an evaluation reports it measured.

    "auto" becomes the type whose saved folder `path` is (or "expert" without a path); a run directory
    holding a final policy in `policy/` (what train-policy writes) resolves to that folder. A path is
    never ignored: a type that loads none refuses one.

    Raises:
        ValueError: unknown type (with the closest names), a path given to a policy that takes none, or a
            path that holds no saved policy.
    """
    if cfg.type != AUTO and cfg.type not in POLICIES:
        raise ValueError(POLICIES.unknown_message(cfg.type, extra=(AUTO,)))
    if cfg.url:  # "auto" with a url: the served policy
        return replace(cfg, type=REMOTE)
    if not cfg.path:
        return replace(cfg, type="expert") if cfg.type == AUTO else cfg
    markers = _folder_markers()
    if cfg.type != AUTO and cfg.type not in markers:
        raise ValueError(f"policy.path={cfg.path} is given but policy.type={cfg.type} loads no folder, so the path "
                         f"would be ignored: drop policy.path, or set policy.type to "
                         f"{' / '.join([AUTO, *markers])} to evaluate the policy saved there.")
    folder, kind = _find_policy_folder(Path(cfg.path), cfg.type)
    return replace(cfg, type=kind, path=str(folder.resolve()))


def _find_policy_folder(path: Path, wanted: str) -> tuple[Path, str]:
    """(folder, type) of the saved policy at `path` or in its `policy/` subfolder."""
    markers = _folder_markers()
    markers = {wanted: markers[wanted]} if wanted != AUTO else markers
    if not path.is_dir():
        raise ValueError(f"policy.path={path} does not exist (or is not a folder): pass a saved policy folder, e.g. "
                         "runs/train-policy/policy.")
    for folder in (path, path / "policy"):
        for kind, marker in markers.items():
            if (folder / marker).is_file():
                return folder, kind
    wanted_files = ", ".join(f"{m} ({k})" for k, m in markers.items())
    raise ValueError(f"policy.path={path} holds no saved policy: neither it nor {path / 'policy'} has "
                     f"{wanted_files}. Pass the folder train-policy wrote (<run_dir>/policy or "
                     "<run_dir>/checkpoints/step-N/model).")


def describe_policy(cfg: PolicyConfig) -> dict[str, Any]:
    """{"type", "path"} of a resolved config (a served policy's path is its url): what results files record
    as the measured policy."""
    return {"type": cfg.type, "path": cfg.path or cfg.url}


def make_policy(cfg: PolicyConfig, seed: int = 0) -> Policy:
    """Build the policy `cfg` names (resolved first, see `resolve_policy_config`).

    Raises:
        ValueError: unknown type (the message lists the closest registered names), or a path problem.
    """
    cfg = resolve_policy_config(cfg)
    return POLICIES.load(cfg.type)(cfg, seed)
