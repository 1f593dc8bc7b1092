"""Copy the stored files of an MT10-heads run (run.sh) into results/mt10-heads/<date>/ and write its
summary.md: the tiny VLM's held-out exact match per source, and success per head on MT10.

    python results/mt10-heads/summarize.py [RUN_ROOT]

Safe to call on a partial run: missing stages show as "not run yet".
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADS = ("vlm4vla", "pi0", "gr00t")
# The small files that back the tables; checkpoints, datasets and features stay in the run folder.
KEEP = {
    "pretrain": ("eval.json", "config.yaml"),
    "collect": ("collect_report.json", "config.yaml"),
    **{f"train-{h}": ("val.json", "config.yaml") for h in HEADS},
    **{f"eval-{p}": ("results.json", "per_task.csv", "config.yaml") for p in ("random", *HEADS)},
}


def _complete(stage_dir: Path) -> bool:
    manifest = stage_dir / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"


def _pct(stats: dict) -> str:
    return (f"{stats['successes']}/{stats['n']} = {100 * stats['success_rate']:.0f}% "
            f"[{100 * stats['ci_low']:.0f}-{100 * stats['ci_high']:.0f}]")


def _vlm_table(eval_json: dict) -> list[str]:
    before, after = eval_json["before"]["per_source"], eval_json["after"]["per_source"]
    rows = ["| source | n | untrained | pretrained | majority answer |", "| --- | --- | --- | --- | --- |"]
    for source in sorted(after):
        a = after[source]
        rows.append(f"| {source} | {a['n']} | {before[source]['accuracy']:.3f} | {a['accuracy']:.3f} "
                    f"| {a['majority_accuracy']:.3f} |")
    return rows


def _policy_table(out: Path) -> list[str]:
    rows = ["| policy | MT10 easy tasks (7) | all MT10 | held-out L1 |", "| --- | --- | --- | --- |"]
    for policy in (*HEADS, "random"):
        results = out / f"eval-{policy}" / "results.json"
        if not results.is_file():
            rows.append(f"| {policy} | not run yet | | |")
            continue
        r = json.loads(results.read_text())
        val = out / f"train-{policy}" / "val.json"
        l1 = f"{json.loads(val.read_text())['final']['l1']:.3f}" if val.is_file() else ""
        rows.append(f"| {policy} | {_pct(r['per_group']['easy'])} | {_pct(r['overall'])} | {l1} |")
    return rows


def main(root: Path) -> Path:
    created = json.loads((root / "pool" / "manifest.json").read_text())["created"][:10]
    out = HERE / created
    for stage, names in KEEP.items():
        if _complete(root / stage):
            for name in names:
                if (root / stage / name).is_file():
                    (out / stage).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(root / stage / name, out / stage / name)
    lines = [f"# MT10 heads and the tiny VLM, run started {created}", "",
             "Produced by `bash results/mt10-heads/run.sh` (see its header for every command).", "",
             "## Tiny VLM (configs/pretrain_tiny.yaml): held-out exact match per source", ""]
    eval_json = out / "pretrain" / "eval.json"
    lines += _vlm_table(json.loads(eval_json.read_text())) if eval_json.is_file() else ["not run yet"]
    lines += ["", "## Policies (configs/train_policy_tiny.yaml) on MT10: 10 episodes per task, canonical "
              "instructions, 300-step cap; successes / episodes, 95% Wilson interval; one seed", ""]
    lines += _policy_table(out)
    (out / "summary.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/mt10-heads")) / "summary.md")
