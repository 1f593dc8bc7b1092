"""Settings of `vlm2vla train-policy` (fine-tune a VLM into a VLA policy on robot episodes).

    vlm2vla train-policy --config train_policy_tiny                    # the tiny default on runs/collect/dataset
    vlm2vla train-policy model=runs/midtrain/model policy.head=pi0 freeze=[vlm] optim.lr=1e-4
    vlm2vla train-policy init=scratch run_dir=runs/train-policy-scratch     # VLM4VLA's scratch baseline
    accelerate launch --num_processes 2 -m vlm2vla.cli train-policy ...    # or torchrun (DDP)
    vlm2vla train-policy policy.head=pi0 policy.apt.stage=2 apt.stage1_steps=500   # APT: stage 1, then 2

APT (policy.apt.stage, policies/apt.py): stage 1 trains the language-blind prior with the VLM frozen;
stage 2 starts from a stage-1 policy (`apt.stage1`), or trains one first into <run_dir>/stage1
(`apt.stage1_steps`: its own run, resumable, with the same settings but stage 1's layout and length),
then inserts the fused layers and trains for optim's steps. Stage 2 without either is the joint baseline:
the stage-2 architecture trained from random expert weights in one stage.

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

Re-running with the same run_dir resumes from the newest checkpoint exactly: the run itself is the
shared training driver (driver.py); what is particular to policies is in train_policy.py, and the
episode split, the RAM frame cache and validation are in policy_data.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vlm2vla.backbones.families import FREEZE_GROUPS
from vlm2vla.config import check_choices, choice
from vlm2vla.policies.configuration import VLAConfig
from vlm2vla.training.checkpoint import CheckpointConfig
from vlm2vla.training.metrics import REPORTERS
from vlm2vla.training.model_setup import LoraOptions
from vlm2vla.training.next_token_config import MOVED_FIELDS
from vlm2vla.training.optim import OptimConfig

INITS = ("pretrained", "scratch")
STAGE1_DIR = "stage1"


@dataclass(frozen=True)
class APTTraining:
    """How an APT run gets its stage-1 prior (policy.apt.stage says which layout this run trains)."""

    # with policy.apt.stage=2: a finished stage-1 policy folder (or the train-policy run directory holding it)
    stage1: str = ""
    # with policy.apt.stage=2 and no stage1: train the prior first for this many steps, into <run_dir>/stage1
    stage1_steps: int = 0
    # peak learning rate of that stage-1 run (0 = optim.lr)
    stage1_lr: float = 0.0
    # keep the VLM frozen in both APT stages (the paper's recipe); false leaves it to `freeze` and `lora`
    # (a sequenced run's stage 2 then starts from the VLM stage 1 trained)
    freeze_vlm: bool = True
    # learning rate of the fusion gates' logits as a multiple of optim.lr: Adam moves a parameter by about
    # its learning rate per step, so at lr 3e-4 a logit can travel only ~0.1 in 500 steps (g stays near its
    # start); a larger scale lets stage 2 choose how much of the VLM state to read
    gate_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.stage1_steps < 0 or self.stage1_lr < 0 or self.gate_lr_scale <= 0:
            raise ValueError("apt.stage1_steps and apt.stage1_lr must be >= 0 and apt.gate_lr_scale > 0")
        if self.stage1 and self.stage1_steps:
            raise ValueError(f"set apt.stage1 (a trained stage-1 policy, got {self.stage1!r}) or apt.stage1_steps "
                             f"(train one first, got {self.stage1_steps}), not both")
# "vlm" freezes the whole backbone: only the action head (and LoRA adapters, if any) train.
FREEZE_CHOICES = (*FREEZE_GROUPS, "vlm")


@dataclass(frozen=True)
class TrainPolicyConfig:
    """Settings of one policy training run.

    The optimisation and checkpoint settings are the same nested configs pretrain and midtrain use
    (optim.*, checkpoint.*); the rest is the policy's own.
    """

    moved_fields: ClassVar[dict[str, str]] = MOVED_FIELDS

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
    # batch (frames), accumulation, AdamW, schedule, run length, clipping, precision
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        batch_size=16, betas=(0.9, 0.95), warmup_ratio=0.05, epochs=10.0))
    # steps between metrics lines
    log_interval: int = 10
    # steps between validations (0 = only at the end)
    val_interval: int = 0
    # checkpoint interval and how many are kept
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(interval=200))
    # seed of the head's initialisation (and scratch backbone), data order, split and validation noise
    seed: int = 0
    # largest fraction of episodes whose frames cannot be read (corrupt video or image) that is skipped and
    # counted (manifest metrics.skipped) rather than fatal; 0 = any unreadable episode stops the run
    max_bad_episodes: float = 0.05
    # dataloader worker processes (image processing and collation happen there)
    num_workers: int = 2
    # decode every frame once into RAM as uint8 before training (random-access video decoding is slow)
    cache_frames: bool = True
    # APT: where stage 2 gets its stage-1 prior, and whether the VLM stays frozen
    apt: APTTraining = field(default_factory=APTTraining)
    # also log to these when installed
    report_to: tuple[str, ...] = choice(*REPORTERS, default=())
    # show a progress bar (main process only)
    progress: bool = True

    def __post_init__(self) -> None:
        check_choices(self)
        if self.log_interval < 1:
            raise ValueError(f"log_interval must be >= 1, got {self.log_interval}")
        for name in ("val_interval", "num_workers", "val_episodes", "val_max_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.max_bad_episodes <= 1.0:
            raise ValueError(f"max_bad_episodes must be a fraction in [0, 1], got {self.max_bad_episodes}")
        if self.val_episodes >= 1 and self.val_episodes != int(self.val_episodes):
            raise ValueError(f"val_episodes must be a fraction < 1 or a whole count, got {self.val_episodes}")
        if (self.apt.stage1 or self.apt.stage1_steps) and self.policy.apt.stage != 2:
            raise ValueError(f"apt.stage1 / apt.stage1_steps start APT's stage 2 from a prior, but policy.apt.stage="
                             f"{self.policy.apt.stage}; set policy.apt.stage=2")
        if self.policy.apt.stage and self.apt.freeze_vlm and self.lora.enabled:
            raise ValueError("APT keeps the VLM frozen (apt.freeze_vlm=true), but LoRA adapters would train it: set "
                             "lora.enabled=false, or apt.freeze_vlm=false to adapt the VLM in both stages")
        if not self.model or not self.data:
            raise ValueError("model (a VLM folder or hub id) and data (a LeRobotDataset folder) must be set")
