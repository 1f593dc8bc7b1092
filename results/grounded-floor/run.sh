#!/usr/bin/env bash
# The grounded suite's language-blindness floor (issue 13), measured and stored.
#
#   bash results/grounded-floor/run.sh [RUN_ROOT]      # default RUN_ROOT=runs/grounded-floor
#
# Resumable: every stage runs in its own directory under RUN_ROOT; a stage whose manifest says
# "complete" is skipped, an interrupted one resumes. summarize.py copies the small result files to
# results/grounded-floor/<date>/ after each stage. Stages: the tiny VLM (pool_tiny, pretrain_tiny cut
# to PRETRAIN_STEPS), demonstrations on the seen split, the scripted expert aimed at the named and at a
# random candidate, the random policy, then the pi0 head trained twice on the same data and steps,
# with language and with the instruction hidden from the expert (policy.pi0.mask_language=true).
set -euo pipefail
ROOT=${1:-runs/grounded-floor}
HERE=$(cd "$(dirname "$0")" && pwd)
V=${VLM2VLA:-vlm2vla}
PY=${PYTHON:-python}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-2000}
POLICY_STEPS=${POLICY_STEPS:-1500}
EPISODES=${EPISODES:-10}
SIM=(sim.name=grounded sim.camera=front)
SPLITS='splits=[seen,unseen_paraphrase,unseen_composition,position]'

complete() { [ -f "$1/manifest.json" ] && grep -q '"status": "complete"' "$1/manifest.json"; }
stage() {  # stage <run_dir> <vlm2vla args...>
  local dir=$1; shift
  if complete "$dir"; then echo "== $dir: complete, skipped"; return; fi
  echo "== $dir: $V $*"
  "$V" "$@" "run_dir=$dir"
  "$PY" "$HERE/summarize.py" "$ROOT"
}

stage "$ROOT/pool" pool --config pool_tiny
stage "$ROOT/pretrain" pretrain --config pretrain_tiny "data=$ROOT/pool" "optim.max_steps=$PRETRAIN_STEPS"
stage "$ROOT/collect" collect "${SIM[@]}" 'tasks=[grounded]' episodes_per_task=50 instruction_split=seen \
  action_noise=0.1 use_videos=false
for spec in "expert policy.type=expert" "expert-random-target policy.type=expert policy.kwargs.target=random" \
            "random policy.type=random"; do
  read -r name args <<<"$spec"
  # shellcheck disable=SC2086
  stage "$ROOT/eval-$name" eval $args "${SIM[@]}" "$SPLITS" "episodes_per_task=$EPISODES" video_episodes=0
done
for variant in language:false masked:true; do
  name=${variant%%:*}; mask=${variant##*:}
  stage "$ROOT/train-pi0-$name" train-policy --config train_policy_tiny "model=$ROOT/pretrain/model" \
    "data=$ROOT/collect" policy.head=pi0 'policy.cameras=[front]' "policy.pi0.mask_language=$mask" \
    "optim.max_steps=$POLICY_STEPS" val_interval=500 checkpoint.interval=250
  stage "$ROOT/eval-pi0-$name" eval "policy.path=$ROOT/train-pi0-$name" "${SIM[@]}" "$SPLITS" \
    "episodes_per_task=$EPISODES" video_episodes=1
done
