"""The pipeline's stages: name -> entry function `fn(cfg, run)` and config dataclass, imported lazily.

Each stage is a (config dataclass, function) pair in its own module, imported only when that stage
runs or shows its help, so `vlm2vla --help` stays fast and a stage's heavy dependencies load only
when needed. A new stage is its module plus one `STAGES.register` line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlm2vla.registry import Registry, load_target

STAGES = Registry("stage")

def _stage(name: str, module: str, entry: str, config: str, summary: str) -> None:
    # `config` is "Class" in the stage's module, or "module:Class" when the settings have their own module
    STAGES.register(name, f"{module}:{entry}", config=config if ":" in config else f"{module}:{config}",
                    summary=summary)


_stage("collect", "vlm2vla.robot_data.collect", "collect", "CollectConfig",
       "Record scripted-expert demonstrations in simulation as a LeRobotDataset v3.0.")
_stage("eval", "vlm2vla.evaluation.evaluate", "evaluate", "EvalConfig",
       "Closed-loop evaluation of a policy in simulation: success per task, group and instruction split.")
_stage("pool", "vlm2vla.vlm_data.pool", "build_pool", "PoolConfig",
       "Merge VLM data sources (LLaVA format, or the generated embedded pool) into one pool manifest.")
_stage("embed", "vlm2vla.engine.embed", "embed", "EmbedConfig",
       "Frozen-VLM features of every pool sample and of robot frames + instructions (EmbodiedMidtrain).")
_stage("gap", "vlm2vla.engine.gap", "gap", "GapConfig",
       "Distribution gap between each pool source and the robot data: MMD, Frechet, classifier AUC, 2-D map.")
_stage("select", "vlm2vla.engine.select", "select", "SelectConfig",
       "Score the pool by proximity to robot data (or a baseline strategy) and write the top-K mixture.")
_stage("pretrain", "vlm2vla.training.next_token", "pretrain", "vlm2vla.training.next_token_config:PretrainConfig",
       "Next-token training of a VLM on a pool (answer tokens only); builds the tiny default when asked.")
_stage("midtrain", "vlm2vla.training.next_token", "midtrain", "vlm2vla.training.next_token_config:MidtrainConfig",
       "Mid-train a VLM on a curated mixture before VLA fine-tuning (same trainer as pretrain).")
_stage("train-policy", "vlm2vla.training.train_policy", "train_policy",
       "vlm2vla.training.train_policy_config:TrainPolicyConfig",
       "Fine-tune a VLM into a VLA policy (action head / expert) on robot episodes; resumable.")
_stage("serve", "vlm2vla.serving.server", "serve_policy", "ServeConfig",
       "Serve a trained policy over openpi's websocket protocol (msgpack + NumPy), batching concurrent clients.")
_stage("demo", "vlm2vla.demo", "demo", "DemoConfig",
       "Run the whole pipeline on the built-in default, small enough for a CPU.")


def stage_function(name: str) -> Callable[[Any, Any], Any]:
    """The entry function `fn(cfg, run)` of the stage registered as `name`."""
    return STAGES.load(name)


def stage_config(name: str) -> type:
    """The config dataclass of the stage registered as `name`."""
    return load_target(STAGES.entry(name).info["config"])


def stage_summary(name: str) -> str:
    """The one-line description of a stage (`vlm2vla --help`)."""
    return STAGES.entry(name).info["summary"]
