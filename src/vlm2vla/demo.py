"""`vlm2vla demo`: the pipeline end to end on the built-in default, sized for a 2-core CPU.

What exists so far runs in order, each stage in its own run directory under `run_dir`:

    collect        scripted-expert demonstrations -> <run_dir>/collect/dataset (LeRobotDataset v3.0)
    eval-expert    the scripted expert in closed loop (the ceiling a learned policy aims for)
    eval-random    uniform random actions (the floor)

and a summary table goes to <run_dir>/summary.md. Later stages (pool, embed, gap, select, midtrain,
train-policy, report) join this sequence as they land. Re-running resumes every stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from vlm2vla.evaluation.evaluate import EvalConfig, evaluate
from vlm2vla.evaluation.policy import PolicyConfig
from vlm2vla.fileio import atomic_write_text
from vlm2vla.robot_data.collect import CollectConfig, collect
from vlm2vla.runs import Run
from vlm2vla.sim import SimConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """The built-in default run: small, fast, and complete."""

    # parent folder of every stage's run directory
    run_dir: str = "runs/demo"
    # tasks used by every stage
    tasks: tuple[str, ...] = ("reach-v3", "button-press-v3", "drawer-close-v3")
    # expert attempts per task for the demonstration dataset
    demos_per_task: int = 5
    # evaluation episodes per task and instruction split
    eval_episodes_per_task: int = 5
    # instruction splits evaluated
    eval_splits: tuple[str, ...] = ("canonical", "unseen")
    # simulator settings shared by every stage
    sim: SimConfig = field(default_factory=SimConfig)
    # environments run side by side (worker processes)
    num_envs: int = 2
    # base seed of every stage
    seed: int = 0


def demo(cfg: DemoConfig, run: Run) -> dict:
    """Run collect, then evaluate the expert and a random policy; write a summary table."""
    collect_cfg = CollectConfig(run_dir=f"{cfg.run_dir}/collect", tasks=cfg.tasks, episodes_per_task=cfg.demos_per_task,
                                sim=cfg.sim, num_envs=cfg.num_envs, seed=10_000_000 + cfg.seed)
    report = collect(collect_cfg, Run.open(collect_cfg.run_dir, "collect", collect_cfg))
    base_eval = EvalConfig(tasks=cfg.tasks, episodes_per_task=cfg.eval_episodes_per_task, splits=cfg.eval_splits,
                           sim=cfg.sim, num_envs=cfg.num_envs, seed=cfg.seed)
    results = {}
    for name in ("expert", "random"):
        eval_cfg = replace(base_eval, run_dir=f"{cfg.run_dir}/eval-{name}", policy=PolicyConfig(type=name))
        results[name] = evaluate(eval_cfg, Run.open(eval_cfg.run_dir, "eval", eval_cfg))
    summary = _summary(report, results)
    atomic_write_text(f"{cfg.run_dir}/summary.md", summary)
    log.info("\n%s", summary)
    run.finish(metrics={f"success_rate/{n}": r["overall"]["success_rate"] for n, r in results.items()},
               outputs={"summary": f"{cfg.run_dir}/summary.md", "dataset": f"{collect_cfg.run_dir}/dataset"})
    return results


def _summary(report: dict, results: dict[str, dict]) -> str:
    lines = [
        "# vlm2vla demo",
        "",
        f"Demonstrations: {report['episodes']} episodes, {report['frames']} frames "
        f"(expert success while collecting: {report['expert_success_rate']:.0%}).",
        "",
        "| task / split | " + " | ".join(results) + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    keys = next(iter(results.values()))["per_task_split"].keys()
    for key in [*keys]:
        cells = [_cell(r["per_task_split"][key]) for r in results.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("| **overall** | " + " | ".join(_cell(r["overall"]) for r in results.values()) + " |")
    lines += ["", "Success rate with its 95% Wilson interval; n episodes in brackets."]
    return "\n".join(lines) + "\n"


def _cell(s: dict) -> str:
    return f"{s['success_rate']:.0%} [{s['ci_low']:.0%}-{s['ci_high']:.0%}] (n={s['n']})"
