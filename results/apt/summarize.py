"""Tables of an APT experiment run (run.py): success per split and variant with its spread over seeds, the
wrong-target rate, how much each policy reads its instruction, and what each stage cost.

    python results/apt/summarize.py configs/experiments/apt_grounded.yaml [--root RUN_ROOT]

Copies each finished cell's small files to results/apt/<config name>/<date the run started>/<cell>/ and
writes summary.md there. Safe on a partial run: cells not run yet show as "-".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from datetime import date
from pathlib import Path

import yaml

from vlm2vla.evaluation.metrics import wilson_interval

HERE = Path(__file__).resolve().parent
KEEP = {"train": ("config.yaml", "manifest.json"), "train/stage1": ("config.yaml", "manifest.json"),
        "eval": ("results.json", "per_task.csv"), ".": ("language_use.json",)}


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _complete(run_dir: Path) -> bool:
    manifest = _json(run_dir / "manifest.json")
    return bool(manifest) and manifest.get("status") == "complete"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _spread(rates: list[float]) -> str:
    """mean ± sd over seeds (sd only with 2+ seeds)."""
    if len(rates) == 1:
        return _pct(rates[0])
    return f"{100 * statistics.mean(rates):.0f} ± {100 * statistics.stdev(rates):.0f}%"


def _success_cell(stats: list[dict]) -> str:
    """Over seeds: mean ± sd of the success rate, pooled successes / episodes [Wilson], mean wrong-target rate."""
    if not stats:
        return "-"
    k, n = sum(s["successes"] for s in stats), sum(s["n"] for s in stats)
    low, high = wilson_interval(k, n)
    wrong = statistics.mean(s["wrong_target_rate"] for s in stats)
    return (f"{_spread([s['success_rate'] for s in stats])} ({k}/{n} [{_pct(low)}-{_pct(high)}]); "
            f"wrong {_pct(wrong)}")


def _samples_per_s(manifest: dict | None) -> str:
    if not manifest:
        return "-"
    metrics = manifest.get("metrics", {})
    steps, wall = metrics.get("steps"), metrics.get("wall_time_s")
    batch = manifest["config"]["optim"]["batch_size"]
    if not steps or not wall:
        return "-"
    return f"{wall / 60:.1f} min, {steps * batch / wall:.0f} samples/s"


def main() -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--root")
    args = parser.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    root = Path(args.root or cfg["root"])
    pool = _json(root / "pool" / "manifest.json")
    started = pool["created"][:10] if pool else date.today().isoformat()
    out = HERE / cfg["name"] / started
    out.mkdir(parents=True, exist_ok=True)
    variants, heads, seeds, splits = list(cfg["variants"]), cfg["heads"], cfg["seeds"], cfg["splits"]
    cells: dict[tuple[str, str, int], dict] = {}
    for head in heads:
        for variant in variants:
            for seed in seeds:
                name = f"{head}-{variant}-s{seed}"
                cell_dir = root / cfg["name"] / name
                if not _complete(cell_dir / "eval"):
                    continue
                for sub, files in KEEP.items():
                    for file in files:
                        src = cell_dir / sub / file
                        if src.is_file():
                            (out / name / sub).mkdir(parents=True, exist_ok=True)
                            shutil.copy2(src, out / name / sub / file)
                cells[head, variant, seed] = {
                    "results": _json(cell_dir / "eval" / "results.json"),
                    "language": _json(cell_dir / "language_use.json"),
                    "train": _json(cell_dir / "train" / "manifest.json"),
                    "stage1": _json(cell_dir / "train" / "stage1" / "manifest.json")}
    collect = _json(root / cfg["data"] / "collect_report.json")
    lines = [f"# {cfg['title']}, run started {started}", "",
             f"Produced by `python results/apt/run.py {args.config}` (the config lists every command). "
             f"Every variant: {cfg['steps']} expert steps in total, VLM frozen, final expert depth 4; APT spends "
             f"{cfg['stage1_fraction']:.0%} of the steps in stage 1. Evaluation episodes are the same for every "
             "cell (eval seed 0), so variants are compared on paired episodes.", "",
             "Cells: success rate as mean ± sd over the seeds done (pooled successes/episodes [95% Wilson "
             "interval]); wrong = a distractor reached its goal first (mean over seeds).", ""]
    if collect:
        lines += [f"Demonstrations: {collect['episodes']} episodes ({collect['frames']} frames), {cfg['data']}.", ""]
    for head in heads:
        lines += [f"## {head}", "", "| variant | seeds | " + " | ".join(splits) + " |",
                  "| --- | --- |" + " --- |" * len(splits)]
        for variant in variants:
            done = [s for s in seeds if (head, variant, s) in cells]
            row = [_success_cell([cells[head, variant, s]["results"]["per_split"][split] for s in done
                                  if split in cells[head, variant, s]["results"]["per_split"]]) for split in splits]
            lines.append(f"| {variant} | {','.join(map(str, done)) or '-'} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Does the policy read the instruction?", "",
              "swap = mean |action difference| when the canonical instruction names another candidate (same "
              "noise), over the noise spread (two noise draws, true instruction); 0 = language-blind. "
              "Gates: mean g = sigmoid(w) per inserted layer after training (init 0.5; 1 = the layer's own "
              "stream only).", "", "| cell | swap / noise | swap L1 | gates |", "| --- | --- | --- | --- |"]
    for (head, variant, seed), cell in sorted(cells.items()):
        lang = cell["language"]
        if not lang:
            continue
        gates = lang.get("gates")
        gate_text = ", ".join(f"{g:.3f}" for g in gates["mean_per_inserted_layer"]) if gates else "-"
        ratio = lang["swap_over_noise"]
        lines.append(f"| {head}-{variant}-s{seed} | {ratio:.2f} | {lang['swap_l1']:.4f} | {gate_text} |"
                     if ratio is not None else f"| {head}-{variant}-s{seed} | - | {lang['swap_l1']:.4f} | "
                     f"{gate_text} |")
    lines += ["", "## Cost per stage (training wall time, samples/s)", "",
              "| cell | stage 1 | stage 2 / single stage | held-out L1 |", "| --- | --- | --- | --- |"]
    for (head, variant, seed), cell in sorted(cells.items()):
        val = (cell["train"] or {}).get("metrics", {}).get("val", {}).get("l1")
        lines.append(f"| {head}-{variant}-s{seed} | {_samples_per_s(cell['stage1'])} | "
                     f"{_samples_per_s(cell['train'])} | {val:.4f} |" if val is not None else
                     f"| {head}-{variant}-s{seed} | {_samples_per_s(cell['stage1'])} | "
                     f"{_samples_per_s(cell['train'])} | - |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(out / "summary.md")
    return out


if __name__ == "__main__":
    main()
