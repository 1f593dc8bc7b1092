"""VLAPolicy: a VLMBackbone + an action head + the state/action normaliser, saved as one folder.

    policy = VLAPolicy.build(VLAConfig(head="vlm4vla"), backbone, reader.stats)
    policy.check_dataset(reader.features, str(reader.root))
    loader = DataLoader(dataset, batch_size=8, collate_fn=policy.collator())
    loss, logs = policy(next(iter(loader)))                 # same as policy.compute_loss(batch)
    chunk = policy.predict_action_chunk(eval_observations)  # [B, chunk, A], dataset units
    policy.save_pretrained("runs/x/policy"); VLAPolicy.from_pretrained("runs/x/policy")

Checkpoint layout (written into a temp folder beside the target, then renamed):

    policy_config.json   {"format_version", "head", "config": VLAConfig as a dict, "input_features": the
                         training data's features of the inputs (images, state), when known}
    backbone/            VLMBackbone.save_pretrained (model + processor)
    head.safetensors     head and normaliser state dicts ("head.*", "normalizer.*")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from vlm2vla.backbones.backbone import VLMBackbone
from vlm2vla.config import config_to_dict
from vlm2vla.fileio import atomic_dir, atomic_write_json
from vlm2vla.policies.action_head import ActionHead, BackboneDims, Prefix, build_head
from vlm2vla.policies.apt import first_difference, first_difference_on_disk
from vlm2vla.policies.collate import ACTION_KEY, STATE_KEY, VLACollator
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.policies.errors import PolicyCheckpointError, PolicyInputError
from vlm2vla.policies.normalize import Normalizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "policy_config.json"
BACKBONE_DIR = "backbone"
WEIGHTS_FILE = "head.safetensors"


class VLAPolicy(nn.Module):
    """A VLA policy: backbone, head and normaliser.

    Attributes:
        config: the VLAConfig.
        backbone: the VLMBackbone.
        head: the ActionHead built for ``config.head``.
        normalizer: state/action normalisation (buffers saved with the head).
        input_features: LeRobot-style features ({"dtype", "shape"}) of the camera and state inputs the policy
            was trained on, or None when unknown; a served policy checks requests against them.
    """

    def __init__(self, config: VLAConfig, backbone: VLMBackbone, head: ActionHead, normalizer: Normalizer,
                 input_features: dict[str, dict] | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head
        self.normalizer = normalizer
        self.input_features = input_features

    @classmethod
    def build(cls, config: VLAConfig, backbone: VLMBackbone, stats: dict,
              features: dict[str, dict] | None = None) -> VLAPolicy:
        """A new policy around ``backbone`` with a freshly initialised head.

        Args:
            config: the policy config.
            backbone: the VLM.
            stats: the dataset's stats (``reader.stats``: feature -> {"mean", "std", "min", "max", "q01", ...}).
            features: the dataset's features (``reader.features``); the policy keeps those of its inputs
                (cameras, state) so a server can check requests against the training data's shapes.

        Returns:
            The policy (on the backbone's device).

        Raises:
            PolicyInputError: the stats lack what the normalisation modes need, or have the wrong size.
        """
        head = build_head(config, BackboneDims.of(backbone))
        policy = cls(config, backbone, head, _normalizer(config, stats), input_features(config, features))
        return policy.to(backbone.model.device)

    # ----------------------------------------------------------------------------- data
    def collator(self) -> VLACollator:
        """A picklable collate function for DataLoaders (see VLACollator)."""
        return VLACollator(self.backbone.collator(), self.config, self.head.num_queries,
                           self.normalizer.numpy_params())

    def check_dataset(self, features: dict[str, dict], source: str) -> None:
        """Check a dataset's features against this policy's config (see `check_dataset`)."""
        check_dataset(self.config, features, source)

    # ----------------------------------------------------------------------------- loss
    def compute_loss(self, collated: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on one collated batch.

        Args:
            collated: output of ``collator()`` with "action" and "action_is_pad" (any device).

        Returns:
            The scalar loss and float figures for logging ("loss" plus the head's parts).

        Raises:
            PolicyInputError: no actions in the batch, or an action chunk of the wrong length.
        """
        if ACTION_KEY not in collated:
            raise PolicyInputError("the batch has no 'action'; collate dataset items that carry actions")
        actions = collated[ACTION_KEY]
        if actions.shape[1] != self.config.chunk_size:
            raise PolicyInputError(f"batch action chunks have {actions.shape[1]} steps but the policy config has "
                                   f"chunk_size={self.config.chunk_size}; build the dataset with "
                                   f"action_chunk={self.config.chunk_size}")
        device = self.device
        loss, parts = self.head.loss(self.backbone, self.prefix(collated), actions.to(device),
                                     collated["action_is_pad"].to(device))
        logs = {"loss": float(loss.detach())}
        logs.update({k: float(v) for k, v in parts.items()})
        return loss, logs

    def forward(self, collated: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Same as ``compute_loss`` (so accelerate / DDP wrappers can call ``model(batch)``)."""
        return self.compute_loss(collated)

    # ----------------------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_action_chunk(self, observations: dict[str, Any], *, noise: torch.Tensor | None = None,
                             num_steps: int | None = None) -> torch.Tensor:
        """Action chunks for a batch of eval observations, in dataset units.

        Args:
            observations: eval-style batch: "observation.images.<cam>" [B, H, W, 3] uint8,
                "observation.state" [B, S], "task" list of B strings.
            noise: [B, chunk, A] start sample for flow-matching heads (None = drawn).
            num_steps: Euler steps for flow-matching heads (None = the config's).

        Returns:
            [B, chunk_size, action_dim] float tensor (on the model's device).
        """
        was_training = self.training
        self.eval()  # no dropout; restored after, so calling this mid-training leaves training mode alone
        try:
            batch = self.collator()(observation_items(observations))
            chunk = self.head.predict(self.backbone, self.prefix(batch), noise=noise, num_steps=num_steps)
        finally:
            self.train(was_training)
        return self.normalizer.unnormalize(ACTION_KEY, chunk.float())

    @property
    def device(self) -> torch.device:
        """Device of the backbone's weights."""
        return self.backbone.model.device

    def prefix(self, collated: dict[str, Any]) -> Prefix:
        """The head's view of a collated batch: prompt batch, language mask and state on the model's device."""
        device = self.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collated["prefix"].items()}
        state = collated.get("state")
        return Prefix(batch=batch, language_mask=collated["language_mask"].to(device),
                      state=None if state is None else state.to(device))

    # ----------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the policy folder atomically (see the module docstring for the layout).

        Args:
            path: destination folder (replaced if it exists).

        Returns:
            ``path`` as a Path.
        """
        out = Path(path)
        with atomic_dir(out) as tmp:
            meta = {"format_version": FORMAT_VERSION, "head": self.config.head, "config": config_to_dict(self.config)}
            if self.input_features is not None:
                meta["input_features"] = self.input_features
            atomic_write_json(tmp / CONFIG_FILE, meta)
            self.backbone.save_pretrained(tmp / BACKBONE_DIR)
            tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
            tensors.update({f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()})
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE))
        logger.info("saved %s policy to %s", self.config.head, out)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, head: str | None = None) -> VLAPolicy:
        """Load a folder written by ``save_pretrained``.

        Args:
            path: the policy folder.
            head: the head type the caller expects (None = whatever the checkpoint holds).

        Returns:
            The policy, in eval mode, on CPU.

        Raises:
            PolicyCheckpointError: missing files, an unknown format version, or a different head than ``head``.
        """
        root = Path(path)
        for name in (CONFIG_FILE, BACKBONE_DIR, WEIGHTS_FILE):
            if not (root / name).exists():
                raise PolicyCheckpointError(f"{root} is not a VLA policy checkpoint: {root / name} is missing "
                                            "(expected policy_config.json, backbone/, head.safetensors)")
        meta = json.loads((root / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise PolicyCheckpointError(f"{root / CONFIG_FILE} has format_version {meta.get('format_version')}, "
                                        f"this code reads {FORMAT_VERSION}")
        if head is not None and head != meta["head"]:
            raise PolicyCheckpointError(f"checkpoint {root} holds a {meta['head']!r} head, but {head!r} was asked")
        config = config_from_dict(meta["config"])
        backbone = VLMBackbone.from_pretrained(str(root / BACKBONE_DIR), local_files_only=True)
        policy = cls(config, backbone, build_head(config, BackboneDims.of(backbone)), _normalizer(config, None),
                     meta.get("input_features"))
        tensors = load_file(str(root / WEIGHTS_FILE))
        for prefix, module in (("head.", policy.head), ("normalizer.", policy.normalizer)):
            part = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(part)
            except RuntimeError as err:
                raise PolicyCheckpointError(f"{root / WEIGHTS_FILE} does not fit the {config.head} head its "
                                            f"config describes: {err}") from err
        return policy.eval()


    def load_apt_prior(self, path: str | Path) -> dict[str, Any]:
        """Start this APT stage-2 policy's expert from a stage-1 policy's expert (policies/apt.py).

        Stage-1 layer k goes to stage-2 layer 2k; the inserted layers and the fusion keep their fresh
        initialisation. The stage-1 policy must be an APT stage-1 policy of the same expert type and
        shapes, trained against this policy's VLM (same architecture and weights).

        Args:
            path: a stage-1 policy folder, or a train-policy run directory holding one in policy/.

        Returns:
            {"stage1": the folder read, "fresh_parameters": how many parameters were left freshly initialised,
            "renormalised": the normaliser buffers whose values differ from the prior's (logged as a warning)}.

        Raises:
            PolicyCheckpointError: this policy is not APT stage 2, or the folder is no stage-1 policy of
                the same expert style, shapes and VLM; the message names both sides.
        """
        if self.config.apt.stage != 2:
            raise PolicyCheckpointError(f"only an APT stage-2 policy starts from a stage-1 prior; this one has "
                                        f"policy.apt.stage={self.config.apt.stage}")
        root = Path(path)
        if not (root / CONFIG_FILE).is_file() and (root / "policy" / CONFIG_FILE).is_file():
            root = root / "policy"
        if not (root / CONFIG_FILE).is_file():
            raise PolicyCheckpointError(f"apt.stage1={path} holds no policy ({root / CONFIG_FILE} is missing): pass "
                                        "the stage-1 run's policy/ folder (or its run directory)")
        prior = config_from_dict(json.loads((root / CONFIG_FILE).read_text())["config"])
        if prior.apt.stage != 1:
            kind = "a plain expert (apt.stage=0)" if prior.apt.stage == 0 else "an APT stage-2 policy (apt.stage=2)"
            raise PolicyCheckpointError(f"{root} holds {kind}, but stage 2 starts from a stage-1 policy "
                                        f"(policy.apt.stage=1): pass the stage-1 run's policy instead")
        if prior.head != self.config.head:
            raise PolicyCheckpointError(f"{root} holds a stage-1 {prior.head} expert, but this run trains "
                                        f"policy.head={self.config.head}: the expert styles must match")
        differences = _expert_differences(prior, self.config)
        if differences:
            raise PolicyCheckpointError(f"the stage-1 policy {root} has another expert shape than this stage-2 "
                                        f"config: {'; '.join(differences)} (stage 1 vs here)")
        difference = first_difference_on_disk(root / BACKBONE_DIR, self.backbone.model)
        if difference is None:  # saved under other tensor names: compare the loaded model
            prior_vlm = VLMBackbone.from_pretrained(str(root / BACKBONE_DIR), local_files_only=True)
            difference = first_difference(prior_vlm.model, self.backbone.model)
            del prior_vlm
        if difference:
            raise PolicyCheckpointError(
                f"the stage-1 policy {root} was trained against another VLM ({root / BACKBONE_DIR}) than this "
                f"run's model ({self.backbone.name_or_path}): {difference}. Stage 2 reads the VLM the prior "
                f"was trained against: set model={root / BACKBONE_DIR}, or train stage 1 on this model")
        tensors = load_file(str(root / WEIGHTS_FILE))
        fresh = self.head.load_prior({k.removeprefix("head."): v for k, v in tensors.items()
                                      if k.startswith("head.")}, str(root / WEIGHTS_FILE))
        own = dict(self.head.named_parameters())
        # Another dataset's statistics are allowed (a prior pretrained on broad data, stage 2 on the target
        # robot's) but the prior's weights then see differently scaled inputs and targets: say so, and record it.
        prior_norm = {k.removeprefix("normalizer."): v for k, v in tensors.items() if k.startswith("normalizer.")}
        renormalised = sorted(k for k, v in self.normalizer.state_dict().items() if k in prior_norm and (
            prior_norm[k].shape != v.shape or not torch.allclose(prior_norm[k].float(), v.detach().float().cpu(),
                                                                 rtol=1e-4, atol=1e-6)))
        if renormalised:
            logger.warning("The stage-1 policy %s was trained with other normalisation statistics than this run's "
                           "data (%s): its expert sees rescaled states and actions until stage 2 adapts it",
                           root, ", ".join(renormalised))
        return {"stage1": str(root), "fresh_parameters": sum(own[k].numel() for k in fresh if k in own),
                "renormalised": renormalised}


def _expert_differences(prior: VLAConfig, config: VLAConfig) -> list[str]:
    """The settings that shape the expert and differ between a stage-1 config and a stage-2 config."""
    options = config.head  # "pi0" or "gr00t": the options block of the expert
    ignore = {"mask_language", "num_steps"}  # stage 1 masks anyway; Euler steps are an inference setting
    a, b = config_to_dict(getattr(prior, options)), config_to_dict(getattr(config, options))
    out = [f"{options}.{k}: {a[k]} vs {b[k]}" for k in a if k not in ignore and a[k] != b[k]]
    for name in ("action_dim", "state_dim", "chunk_size", "cameras"):
        if getattr(prior, name) != getattr(config, name):
            out.append(f"{name}: {getattr(prior, name)} vs {getattr(config, name)}")
    return out


def check_dataset(config: VLAConfig, features: dict[str, dict], source: str) -> None:
    """Check a dataset's features against a policy config before building or training a policy.

    Args:
        config: the policy config.
        features: the dataset's features (``reader.features``: key -> {"dtype", "shape", ...}).
        source: where the dataset is, for messages.

    Raises:
        PolicyInputError: action or state dimension differs from the config, or a camera is missing.
    """
    checks = [(ACTION_KEY, config.action_dim, "action_dim")]
    if config.state_dim > 0:
        checks.append((STATE_KEY, config.state_dim, "state_dim"))
    for key, want, field in checks:
        if key not in features:
            raise PolicyInputError(f"dataset {source} has no {key!r} feature (it has {sorted(features)}), but "
                                   f"the policy config needs it ({field}={want})")
        have = int(np.prod(features[key]["shape"]))
        if have != want:
            raise PolicyInputError(f"dataset {source} has {key.replace('observation.', '')} dim {have}, policy "
                                   f"config {field}={want}; set {field}={have} or use a matching dataset")
    cameras = sorted(k.removeprefix("observation.images.") for k in features if k.startswith("observation.images."))
    missing = [c for c in config.cameras if f"observation.images.{c}" not in features]
    if missing:
        raise PolicyInputError(f"dataset {source} has cameras {cameras}, policy config cameras="
                               f"{list(config.cameras)} (missing {missing}); set cameras to ones the dataset has")


def input_features(config: VLAConfig, features: dict[str, dict] | None) -> dict[str, dict] | None:
    """{"dtype", "shape"} of the features a policy of ``config`` reads (its cameras, the state), or None."""
    if features is None:
        return None
    keys = [*config.image_keys, *([STATE_KEY] if config.state_dim > 0 else [])]
    return {k: {"dtype": str(features[k]["dtype"]), "shape": [int(n) for n in features[k]["shape"]]}
            for k in keys if k in features}


def config_from_dict(data: dict[str, Any]) -> VLAConfig:
    """Rebuild a VLAConfig (nested options, tuples) from ``config_to_dict`` output.

    Raises:
        PolicyCheckpointError: unknown fields or invalid values.
    """
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(VLAConfig), data))  # type: ignore[return-value]
    except Exception as err:  # OmegaConf errors and __post_init__ ValueErrors alike
        raise PolicyCheckpointError(f"policy config does not describe a valid VLAConfig: {err}") from err


def observation_items(observations: dict[str, Any]) -> list[dict[str, Any]]:
    """Split an eval-style batch dict (B rows per key, "task" a list) into B item dicts."""
    tasks = observations.get("task")
    if tasks is None:
        raise PolicyInputError(f"observations have no 'task' (keys: {sorted(observations)})")
    if isinstance(tasks, str):
        tasks = [tasks]
    items: list[dict[str, Any]] = [{"task": t} for t in tasks]
    for key, value in observations.items():
        if key.startswith("observation.") and len(value) == len(items):
            for item, row in zip(items, value, strict=True):
                item[key] = row
    return items


def _normalizer(config: VLAConfig, stats: dict | None) -> Normalizer:
    """The state/action normaliser of ``config`` (placeholders when ``stats`` is None)."""
    modes = {ACTION_KEY: config.action_normalization}
    dims = {ACTION_KEY: config.action_dim}
    if config.state_dim > 0:
        modes[STATE_KEY], dims[STATE_KEY] = config.state_normalization, config.state_dim
    return Normalizer(modes, dims, stats)
