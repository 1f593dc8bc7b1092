"""`vlm2vla train-policy`: fine-tune a VLM into a VLA policy on robot episodes, on the training driver.

    vlm2vla train-policy --config train_policy_tiny                    # the tiny default on runs/collect/dataset
    vlm2vla train-policy model=runs/midtrain/model policy.head=pi0 freeze=[vlm] optim.lr=1e-4
    vlm2vla train-policy init=scratch run_dir=runs/train-policy-scratch     # VLM4VLA's scratch baseline
    accelerate launch --num_processes 2 -m vlm2vla.cli train-policy ...    # or torchrun (DDP)

The driver (driver.py) owns resume, the step loop, checkpoints and metrics; the task here supplies the
episodes, the policy, its loss, validation and the policy folder. Settings and outputs:
train_policy_config.py.

The policy's loss is its mean over the batch, so each micro-batch weighs 1 (driver.py): the step's
gradient is the mean over its micro-batches, and DDP averages over processes.

APT (train_policy_config.APTTraining): a stage-2 run loads its stage-1 prior into the expert before
training, or first trains one as its own run in <run_dir>/stage1; the manifest's metrics.apt says which
stage the run trained and where its expert started.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState

from vlm2vla.runs import Run
from vlm2vla.training import policy_data
from vlm2vla.training.driver import Session, TaskSetup, build, train
from vlm2vla.training.model_setup import add_lora, count_parameters
from vlm2vla.training.train_policy_config import STAGE1_DIR, APTTraining, TrainPolicyConfig

log = logging.getLogger(__name__)


class PolicyTask:
    """What train-policy adds to the training driver."""

    label = "train-policy"
    weight_name = None
    eval_file = "val.json"
    eval_at_start = False

    def __init__(self, cfg: TrainPolicyConfig, run: Run):
        self.cfg, self.run = cfg, run
        self.eval_interval = cfg.val_interval
        self.accelerator: Accelerator | None = None
        self.policy: Any = None  # VLAPolicy (unwrapped)
        self.peft_model: Any = None  # peft wrapper of the backbone's model when LoRA is on
        self.val_dataset: Any = None  # None without validation episodes
        self.val_indices: list[int] = []
        self.parameters: dict[str, int] = {}  # trainable / total / new, counted before LoRA is merged away
        self.prepared_model: Any = None

    def setup(self, accelerator: Accelerator) -> TaskSetup:
        """The dataset (checked against the policy), the policy (+freezing, LoRA), the held-out frames."""
        from vlm2vla.robot_data.reader import LeRobotDatasetReader

        cfg = self.cfg
        self.accelerator = accelerator
        reader = LeRobotDatasetReader.open(cfg.data)  # DatasetFormatError names the missing / bad file
        self.policy, self.peft_model = build_policy(cfg, reader)
        train_eps, val_eps = policy_data.split_episodes(reader.num_episodes, cfg.val_episodes, cfg.seed)
        chunk, keys = cfg.policy.chunk_size, cfg.policy.image_keys
        train_set, bad_train = policy_data.policy_dataset(reader, train_eps, chunk, keys, cfg.cache_frames)
        val_set, bad_val = policy_data.policy_dataset(reader, val_eps, chunk, keys, cfg.cache_frames) if val_eps \
            else (None, {})
        bad = {**bad_train, **bad_val}
        policy_data.check_bad_episodes(bad, reader.num_episodes, cfg.max_bad_episodes)
        if train_set is None:
            raise ValueError(f"None of the {len(train_eps)} training episodes of {cfg.data} can be read: {bad}")
        if bad:
            log.warning("Skipped %d of %d episodes whose frames cannot be read (listed in the manifest under "
                        "metrics.skipped): %s", len(bad), reader.num_episodes, sorted(bad))
        self.val_dataset = val_set
        self.val_indices = policy_data.validation_indices(len(val_set), cfg.val_max_samples) if val_set else []
        self.parameters = {**count_parameters(self.policy), "new": self.policy.head.new_parameter_count()}
        inputs = {"data": cfg.data, "model": cfg.model}
        apt = apt_record(cfg, self.policy)
        if apt.get("stage1"):
            inputs["stage1"] = apt["stage1"]
        return TaskSetup(
            model=self.policy, dataset=train_set, collator=self.policy.collator(), inputs=inputs,
            lr_scales={"gate_logits": cfg.apt.gate_lr_scale},
            metrics={"parameters": self.parameters, "apt": apt, "train_episodes": len(train_eps) - len(bad_train),
                     "val_episodes": len(val_eps) - len(bad_val), "train_frames": len(train_set),
                     "skipped_episodes": len(bad), "skipped": {str(e): reason for e, reason in sorted(bad.items())}})

    def weight(self, batch: dict[str, Any]) -> int:
        """1: the head's loss is already a batch mean."""
        return 1

    def samples(self, batch: dict[str, Any]) -> int:
        """Frames in the batch."""
        return len(batch["action"])

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The head's batch-mean loss and its parts (arm / gripper, flow MSE, ...)."""
        loss, parts = model(batch)
        return loss, {k: float(v) for k, v in parts.items()}

    def has_evaluation(self) -> bool:
        """Validation episodes exist."""
        return self.val_dataset is not None

    def evaluate(self, step: int, evals: dict[str, Any]) -> dict[str, Any]:
        """Held-out action error and loss at `step` (main process; the others wait and get {})."""
        acc = self.accelerator
        result: dict[str, Any] = {}
        if acc.is_main_process:
            result = policy_data.validate(self.policy, self.val_dataset, self.val_indices, self.cfg.optim.batch_size,
                                          self.cfg.seed)
            result["step"] = step
            log.info("Validation at step %d: L1 %.4f, MSE %.4f, loss %.4f", step, result["l1"], result["mse"],
                     result["loss"])
        acc.wait_for_everyone()
        return result

    def eval_document(self, evals: dict[str, Any]) -> dict[str, Any]:
        """val.json: the last validation, and every one by step."""
        return {"final": evals[list(evals)[-1]], "by_step": evals}

    def save_model(self, path: Path) -> None:
        """A checkpoint's model/: the loadable policy (the adapter alone with LoRA)."""
        if self.accelerator.is_main_process and self.peft_model is None:
            self.policy.save_pretrained(path)
        elif self.accelerator.is_main_process:
            self.peft_model.save_pretrained(path / "adapter")  # the full policy is written at the end, merged

    def save_final(self, run_dir: Path) -> dict[str, Path]:
        """Write <run_dir>/policy (LoRA adapters merged into the backbone first); skipped when already there."""
        final = run_dir / "policy"
        if self.accelerator.is_main_process and not final.is_dir():
            if self.peft_model is not None:
                self.peft_model.merge_and_unload()  # folds the adapters into the backbone's own Linear layers
            self.policy.save_pretrained(final)
            log.info("Final policy in %s", final)
        return {"policy": final, "val": run_dir / self.eval_file}

    def final_metrics(self, evals: dict[str, Any]) -> dict[str, Any]:
        """Parameter counts and the last validation's figures."""
        out: dict[str, Any] = {"parameters": self.parameters}
        if evals:
            out["val"] = {k: v for k, v in evals[max(evals, key=int)].items() if k != "step"}
        return out


def build_policy(cfg: TrainPolicyConfig, reader: Any) -> tuple[Any, Any]:
    """Backbone (pretrained or scratch) -> VLAPolicy with the dataset's stats -> frozen groups -> LoRA.

    Returns:
        (policy, peft wrapper or None).

    Raises:
        PolicyInputError: the dataset lacks a camera or its state / action sizes differ from the policy's.
        ValueError: the model cannot be loaded.
    """
    from vlm2vla.backbones import load_backbone
    from vlm2vla.policies.policy import VLAPolicy, check_dataset

    # Checked before the (slow) backbone load and before build, whose normaliser would otherwise trip
    # over a wrong-sized stats entry with a vaguer message.
    check_dataset(cfg.policy, reader.features, str(cfg.data))
    backbone = load_backbone(cfg.model, trust_remote_code=cfg.trust_remote_code, scratch=cfg.init == "scratch",
                             seed=cfg.seed)
    policy = VLAPolicy.build(cfg.policy, backbone, reader.stats, reader.features)
    # Freeze first: `freeze` names base weights, and LoRA adapters (added after) always train.
    if "vlm" in cfg.freeze or (cfg.policy.apt.stage and cfg.apt.freeze_vlm):
        backbone.requires_grad_(False)
    else:
        backbone.freeze(cfg.freeze)
    peft_model = add_lora(backbone.model, cfg.lora) if cfg.lora.enabled else None
    return policy, peft_model


def train_policy(cfg: TrainPolicyConfig, run: Run, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume training) a VLA policy as `cfg` describes, into `run.dir`.

    With policy.apt.stage=2 and apt.stage1_steps, the stage-1 prior is trained first as its own run in
    <run_dir>/stage1 (skipped once complete) and this run starts from its policy.

    Args:
        cfg: the run's settings.
        run: the open run directory.
        stop_after: stop with a checkpoint once this many steps are done (to split a run into jobs; a
            sequenced APT run counts stage 1's steps, then stage 2's); None trains to the end, validates and
            writes the final policy.

    Returns:
        Final metrics (also in the manifest): steps, final loss, validation figures, parameter counts,
        wall time; or {"step", "stopped_early"} when stopped early.
    """
    if cfg.apt.stage1_steps:
        from vlm2vla.policies.policy import BACKBONE_DIR

        prior_cfg = stage1_config(cfg)
        prior_dir = Path(prior_cfg.run_dir)
        PartialState().wait_for_everyone()  # every process decides on the same (rank 0's) stage-1 folder
        if not _complete(prior_dir):
            log.info("APT stage 1: %d steps into %s", cfg.apt.stage1_steps, prior_dir)
            prior_run = Run.open(prior_dir, "train-policy", prior_cfg)
            try:
                result = train(build_session(prior_cfg, prior_run), stop_after)
            except BaseException as err:
                prior_run.fail(err)
                raise
            if result.get("stopped_early"):
                return {**result, "apt_stage": 1}
            gc.collect()  # the stage-1 session (model, optimizer, loader workers, frame cache) is gone
        if stop_after is not None:
            if stop_after <= prior_cfg.optim.max_steps:
                return {"step": prior_cfg.optim.max_steps, "stopped_early": True, "apt_stage": 1}
            stop_after -= prior_cfg.optim.max_steps
        prior = prior_dir / "policy"
        cfg = replace(cfg, apt=replace(cfg.apt, stage1_steps=0, stage1=str(prior)))
        if not cfg.apt.freeze_vlm:  # stage 1 trained the VLM: stage 2 goes on from that VLM
            cfg = replace(cfg, model=str(prior / BACKBONE_DIR), init="pretrained")
        log.info("APT stage 2 from %s", cfg.apt.stage1)
        result = train(build_session(cfg, run), stop_after)
        if result.get("stopped_early"):
            return {"step": prior_cfg.optim.max_steps + result["step"], "stopped_early": True, "apt_stage": 2}
        return result
    return train(build_session(cfg, run), stop_after)


def stage1_config(cfg: TrainPolicyConfig) -> TrainPolicyConfig:
    """The settings of the stage-1 run a sequenced APT run trains first: the same run with stage 1's layout,
    length and learning rate, in <run_dir>/stage1."""
    return replace(cfg, run_dir=str(Path(cfg.run_dir) / STAGE1_DIR),
                   policy=replace(cfg.policy, apt=replace(cfg.policy.apt, stage=1)),
                   optim=replace(cfg.optim, max_steps=cfg.apt.stage1_steps, lr=cfg.apt.stage1_lr or cfg.optim.lr),
                   apt=APTTraining(freeze_vlm=cfg.apt.freeze_vlm))


def apt_record(cfg: TrainPolicyConfig, policy: Any) -> dict[str, Any]:
    """What the manifest says about APT: the stage this run trains and where its expert started.

    Loads the stage-1 prior into a stage-2 policy as a side effect (before any checkpoint is resumed,
    which then overrides it).
    """
    stage = cfg.policy.apt.stage
    record: dict[str, Any] = {"stage": stage}
    if stage == 2 and cfg.apt.stage1:
        record.update(policy.load_apt_prior(cfg.apt.stage1), init="stage1")
    elif stage == 2:
        record["init"] = "random"  # the joint baseline: the stage-2 architecture trained in one stage
        log.warning("APT stage 2 without a stage-1 prior (apt.stage1 / apt.stage1_steps): the expert starts from "
                    "random weights, as the joint baseline does")
    if stage:
        record["vlm_frozen"] = bool(cfg.apt.freeze_vlm or "vlm" in cfg.freeze)
    return record


def _complete(run_dir: Path) -> bool:
    manifest = run_dir / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete" and \
        (run_dir / "policy").is_dir()


def build_session(cfg: TrainPolicyConfig, run: Run) -> Session:
    """The driver's Session for this run: data, policy, optimizer, all prepared (nothing resumed yet)."""
    # Some heads leave trainable VLM weights out of the loss (the pi0-style expert reads only keys and
    # values, so the last layer's output path gets no gradient); DDP must not wait for those gradients.
    return build(PolicyTask(cfg, run), cfg, run, find_unused_parameters=True)
