"""Tables of an APT experiment run (run.py): success per split and variant with its spread over seeds, the
wrong-target rate, success over all splits with paired comparisons against APT (episode by episode, where
the per-episode outcomes are stored), how much each policy reads its instruction, and what each stage cost.

    python results/apt/summarize.py configs/experiments/apt_grounded.yaml [--root RUN_ROOT]

Copies each finished cell's small files from the run root to the config's `results` folder (with the
upstream fingerprint: the VLM's weights and the demonstrations, see check_upstream), then writes
summary.md there from everything stored, so cells stored by earlier sessions count. Safe on a partial
run: cells not run yet show as "-".
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import statistics
from pathlib import Path

import yaml
from scipy.stats import binomtest

from vlm2vla.evaluation.metrics import wilson_interval
from vlm2vla.fileio import atomic_write_json

KEEP = {"train": ("config.yaml", "manifest.json"), "train/stage1": ("config.yaml", "manifest.json"),
        "eval": ("results.json", "per_task.csv", "episodes.csv"), ".": ("language_use.json",)}


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


def _outcomes(path: Path) -> dict[tuple[str, str, str], bool] | None:
    """Per-episode success from an evaluation's episodes.csv, keyed by (task, split, episode)."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return {(r["task"], r["split"], r["episode"]): r["success"] == "True" for r in csv.DictReader(f)}


def overall_lines(head: str, variants: list[str], seeds: list[int], cells: dict) -> list[str]:
    """Success over all splits per seed, pooled [Wilson], mean ± sd; then each variant against `apt` on the
    episodes both were evaluated on (seeds whose episodes.csv is stored): discordant pairs and an exact
    McNemar test (two-sided binomial on the discordant pairs)."""
    lines = [f"### {head}: all splits together", "", "| variant | " + " | ".join(f"seed {s}" for s in seeds)
             + " | pooled [95% Wilson] | mean ± sd over seeds |", "| --- |" + " --- |" * (len(seeds) + 2)]
    for variant in variants:
        stats = {s: cells[head, variant, s]["results"]["overall"] for s in seeds if (head, variant, s) in cells}
        if not stats:
            continue
        k, n = sum(x["successes"] for x in stats.values()), sum(x["n"] for x in stats.values())
        low, high = wilson_interval(k, n)
        per_seed = [f"{stats[s]['successes']}/{stats[s]['n']}" if s in stats else "-" for s in seeds]
        lines.append(f"| {variant} | " + " | ".join(per_seed) + f" | {k}/{n} = {_pct(k / n)} [{_pct(low)}-"
                     f"{_pct(high)}] | {_spread([x['success_rate'] for x in stats.values()])} |")
    if "apt" not in variants:
        return lines + [""]
    lines += ["", f"Paired with apt ({head}): episodes only apt succeeded on vs only the other variant, over the "
              "seeds with stored per-episode outcomes; p = exact McNemar.", "",
              "| variant | seeds | apt only | other only | both | neither | p |", "| --- | --- | --- | --- | --- | "
              "--- | --- |"]
    for variant in variants:
        if variant == "apt":
            continue
        counts, used = [0, 0, 0, 0], []
        for seed in seeds:
            ours, theirs = (cells.get((head, v, seed), {}).get("episodes") for v in ("apt", variant))
            if not ours or not theirs:
                continue
            used.append(seed)
            for key in ours.keys() & theirs.keys():
                a, b = ours[key], theirs[key]
                counts[0 if a and not b else 1 if b and not a else 2 if a else 3] += 1
        if not used:
            continue
        only_apt, only_other = counts[:2]
        p = binomtest(only_apt, only_apt + only_other).pvalue if only_apt + only_other else 1.0
        lines.append(f"| {variant} | {','.join(map(str, used))} | {only_apt} | {only_other} | {counts[2]} | "
                     f"{counts[3]} | {p:.3f} |")
    return lines + [""]


def _samples_per_s(manifest: dict | None) -> str:
    if not manifest:
        return "-"
    metrics = manifest.get("metrics", {})
    steps, wall = metrics.get("steps"), metrics.get("wall_time_s")
    batch = manifest["config"]["optim"]["batch_size"]
    if not steps or not wall:
        return "-"
    return f"{wall / 60:.1f} min, {steps * batch / wall:.0f} samples/s"


def upstream_fingerprint(cfg: dict, root: Path) -> dict[str, str]:
    """sha256 of what every cell reads: the pretrained VLM's weights and the demonstrations' data files.

    A later session regenerates the upstream stages (run directories are not kept); its cells are
    comparable with the stored ones only when these match.
    """
    groups = {"vlm": sorted((root / "pretrain" / "model").glob("*.safetensors")),
              "demonstrations": sorted((root / cfg["data"]).rglob("data/**/*.parquet"))}
    out = {}
    for name, files in groups.items():
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.read_bytes())
        out[name] = f"{digest.hexdigest()} ({len(files)} files)"
    return out


def stored_upstream(results: Path) -> dict[str, dict[str, str]]:
    """Seed -> the upstream fingerprint its stored cells were trained on.

    The first sessions wrote one fingerprint for the whole folder, when only seed 0 had cells: read as seed 0's.
    """
    path = results / "upstream.json"
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    return stored["seeds"] if "seeds" in stored else {"0": stored}


def check_upstream(cfg: dict, root: Path, results: Path, seeds: list[int]) -> tuple[dict[str, str], dict]:
    """(the run root's upstream fingerprint, the stored ones per seed); stops when a seed in `seeds` has stored
    cells trained on another upstream.

    The fingerprint is kept per seed because the tiny VLM is retrained in every session (run directories are
    not kept) and its weights are not bit-identical across machines (same code, data and seed; the float
    kernels differ): the cells of one seed share one VLM, so variants stay paired within a seed, while the
    spread over seeds includes the VLM's retraining noise.
    """
    now = upstream_fingerprint(cfg, root)
    per_seed = stored_upstream(results)
    clash = [s for s in seeds if per_seed.get(str(s), now) != now]
    if clash:
        raise SystemExit(f"the upstream stages in {root} ({now}) differ from those the stored cells of seed(s) "
                         f"{clash} in {results} were trained on ({[per_seed[str(s)] for s in clash]}); mixing them "
                         "would unpair the variants of a seed. Run other seeds (--seeds), move that seed's stored "
                         "cells aside (git mv) to re-run it whole, or restore the original upstream runs.")
    return now, per_seed


def store(cfg: dict, root: Path, results: Path, seeds: list[int]) -> None:
    """Copy the demonstrations' report and the finished cells of `seeds` from the run root into the results
    folder, recording the upstream fingerprint of each seed that gets its first cell."""
    now, per_seed = check_upstream(cfg, root, results, seeds)
    results.mkdir(parents=True, exist_ok=True)
    report = root / cfg["data"] / "collect_report.json"
    if report.is_file():
        shutil.copy2(report, results / "collect_report.json")
    for seed in seeds:
        for cell in cell_names(cfg, [seed]):
            cell_dir = root / cfg["name"] / cell
            if not _complete(cell_dir / "eval"):
                continue
            per_seed.setdefault(str(seed), now)
            for sub, files in KEEP.items():
                for file in files:
                    if (cell_dir / sub / file).is_file():
                        (results / cell / sub).mkdir(parents=True, exist_ok=True)
                        shutil.copy2(cell_dir / sub / file, results / cell / sub / file)
    if per_seed:
        atomic_write_json(results / "upstream.json", {"seeds": dict(sorted(per_seed.items()))})


def cell_names(cfg: dict, seeds: list[int]) -> list[str]:
    return [f"{h}-{v}-s{s}" for h in cfg["heads"] for v in cfg["variants"] for s in seeds]


def main() -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--root", help="the run root to copy finished cells from (default: the config's)")
    parser.add_argument("--seeds", type=int, nargs="*",
                        help="the seeds whose finished cells to store (default: the config's)")
    parser.add_argument("--no-store", action="store_true", help="only rewrite summary.md from the stored cells")
    args = parser.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    root = Path(args.root or cfg["root"])
    out = Path(cfg["results"])
    if not args.no_store:
        seeds_run = cfg["seeds"] if args.seeds is None else args.seeds
        store(cfg, root, out, seeds_run)
    variants, heads, seeds, splits = list(cfg["variants"]), cfg["heads"], cfg["seeds"], cfg["splits"]
    cells: dict[tuple[str, str, int], dict] = {}
    for head in heads:
        for variant in variants:
            for seed in seeds:
                stored = out / f"{head}-{variant}-s{seed}"
                if (stored / "eval" / "results.json").is_file():
                    cells[head, variant, seed] = {
                        "results": _json(stored / "eval" / "results.json"),
                        "language": _json(stored / "language_use.json"),
                        "train": _json(stored / "train" / "manifest.json"),
                        "episodes": _outcomes(stored / "eval" / "episodes.csv"),
                        "stage1": _json(stored / "train" / "stage1" / "manifest.json")}
    started = min((c["train"]["created"][:10] for c in cells.values() if c["train"]), default="not started")
    collect = _json(out / "collect_report.json")
    lines = [f"# {cfg['title']}, run started {started}", "",
             f"Produced by `python results/apt/run.py {args.config}` (the config lists every command). "
             f"Every variant: {cfg['steps']} expert steps in total, VLM frozen, final expert depth 4; APT spends "
             f"{cfg['stage1_fraction']:.0%} of the steps in stage 1. Evaluation episodes are the same for every "
             "cell (eval seed 0), so variants are compared on paired episodes.", "",
             "Cells: success rate as mean ± sd over the seeds done (pooled successes/episodes [95% Wilson "
             "interval]); wrong = a distractor reached its goal first (mean over seeds).", ""]
    if collect:
        lines += [f"Demonstrations: {collect['episodes']} episodes ({collect['frames']} frames), {cfg['data']}.", ""]
    vlms = {seed: fp["vlm"][:12] for seed, fp in stored_upstream(out).items()}
    if vlms:
        lines += ["VLM weights (sha256) per seed: " + ", ".join(f"seed {s}: {h}" for s, h in vlms.items()) + ". The "
                  "tiny VLM is retrained in each session and is not bit-identical across machines, so a seed's "
                  "cells share one VLM and the spread over seeds includes its retraining noise.", ""]
    for head in heads:
        lines += [f"## {head}", "", "| variant | seeds | " + " | ".join(splits) + " |",
                  "| --- | --- |" + " --- |" * len(splits)]
        for variant in variants:
            done = [s for s in seeds if (head, variant, s) in cells]
            row = [_success_cell([cells[head, variant, s]["results"]["per_split"][split] for s in done
                                  if split in cells[head, variant, s]["results"]["per_split"]]) for split in splits]
            lines.append(f"| {variant} | {','.join(map(str, done)) or '-'} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## All splits together", ""]
    for head in heads:
        lines += overall_lines(head, variants, seeds, cells)
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
