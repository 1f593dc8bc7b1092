"""`vlm2vla train-policy`: fine-tune a VLM into a VLA policy on robot episodes (VLM4VLA, APT).

    vlm2vla train-policy --config train_policy_tiny                    # the tiny default on runs/collect/dataset
    vlm2vla train-policy model=runs/midtrain/model policy.head=pi0 freeze=[vlm]
    vlm2vla train-policy init=scratch run_dir=runs/train-policy-scratch     # VLM4VLA's scratch baseline
    accelerate launch --num_processes 2 -m vlm2vla.cli train-policy ...    # or torchrun (DDP)

One run: load the backbone (pretrained weights, or the same architecture randomly initialised), add
LoRA / freeze groups, build the policy around it with the dataset's normalisation stats, check that
the dataset has the cameras and dimensions the policy expects, then AdamW + warmup + cosine with
gradient clipping and accumulation. Outputs in the run directory:

    checkpoints/step-N/   accelerate state (weights, optimizer, scheduler, RNG) + trainer_state.json
                          (step, data position) + model/ (the policy, loadable)
    metrics.jsonl         every log_interval steps: loss and the head's per-part losses, lr, grad_norm,
                          samples/s, data_wait_frac
    val.json              held-out action error (L1, MSE in dataset units, padding masked) and loss,
                          every val_interval steps and at the end
    policy/               the final policy (VLAPolicy.from_pretrained loads it)

Re-running with the same run_dir resumes from the newest checkpoint exactly (see session.py, whose
structure this mirrors). The optimizer step is in policy_loop.py; the episode split, the RAM frame
cache and validation are in policy_data.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from vlm2vla.backbones.families import FREEZE_GROUPS
from vlm2vla.config import check_choices, choice
from vlm2vla.fileio import atomic_write_json
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.runs import Run
from vlm2vla.training import checkpoint as ckpt
from vlm2vla.training import policy_data
from vlm2vla.training.config import MIXED_PRECISION, LoraOptions, check_optimization
from vlm2vla.training.data import make_stream
from vlm2vla.training.loop import build_optimizer, build_scheduler, make_accelerator, run_steps, total_steps
from vlm2vla.training.metrics import MetricsWriter, read_metrics
from vlm2vla.training.model_setup import add_lora, count_parameters
from vlm2vla.training.policy_loop import PolicyStepStats, PolicyTrainer
from vlm2vla.training.session import resume_from_checkpoint

log = logging.getLogger(__name__)

INITS = ("pretrained", "scratch")
# "vlm" freezes the whole backbone: only the action head (and LoRA adapters, if any) train.
FREEZE_CHOICES = (*FREEZE_GROUPS, "vlm")


@dataclass(frozen=True)
class TrainPolicyConfig:
    """Settings of one policy training run.

    Standalone rather than a TrainConfig subclass: TrainConfig's next-token fields (max_length, eval.*,
    tiny_image_size, report_to, ...) mean nothing here and would clutter `--help`. The optimisation
    fields keep TrainConfig's names, so loop.py's make_accelerator / build_optimizer / build_scheduler /
    total_steps take this config as they are.
    """

    # where config, manifest, checkpoints, metrics and the final policy go; re-running resumes
    run_dir: str = "runs/train-policy"
    # the VLM: a folder (the pretrained tiny default, a mid-trained checkpoint's model/) or a hub id
    model: str = "runs/pretrain/model"
    # "pretrained" loads the weights of `model`; "scratch" = same architecture, random init (VLM4VLA baseline)
    init: str = choice(*INITS)
    # the robot episodes: a LeRobotDataset folder (v3.0 or v2.1), or a collect run directory holding one
    data: str = "runs/collect/dataset"
    # held-out episodes for validation: a fraction in (0, 1), a count >= 1, or 0 for none (seeded choice)
    val_episodes: float = 0.1
    # held-out frames used per validation (evenly spaced; 0 = all)
    val_max_samples: int = 256
    # the policy: head type, cameras, dimensions, chunking, normalisation, per-head options
    policy: VLAConfig = field(default_factory=VLAConfig)
    # backbone parts frozen during training ("vlm" = all of it: only the head and LoRA adapters train)
    freeze: tuple[str, ...] = choice(*FREEZE_CHOICES, default=())
    # LoRA adapters on the backbone's language model instead of full fine-tuning (merged into policy/)
    lora: LoraOptions = field(default_factory=LoraOptions)
    # allow model repositories to run their own Python code (off unless you trust the repository)
    trust_remote_code: bool = False
    # per-device micro-batch size (frames)
    batch_size: int = 16
    # micro-batches per optimizer step (global batch = batch_size * processes * grad_accum)
    grad_accum: int = 1
    # AdamW peak learning rate
    lr: float = 1e-4
    # AdamW weight decay (not applied to biases and norm weights)
    weight_decay: float = 0.01
    # AdamW betas
    betas: tuple[float, float] = (0.9, 0.95)
    # fraction of the steps spent warming the learning rate up linearly, then cosine decay to 0
    warmup_ratio: float = 0.05
    # optimizer steps; 0 derives them from `epochs`
    max_steps: int = 0
    # passes over the training frames when max_steps is 0
    epochs: float = 10.0
    # gradient-norm clipping (0 = off)
    max_grad_norm: float = 1.0
    # "auto" picks bf16 on GPUs that support it and "no" elsewhere
    mixed_precision: str = choice(*MIXED_PRECISION)
    # steps between metrics lines
    log_interval: int = 10
    # steps between validations (0 = only at the end)
    val_interval: int = 0
    # steps between checkpoints (0 = only the final one)
    save_interval: int = 200
    # checkpoints kept (the oldest are deleted)
    keep_checkpoints: int = 2
    # seed of the head's initialisation (and scratch backbone), data order, split and validation noise
    seed: int = 0
    # largest fraction of episodes whose frames cannot be read (corrupt video or image) that is skipped and
    # counted (manifest metrics.skipped) rather than fatal; 0 = any unreadable episode stops the run
    max_bad_episodes: float = 0.05
    # dataloader worker processes (image processing and collation happen there)
    num_workers: int = 2
    # decode every frame once into RAM as uint8 before training (random-access video decoding is slow)
    cache_frames: bool = True
    # show a progress bar (main process only)
    progress: bool = True

    def __post_init__(self) -> None:
        check_choices(self)
        check_optimization(self, at_least_one=("batch_size", "grad_accum", "log_interval", "keep_checkpoints"),
                           non_negative=("max_steps", "val_interval", "save_interval", "num_workers", "weight_decay",
                                         "max_grad_norm", "val_episodes", "val_max_samples"))
        if not 0.0 <= self.max_bad_episodes <= 1.0:
            raise ValueError(f"max_bad_episodes must be a fraction in [0, 1], got {self.max_bad_episodes}")
        if self.val_episodes >= 1 and self.val_episodes != int(self.val_episodes):
            raise ValueError(f"val_episodes must be a fraction < 1 or a whole count, got {self.val_episodes}")
        if not self.model or not self.data:
            raise ValueError("model (a VLM folder or hub id) and data (a LeRobotDataset folder) must be set")


@dataclass
class PolicyParts:
    """Everything a run builds before its first step."""

    accelerator: Accelerator
    policy: Any  # VLAPolicy (unwrapped)
    peft_model: Any  # peft wrapper of the backbone's model when LoRA is on, else None
    trainer: PolicyTrainer
    val_dataset: Any  # None without validation episodes
    val_indices: list[int]
    total_steps: int
    run_dir: Path
    parameters: dict[str, int]  # trainable / total / new, counted before LoRA is merged away


def train_policy(cfg: TrainPolicyConfig, run: Run, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume training) a VLA policy as `cfg` describes, into `run.dir`.

    Args:
        cfg: the run's settings.
        run: the open run directory.
        stop_after: stop with a checkpoint once this many steps are done (to split a run into jobs);
            None trains to the end, validates and writes the final policy.

    Returns:
        Final metrics (also in the manifest): steps, final loss, validation figures, parameter counts,
        wall time; or {"step", "stopped_early"} when stopped early.
    """
    parts = build_parts(cfg, run)
    acc, trainer = parts.accelerator, parts.trainer
    resume_from_checkpoint(acc, trainer, run.dir / "checkpoints", run.dir)
    vals = _read_vals(run.dir)
    end = parts.total_steps if stop_after is None else min(stop_after, parts.total_steps)
    train_until(parts, cfg, run, end, vals)
    save_checkpoint(parts, cfg)
    if trainer.step < parts.total_steps:
        return {"step": trainer.step, "stopped_early": True}
    if parts.val_dataset is not None and str(trainer.step) not in vals:
        vals[str(trainer.step)] = run_validation(parts, cfg, trainer.step, run.dir, vals)
    save_final_policy(parts, run.dir)
    metrics = _final_metrics(parts, run.dir, vals)
    if acc.is_main_process:
        run.finish(metrics=metrics, outputs={"policy": run.dir / "policy", "metrics": run.dir / "metrics.jsonl",
                                             "val": run.dir / "val.json"})
    acc.wait_for_everyone()
    return metrics


def build_parts(cfg: TrainPolicyConfig, run: Run) -> PolicyParts:
    """Accelerator, data, policy (+LoRA, freezing), optimizer and schedule, all prepared."""
    from vlm2vla.robot_data.reader import LeRobotDatasetReader

    acc = make_accelerator(cfg)
    if acc.num_processes > 1:
        # Some heads leave trainable VLM weights out of the loss (the pi0-style expert reads only keys and
        # values, so the last layer's output path gets no gradient); DDP must not wait for those gradients.
        acc.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
    set_seed(cfg.seed)  # head init, LoRA adapters, dropout; data order and the split have their own seeds
    reader = LeRobotDatasetReader.open(cfg.data)  # DatasetFormatError names the missing / bad file
    policy, peft_model = build_policy(cfg, reader)
    train_eps, val_eps = policy_data.split_episodes(reader.num_episodes, cfg.val_episodes, cfg.seed)
    chunk, keys = cfg.policy.chunk_size, cfg.policy.image_keys
    train_set, bad_train = policy_data.policy_dataset(reader, train_eps, chunk, keys, cfg.cache_frames)
    val_set, bad_val = policy_data.policy_dataset(reader, val_eps, chunk, keys, cfg.cache_frames) if val_eps \
        else (None, {})
    bad = {**bad_train, **bad_val}
    policy_data.check_bad_episodes(bad, reader.num_episodes, cfg.max_bad_episodes)
    if train_set is None:
        raise ValueError(f"None of the {len(train_eps)} training episodes of {cfg.data} can be read: {bad}")
    stream = make_stream(train_set, policy.collator(), cfg.batch_size, acc.num_processes, acc.process_index,
                         cfg.seed, cfg.num_workers)
    steps = total_steps(cfg, stream.sampler.batches_per_epoch)
    optimizer = build_optimizer(policy, cfg)  # raises "Nothing to train" when everything is frozen
    scheduler = build_scheduler(optimizer, cfg, steps)
    model, optimizer = acc.prepare(policy, optimizer)
    acc.register_for_checkpointing(scheduler)
    trainer = PolicyTrainer(cfg, acc, model, optimizer, scheduler, stream)
    val_indices = policy_data.validation_indices(len(val_set), cfg.val_max_samples) if val_set else []
    params = _parameter_counts(policy)
    if acc.is_main_process:
        run.update(inputs={"data": cfg.data, "model": cfg.model}, metrics={
            "parameters": params, "train_episodes": len(train_eps) - len(bad_train),
            "val_episodes": len(val_eps) - len(bad_val), "train_frames": len(train_set), "total_steps": steps,
            "processes": acc.num_processes, "skipped_episodes": len(bad),
            "skipped": {str(e): reason for e, reason in sorted(bad.items())}})
    if bad:
        log.warning("Skipped %d of %d episodes whose frames cannot be read (listed in the manifest under "
                    "metrics.skipped): %s", len(bad), reader.num_episodes, sorted(bad))
    return PolicyParts(acc, policy, peft_model, trainer, val_set, val_indices, steps, run.dir, params)


def build_policy(cfg: TrainPolicyConfig, reader: Any) -> tuple[Any, Any]:
    """Backbone (pretrained or scratch) -> VLAPolicy with the dataset's stats -> frozen groups -> LoRA.

    Returns:
        (policy, peft wrapper or None).

    Raises:
        PolicyInputError: the dataset lacks a camera or its state / action sizes differ from the policy's.
        ValueError: the model cannot be loaded.
    """
    from vlm2vla.policies.policy import VLAPolicy, check_dataset

    # Checked before the (slow) backbone load and before build, whose normaliser would otherwise trip
    # over a wrong-sized stats entry with a vaguer message.
    check_dataset(cfg.policy, reader.features, str(cfg.data))
    backbone = load_policy_backbone(cfg)
    policy = VLAPolicy.build(cfg.policy, backbone, reader.stats)
    # Freeze first: `freeze` names base weights, and LoRA adapters (added after) always train.
    if "vlm" in cfg.freeze:
        backbone.requires_grad_(False)
    else:
        backbone.freeze(cfg.freeze)
    peft_model = add_lora(backbone.model, cfg.lora) if cfg.lora.enabled else None
    return policy, peft_model


def load_policy_backbone(cfg: TrainPolicyConfig) -> Any:
    """The VLMBackbone of cfg.model: its weights, or (init=scratch) its architecture with random weights."""
    from vlm2vla.backbones import VLMBackbone, VLMLoadError

    try:
        if cfg.init == "scratch":
            return VLMBackbone.from_scratch(cfg.model, trust_remote_code=cfg.trust_remote_code, seed=cfg.seed)
        return VLMBackbone.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except VLMLoadError as err:
        raise ValueError(f"Cannot load model {cfg.model!r}: {err}") from err
    except OSError as err:
        raise ValueError(f"Cannot load model {cfg.model!r} ({type(err).__name__}: {err}). Pass a VLM folder written "
                         "by save_pretrained (e.g. runs/pretrain/model) or a hub id in the local cache.") from err


def _parameter_counts(policy: Any) -> dict[str, int]:
    """Trainable and total parameters of the policy, and those the head adds to the VLM."""
    return {**count_parameters(policy), "new": policy.head.new_parameter_count()}


def train_until(parts: PolicyParts, cfg: TrainPolicyConfig, run: Run, end: int, vals: dict[str, Any]) -> None:
    """Take optimizer steps until `end`, logging, validating and checkpointing on their intervals."""
    acc = parts.accelerator

    def after_step(step: int) -> None:
        if cfg.val_interval and step % cfg.val_interval == 0 and step < parts.total_steps \
                and parts.val_dataset is not None and str(step) not in vals:
            vals[str(step)] = run_validation(parts, cfg, step, run.dir, vals)
        if cfg.save_interval and step % cfg.save_interval == 0 and step < end:
            save_checkpoint(parts, cfg)

    writer = MetricsWriter(run.dir / "metrics.jsonl", enabled=acc.is_main_process)
    run_steps(parts.trainer, end, parts.total_steps, writer, new_stats=PolicyStepStats, log_interval=cfg.log_interval,
              progress=cfg.progress and acc.is_main_process, desc="train-policy", after_step=after_step)


def run_validation(parts: PolicyParts, cfg: TrainPolicyConfig, step: int, run_dir: Path, vals: dict[str, Any]
                   ) -> dict[str, Any]:
    """Held-out action error and loss at `step` (main process; the others wait); saved in val.json."""
    acc = parts.accelerator
    result: dict[str, Any] = {}
    if acc.is_main_process:
        result = policy_data.validate(parts.policy, parts.val_dataset, parts.val_indices, cfg.batch_size, cfg.seed)
        result["step"] = step
        steps = sorted({**vals, str(step): result}, key=int)
        merged = {**vals, str(step): result}
        atomic_write_json(run_dir / "val.json", {"final": merged[steps[-1]], "by_step": {s: merged[s] for s in steps}})
        log.info("Validation at step %d: L1 %.4f, MSE %.4f, loss %.4f", step, result["l1"], result["mse"],
                 result["loss"])
    acc.wait_for_everyone()
    return result


def save_checkpoint(parts: PolicyParts, cfg: TrainPolicyConfig) -> Path:
    """Checkpoint the current step (every process takes part); model/ holds the loadable policy."""
    trainer = parts.trainer

    def save_model(path: Path) -> None:
        if parts.accelerator.is_main_process and parts.peft_model is None:
            parts.policy.save_pretrained(path)
        elif parts.accelerator.is_main_process:
            parts.peft_model.save_pretrained(path / "adapter")  # the full policy is written at the end, merged

    return ckpt.save_checkpoint(parts.accelerator, parts.run_dir / "checkpoints", trainer.step, trainer.state(),
                                save_model, cfg.keep_checkpoints)


def save_final_policy(parts: PolicyParts, run_dir: Path) -> None:
    """Write <run_dir>/policy (LoRA adapters merged into the backbone first); skipped when already there."""
    final = run_dir / "policy"
    if parts.accelerator.is_main_process and not final.is_dir():
        if parts.peft_model is not None:
            parts.peft_model.merge_and_unload()  # folds the adapters into the backbone's own Linear layers
        parts.policy.save_pretrained(final)
        log.info("Final policy in %s", final)
    parts.accelerator.wait_for_everyone()


def _read_vals(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "val.json"
    return json.loads(path.read_text())["by_step"] if path.is_file() else {}


def _final_metrics(parts: PolicyParts, run_dir: Path, vals: dict[str, Any]) -> dict[str, Any]:
    records = read_metrics(run_dir / "metrics.jsonl") if parts.accelerator.is_main_process else []
    out: dict[str, Any] = {
        "steps": parts.trainer.step, "samples_seen": parts.trainer.samples_seen,
        "final_loss": records[-1]["loss"] if records else None,
        "parameters": parts.parameters, "wall_time_s": round(parts.trainer.wall_time_s, 2),
    }
    if vals:
        last = vals[max(vals, key=int)]
        out["val"] = {k: v for k, v in last.items() if k != "step"}
    return out
