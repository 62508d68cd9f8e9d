#!/usr/bin/env bash
# One credit-lab teacher that reads the hindsight block, warmed from scratch (docs/benchmarks.md, credit lab):
#   benchmarks/credit_lab_teacher.sh SEED [OUT]      -> OUT/seed-SEED/teacher (OUT default runs/teachers)
# 250 SFT steps at lr 3e-3 by the bench's own warm start (its audit of that young teacher is kept in
# OUT/seed-SEED/phase1), then 1000 steps at lr 1e-3, 200 at 5e-4, 400 more at 5e-4 and 400 at 2.5e-4
# (batch 16, expert + hindsight rows, whole peer shown; each phase a fresh AdamW and the same batch
# order). About 110 minutes on one CPU thread. Each phase is skipped when its output exists.
set -euo pipefail
seed=$1
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."
out=${2:-runs/teachers}/seed-$seed
mkdir -p $out
[ -f $out/phase1/seed-$seed.json ] || python benchmarks/bench_credit_audit.py --seeds $seed --sft-steps 250 --behaviour guessing-expert --out $out/phase1
common="--env stepopsd/ForkedErrand-v0 --episodes 256 --batch-rows 16 --context-mode window --history-steps 1 --show-admissible-actions --seed $seed --set sft.hindsight_rows=true --set env.train_kwargs={\"mode\":\"hidden\"} --set algorithm.peer_token_budget=512"
[ -f $out/phase2/config.json ] || stepopsd sft --model $out/phase1/seed-$seed/sft_model --steps 1000 --lr 1e-3 $common --out $out/phase2
[ -f $out/phase3/config.json ] || stepopsd sft --model $out/phase2 --steps 200 --lr 5e-4 $common --out $out/phase3
[ -f $out/phase4/config.json ] || stepopsd sft --model $out/phase3 --steps 400 --lr 5e-4 $common --out $out/phase4
[ -f $out/teacher/config.json ] || stepopsd sft --model $out/phase4 --steps 400 --lr 2.5e-4 $common --out $out/teacher
echo done $(date)
