"""Run the APT experiment a config in configs/experiments/ describes, cell by cell, resumably.

    python results/apt/run.py configs/experiments/apt_grounded.yaml [--root RUN_ROOT]
        [--seeds 0 1] [--heads pi0] [--variants apt floor] [--dry-run]

Every stage runs in its own directory under the root: the upstream stages in <root>/<upstream key> (shared
by the experiments that use the same root and command), the cells in <root>/<name>/<head>-<variant>-s<seed>/
{train,eval}. A stage whose manifest says "complete" is skipped and an interrupted one resumes, so the script
can be stopped and re-run at any point. Finished cells are copied to the config's `results` folder
(committed), and a cell stored there is not run again. A later session, whose run root is gone,
regenerates the upstream stages; the fingerprint of the VLM and the demonstrations is kept per seed, and a
seed whose stored cells were trained on another upstream is refused (see summarize.check_upstream), so
run a seed's cells within one session. Cells run seed by seed. After each
cell, language_use.py measures how much the policy's actions move when the instruction names another
candidate, and summarize.py rewrites the tables. The command prefix is $VLM2VLA (default `vlm2vla`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def complete(run_dir: Path) -> bool:
    manifest = run_dir / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"


def stage(command: str, run_dir: Path, dry_run: bool) -> None:
    """Run `vlm2vla <command> run_dir=<run_dir>` unless that run is complete."""
    if complete(run_dir):
        print(f"== {run_dir}: complete, skipped", flush=True)
        return
    args = [*shlex.split(os.environ.get("VLM2VLA", "vlm2vla")), *shlex.split(command), f"run_dir={run_dir}"]
    print(f"== {run_dir}: {shlex.join(args)}", flush=True)
    if not dry_run:
        subprocess.run(args, check=True)


def cells(cfg: dict, seeds: list[int], heads: list[str], variants: list[str]) -> list[dict]:
    """The experiment's cells, seed-major, each with its formatted train command."""
    steps = int(cfg["steps"])
    stage1_steps = round(steps * float(cfg["stage1_fraction"]))
    values = {"steps": steps, "stage1_steps": stage1_steps, "stage2_steps": steps - stage1_steps}
    out = []
    for seed in seeds:
        for head in heads:
            for variant in variants:
                fields = {**values, "head": head, "seed": seed, "root": cfg["root"]}
                command = f"{cfg['train'].format(**fields)} {cfg['variants'][variant].format(**fields)}"
                out.append({"name": f"{head}-{variant}-s{seed}", "head": head, "variant": variant, "seed": seed,
                            "train": command})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--root", help="run root (default: the config's root)")
    parser.add_argument("--seeds", type=int, nargs="*")
    parser.add_argument("--heads", nargs="*")
    parser.add_argument("--variants", nargs="*")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    if args.root:
        cfg["root"] = args.root
    root = Path(cfg["root"])
    unknown = set(args.variants or ()) - set(cfg["variants"])
    if unknown:
        sys.exit(f"unknown variants {sorted(unknown)}; {args.config} has {sorted(cfg['variants'])}")
    for name, command in cfg["upstream"].items():
        stage(command.format(root=root), root / name, args.dry_run)
    seeds = cfg["seeds"] if args.seeds is None else args.seeds
    summarize = [sys.executable, str(HERE / "summarize.py"), str(args.config), "--root", str(root),
                 "--seeds", *map(str, seeds)]
    if not args.dry_run:
        subprocess.run(summarize, check=True)  # stops when a chosen seed's cells had another upstream
    results = Path(cfg["results"])
    chosen = cells(cfg, seeds, args.heads or cfg["heads"], args.variants or list(cfg["variants"]))
    for cell in chosen:
        cell_dir = root / cfg["name"] / cell["name"]
        if (results / cell["name"] / "eval" / "results.json").is_file():
            print(f"== {cell['name']}: stored in {results}, skipped", flush=True)
            continue
        stage(cell["train"], cell_dir / "train", args.dry_run)
        splits = "[" + ",".join(cfg["splits"]) + "]"
        stage(cfg["eval"].format(run=cell_dir / "train", splits=splits), cell_dir / "eval", args.dry_run)
        probe = cell_dir / "language_use.json"
        if cfg.get("language_probe_frames") and not probe.is_file() and not args.dry_run:
            subprocess.run([sys.executable, str(HERE / "language_use.py"), str(cell_dir / "train"),
                            str(root / cfg["data"]), "--frames", str(cfg["language_probe_frames"]),
                            "--out", str(probe)], check=True)
        if not args.dry_run:
            subprocess.run(summarize, check=True)


if __name__ == "__main__":
    main()
