#!/usr/bin/env bash
# The README's MT10 table and tiny-VLM table, re-measured and stored (issue 11).
#
#   bash results/mt10-heads/run.sh [RUN_ROOT]      # default RUN_ROOT=runs/mt10-heads
#
# Resumable: every stage runs in its own directory under RUN_ROOT; a stage whose manifest says
# "complete" is skipped, an interrupted one resumes from its last checkpoint. After each stage the
# stored results under results/mt10-heads/<date>/ are refreshed (summarize.py), so partial results
# can be committed while the rest runs. About 4 hours on an idle 2-core CPU:
#   pool ~1 min, pretrain ~35 min, collect ~15 min, per head ~40 min training + ~15 min eval.
set -euo pipefail
ROOT=${1:-runs/mt10-heads}
HERE=$(cd "$(dirname "$0")" && pwd)
V=${VLM2VLA:-vlm2vla}
PY=${PYTHON:-python}

complete() { [ -f "$1/manifest.json" ] && grep -q '"status": "complete"' "$1/manifest.json"; }
stage() {  # stage <run_dir> <vlm2vla args...>
  local dir=$1; shift
  if complete "$dir"; then echo "== $dir: complete, skipped"; return; fi
  echo "== $dir: $V $*"
  "$V" "$@" "run_dir=$dir"
  "$PY" "$HERE/summarize.py" "$ROOT"
}

stage "$ROOT/pool" pool --config pool_tiny
stage "$ROOT/pretrain" pretrain --config pretrain_tiny "data=$ROOT/pool"
stage "$ROOT/collect" collect 'tasks=[mt10]' episodes_per_task=25 instruction_split=seen action_noise=0.1 \
  use_videos=false
stage "$ROOT/eval-random" eval policy.type=random 'tasks=[mt10]' episodes_per_task=10 sim.max_episode_steps=300 \
  video_episodes=0
for head in pi0 vlm4vla gr00t; do
  stage "$ROOT/train-$head" train-policy --config train_policy_tiny "model=$ROOT/pretrain/model" \
    "data=$ROOT/collect" "policy.head=$head"
  stage "$ROOT/eval-$head" eval "policy.path=$ROOT/train-$head" 'tasks=[mt10]' episodes_per_task=10 \
    sim.max_episode_steps=300 video_episodes=0
done
