"""Copy the stored files of a grounded-floor run (run.sh) into results/grounded-floor/<date>/ and write
summary.md: success and wrong-target rate per policy, per split and (on the seen split) per family.

    python results/grounded-floor/summarize.py [RUN_ROOT]

Safe to call on a partial run: missing stages show as "not run yet".
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICIES = ("expert", "expert-random-target", "random", "pi0-language", "pi0-masked")
SPLITS = ("seen", "unseen_paraphrase", "unseen_composition", "position")
FAMILIES = ("grounded-reach", "grounded-push", "grounded-lift", "grounded-reach-spatial")
KEEP = {
    "pretrain": ("eval.json", "config.yaml"),
    "collect": ("collect_report.json", "config.yaml"),
    **{f"train-{p}": ("val.json", "config.yaml") for p in ("pi0-language", "pi0-masked")},
    **{f"eval-{p}": ("results.json", "per_task.csv", "config.yaml") for p in POLICIES},
}


def _complete(stage_dir: Path) -> bool:
    manifest = stage_dir / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"


def _cell(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return (f"{stats['successes']}/{stats['n']} = {100 * stats['success_rate']:.0f}% "
            f"[{100 * stats['ci_low']:.0f}-{100 * stats['ci_high']:.0f}]; "
            f"wrong {100 * stats['wrong_target_rate']:.0f}%")


def _table(out: Path, columns: tuple[str, ...], lookup) -> list[str]:
    rows = ["| policy | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for policy in POLICIES:
        path = out / f"eval-{policy}" / "results.json"
        if not path.is_file():
            rows.append(f"| {policy} | not run yet |" + " |" * (len(columns) - 1))
            continue
        results = json.loads(path.read_text())
        rows.append(f"| {policy} | " + " | ".join(_cell(lookup(results, c)) for c in columns) + " |")
    return rows


def main(root: Path) -> Path:
    """Copy what `root` holds so far and write summary.md; returns the output folder."""
    started = json.loads((root / "pool" / "manifest.json").read_text())["created"][:10] \
        if (root / "pool" / "manifest.json").is_file() else date.today().isoformat()
    out = HERE / started
    for stage, files in KEEP.items():
        if _complete(root / stage):
            (out / stage).mkdir(parents=True, exist_ok=True)
            for name in files:
                if (root / stage / name).is_file():
                    shutil.copy2(root / stage / name, out / stage / name)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Grounded suite: the language-blindness floor, run started {started}", "",
             "Produced by `bash results/grounded-floor/run.sh` (its header lists every command). Cells: "
             "successes / episodes = rate [95% Wilson interval]; wrong = a distractor reached its goal. One seed.", ""]
    report = out / "collect" / "collect_report.json"
    if report.is_file():
        r = json.loads(report.read_text())
        lines += [f"Demonstrations: {r['episodes']} episodes ({r['frames']} frames) kept of {r['attempts']} expert "
                  f"attempts ({100 * r['expert_success_rate']:.0f}% success), seen split only.", ""]
    for stage in ("train-pi0-language", "train-pi0-masked"):
        val = out / stage / "val.json"
        if val.is_file():
            lines.append(f"{stage}: held-out L1 {json.loads(val.read_text())['final']['l1']:.4f}")
    lines += ["", "## Per split (all families)", ""]
    lines += _table(out, SPLITS, lambda r, c: r["per_split"].get(c))
    lines += ["", "## Per family, seen split", ""]
    lines += _table(out, FAMILIES, lambda r, c: r["per_task_split"].get(f"{c}/seen"))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/grounded-floor")))
