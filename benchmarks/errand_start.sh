#!/usr/bin/env bash
# The errand learning benchmark's start: a model that can read the note but mostly follows a careless
# habit (docs/benchmarks.md, learning on ForkedErrand):
#   benchmarks/errand_start.sh [OUT]      -> OUT/start (OUT default runs/errand-start)
# then: python benchmarks/bench_learning.py --env errand --start-model OUT/start ...
# Four SFT phases (8 rows per step, expert + hindsight rows, constant lr, a fresh AdamW each):
#   1. the bench's own warm start (learning-errand.toml: 1500 steps at 3e-3, 60% careless-first):
#      the routine, but it never reads the note;
#   2. 600 steps at 1e-3, 60% careless taking a random wrong parcel: choices spread over all parcels;
#   3. expert only at 1e-3 until 90% greedy on 32 training tasks (checked every 200 steps; 1000 in
#      ours): it reads the note and copies the parcel;
#   4. 300 steps at 5e-4, 60% careless-first: greedy back to about 28%, always parcel 1.
# About 100 minutes on one CPU thread. Each phase is skipped when its output exists.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."
out=${1:-runs/errand-start}
mkdir -p $out
routine=$out/routine/errand/start/sft_model  # where bench_learning.py --start-only puts it
[ -f $routine/config.json ] || python benchmarks/bench_learning.py --env errand --start-only \
  --out $out/routine --set sft.stop_at_success=0.99 sft.check_every=300 sft.check_episodes=32
sft() {  # FROM OUT STEPS LR CARELESS_RATE [--set ...]
  [ -f $2/config.json ] || stepopsd sft --model $1 --out $2 --steps $3 --lr $4 --env stepopsd/ForkedErrand-v0 \
    --episodes 256 --batch-rows 8 --context-mode window --history-steps 1 --show-admissible-actions --seed 0 \
    --set sft.hindsight_rows=true --set sft.careless_rate=$5 --set 'env.train_kwargs={"mode":"observable"}' \
    --set algorithm.peer_token_budget=512 "${@:6}"
}
sft $routine $out/spread 600 1e-3 0.6 --set sft.careless_choice=random_wrong
sft $out/spread $out/reader 3000 1e-3 0 --set sft.stop_at_success=0.9 --set sft.check_every=200
sft $out/reader $out/start 300 5e-4 0.6
echo done $(date)
