"""`vlm2vla demo`: the pipeline end to end on the built-in default, sized for a 2-core CPU.

The demo is a sequence of ordinary stages, each configured by its own nested config and run in its
own directory under `run_dir` (so `vlm2vla demo pretrain.max_steps=100` works, and each stage can be
re-run on its own with `--config runs/demo/<stage>/config.yaml`):

    collect        scripted-expert demonstrations      -> collect/dataset (LeRobotDataset v3.0)
    pool           the embedded VLM pool, whose robot sources use those demonstrations -> pool/pool.parquet
    pretrain       the tiny VLM built and pretrained on the pool -> pretrain/model
    embed          frozen features of the pool and of robot frames + instructions -> embed/features
    gap            per-source distance to the robot data (MMD, Frechet, AUC) and a 2-D map -> gap/
    select         proximity-estimator scores and the top-K mixture -> select/mixture.jsonl
    midtrain       the pretrained VLM mid-trained on that mixture -> midtrain/model
    train-policy   a VLM4VLA policy fine-tuned from the mid-trained VLM on the demonstrations -> train-policy/policy
    eval-expert    the scripted expert in closed loop (the ceiling a learned policy aims for)
    eval-random    uniform random actions (the floor)
    eval-vla       the trained policy in closed loop

A summary table goes to <run_dir>/summary.md. Later stages (report) join this sequence as they land.
Re-running resumes every stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vlm2vla.engine.embed import EmbedConfig
from vlm2vla.engine.gap import GapConfig
from vlm2vla.engine.select import SelectConfig
from vlm2vla.evaluation.evaluate import EvalConfig
from vlm2vla.fileio import atomic_write_text, read_json
from vlm2vla.robot_data.collect import CollectConfig
from vlm2vla.runs import Run
from vlm2vla.stages import stage_function
from vlm2vla.training.checkpoint import CheckpointConfig
from vlm2vla.training.next_token_config import MidtrainConfig, PretrainConfig
from vlm2vla.training.train_policy_config import TrainPolicyConfig
from vlm2vla.vlm_data.embedded.config import EmbeddedPoolConfig
from vlm2vla.vlm_data.pool import PoolConfig

log = logging.getLogger(__name__)

DEMO_TASKS = ("reach-v3", "button-press-v3", "drawer-close-v3")


@dataclass(frozen=True)
class DemoConfig:
    """The built-in default run: each stage's config, with run directories placed under run_dir."""

    # parent folder of every stage's run directory (the stages' own run_dir fields are replaced)
    run_dir: str = "runs/demo"
    # demonstrations
    collect: CollectConfig = field(default_factory=lambda: CollectConfig(tasks=DEMO_TASKS, episodes_per_task=5))
    # the VLM pool (its robot sources read the collected demonstrations)
    pool: PoolConfig = field(default_factory=lambda: PoolConfig(
        embedded=EmbeddedPoolConfig(samples_per_source=400)))
    # pretraining of the tiny VLM on the pool
    pretrain: PretrainConfig = field(
        default_factory=lambda: _with_optim(PretrainConfig(), max_steps=300, batch_size=16))
    # frozen-VLM features of the pool and the robot frames (the pretrained tiny VLM)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    # distribution-gap analysis of those features
    gap: GapConfig = field(default_factory=GapConfig)
    # proximity scores and the curated mixture
    select: SelectConfig = field(default_factory=SelectConfig)
    # mid-training of the pretrained VLM on the mixture
    midtrain: MidtrainConfig = field(
        default_factory=lambda: _with_optim(MidtrainConfig(), max_steps=100, batch_size=16))
    # VLA policy training on the demonstrations, starting from the mid-trained VLM
    train_policy: TrainPolicyConfig = field(default_factory=lambda: _with_optim(
        TrainPolicyConfig(val_interval=0, checkpoint=CheckpointConfig(interval=100)), max_steps=300, batch_size=32,
        lr=3e-4))
    # closed-loop evaluation; run once per policy
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(tasks=DEMO_TASKS, episodes_per_task=5,
                                                                splits=("canonical", "unseen")))
    # policies evaluated with the eval settings: reference policies (expert, random) and vla (the trained one)
    eval_policies: tuple[str, ...] = ("expert", "random", "vla")


def _with_optim(cfg: Any, **changes: Any) -> Any:
    """`cfg` with some of its optimisation settings changed (the others keep the stage's defaults)."""
    return replace(cfg, optim=replace(cfg.optim, **changes))


def stage_configs(cfg: DemoConfig) -> dict[str, Any]:
    """Each stage's config with its run directory under cfg.run_dir and its inputs wired to earlier outputs."""
    root = cfg.run_dir
    collect_cfg = replace(cfg.collect, run_dir=f"{root}/collect")
    pool_cfg = replace(cfg.pool, run_dir=f"{root}/pool",
                       embedded=replace(cfg.pool.embedded, robot_dataset=f"{collect_cfg.run_dir}/dataset"))
    pretrain_cfg = replace(cfg.pretrain, run_dir=f"{root}/pretrain", data=pool_cfg.run_dir)
    embed_cfg = replace(cfg.embed, run_dir=f"{root}/embed", model=f"{pretrain_cfg.run_dir}/model",
                        pool=pool_cfg.run_dir, robot_dataset=f"{collect_cfg.run_dir}/dataset")
    gap_cfg = replace(cfg.gap, run_dir=f"{root}/gap", features=embed_cfg.run_dir)
    select_cfg = replace(cfg.select, run_dir=f"{root}/select", features=embed_cfg.run_dir, pool=pool_cfg.run_dir)
    # The mixture has no held-out split: mid-training is scored on the pool's, like pretraining.
    midtrain_cfg = replace(cfg.midtrain, run_dir=f"{root}/midtrain", model=f"{pretrain_cfg.run_dir}/model",
                           data=f"{select_cfg.run_dir}/mixture.jsonl",
                           eval=replace(cfg.midtrain.eval, data=cfg.midtrain.eval.data or pool_cfg.run_dir))
    policy_cfg = replace(cfg.train_policy, run_dir=f"{root}/train-policy", model=f"{midtrain_cfg.run_dir}/model",
                         data=f"{collect_cfg.run_dir}/dataset")
    stages: dict[str, Any] = {"collect": collect_cfg, "pool": pool_cfg, "pretrain": pretrain_cfg, "embed": embed_cfg,
                              "gap": gap_cfg, "select": select_cfg, "midtrain": midtrain_cfg,
                              "train-policy": policy_cfg}
    for name in cfg.eval_policies:
        eval_cfg = replace(cfg.eval, run_dir=f"{root}/eval-{name}", policy=replace(cfg.eval.policy, type=name))
        if name == "vla":  # the trained policy (re-planning every n_action_steps of its config)
            eval_cfg = replace(eval_cfg, policy=replace(eval_cfg.policy, path=f"{policy_cfg.run_dir}/policy"))
        stages[f"eval-{name}"] = eval_cfg
    return stages


def demo(cfg: DemoConfig, run: Run) -> dict:
    """Run every stage in order (each resumes if already done); write a summary table."""
    stages = stage_configs(cfg)
    results: dict[str, Any] = {}
    for name, stage_cfg in stages.items():
        stage = "eval" if name.startswith("eval-") else name
        log.info("=== demo stage: %s -> %s", name, stage_cfg.run_dir)
        results[name] = stage_function(stage)(stage_cfg, Run.open(stage_cfg.run_dir, stage, stage_cfg))
    summary = _summary(results, read_json(f"{stages['pretrain'].run_dir}/eval.json", {}),
                       read_json(f"{stages['midtrain'].run_dir}/eval.json", {}),
                       _engine_lines(stages["gap"].run_dir, stages["select"].run_dir))
    atomic_write_text(f"{cfg.run_dir}/summary.md", summary)
    log.info("\n%s", summary)
    evals = {k: v for k, v in results.items() if k.startswith("eval-")}
    run.finish(metrics={f"success_rate/{n}": r["overall"]["success_rate"] for n, r in evals.items()},
               outputs={"summary": f"{cfg.run_dir}/summary.md", **{n: c.run_dir for n, c in stages.items()}})
    return results


def _summary(results: dict[str, Any], pretrain_eval: dict[str, Any], midtrain_eval: dict[str, Any],
             engine_lines: list[str]) -> str:
    report = results["collect"]
    lines = ["# vlm2vla demo", "",
             f"Demonstrations: {report['episodes']} episodes, {report['frames']} frames "
             f"(expert success while collecting: {report['expert_success_rate']:.0%}).", ""]
    lines += _accuracy_lines(pretrain_eval, midtrain_eval)
    lines += engine_lines
    lines += _policy_lines(results.get("train-policy"))
    evals = {k.removeprefix("eval-"): v for k, v in results.items() if k.startswith("eval-")}
    lines += ["## Closed-loop success", "",
              "| task / split | " + " | ".join(evals) + " |",
              "| --- | " + " | ".join("---" for _ in evals) + " |"]
    for key in next(iter(evals.values()))["per_task_split"]:
        lines.append(f"| {key} | " + " | ".join(_cell(r["per_task_split"][key]) for r in evals.values()) + " |")
    lines.append("| **overall** | " + " | ".join(_cell(r["overall"]) for r in evals.values()) + " |")
    lines += ["", "Success rate with its 95% Wilson interval; n episodes in brackets."]
    return "\n".join(lines) + "\n"


def _accuracy_lines(pretrain: dict[str, Any], midtrain: dict[str, Any]) -> list[str]:
    """Held-out answer accuracy per source: untrained, pretrained, mid-trained (the trainers' eval.json)."""
    def per_source(evals: dict[str, Any], when: str) -> dict[str, Any]:
        return evals.get(when, {}).get("per_source", {})

    before, after, mid = per_source(pretrain, "before"), per_source(pretrain, "after"), per_source(midtrain, "after")
    if not after:
        return []
    lines = ["## Tiny VLM: held-out answer accuracy per source", "",
             "| source | n | untrained | pretrained | mid-trained on the selection | majority answer |",
             "| --- | --- | --- | --- | --- | --- |"]
    nan = float("nan")
    for source, row in after.items():
        lines.append(f"| {source} | {row['n']} | {before.get(source, {}).get('accuracy', nan):.0%} | "
                     f"{row['accuracy']:.0%} | {mid.get(source, {}).get('accuracy', nan):.0%} | "
                     f"{row['majority_accuracy']:.0%} |")
    return [*lines, ""]


def _policy_lines(metrics: dict[str, Any] | None) -> list[str]:
    """What the VLA policy training did: steps, frames, parameters, held-out action error."""
    if not metrics or "steps" not in metrics:
        return []
    params, val = metrics.get("parameters", {}), metrics.get("val", {})
    line = (f"{metrics['steps']} steps ({metrics.get('samples_seen', 0)} frames seen) in "
            f"{metrics.get('wall_time_s', float('nan')):.0f} s; {params.get('new', 0):,} new parameters on a "
            f"{params.get('total', 0):,}-parameter policy")
    if val:
        line += f"; held-out action error L1 {val['l1']:.3f}, MSE {val['mse']:.3f} (dataset units)"
    return ["## VLA policy", "", line + ".", ""]


def _engine_lines(gap_dir: str, select_dir: str) -> list[str]:
    """Per-source gap to the robot data, proximity scores and the selected composition."""
    gap_rows = {r["set"]: r for r in read_json(f"{gap_dir}/gap.json", {}).get("sets", [])}
    report = read_json(f"{select_dir}/report.json", {})
    scores_path = Path(select_dir) / "scores.parquet"
    if not gap_rows or not report or not scores_path.is_file():
        return []
    import pyarrow.parquet as pq

    table = pq.read_table(scores_path, columns=["source", "score"]).group_by("source").aggregate([("score", "mean")])
    mean_score = dict(zip(table["source"].to_pylist(), table["score_mean"].to_pylist(), strict=True))
    lines = ["## EmbodiedMidtrain data engine: distance to the robot data and selection", "",
             f"Strategy {report['strategy']}: {sum(c['selected'] for c in report['composition'].values())} of "
             f"{report['pool_size']} pool samples selected. Lower MMD^2 / Frechet and an AUC nearer 0.5 mean "
             "closer to the robot data.", "",
             "| source | MMD^2 | Frechet | AUC | mean proximity score | pool share | selected share |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    order = sorted(report["composition"], key=lambda src: -mean_score.get(src, 0.0))
    for src in order:
        g, c = gap_rows.get(src, {}), report["composition"][src]
        lines.append(f"| {src} | {g.get('mmd2', float('nan')):.3f} | {g.get('frechet', float('nan')):.1f} | "
                     f"{g.get('auc', float('nan')):.3f} | {mean_score.get(src, float('nan')):.3f} | "
                     f"{c['pool_share']:.0%} | {c['selected_share']:.0%} |")
    return [*lines, ""]


def _cell(s: dict) -> str:
    return f"{s['success_rate']:.0%} [{s['ci_low']:.0%}-{s['ci_high']:.0%}] (n={s['n']})"
