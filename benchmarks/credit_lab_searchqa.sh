#!/usr/bin/env bash
# The credit audit on Search-QA with the env's mistake labels (docs/benchmarks.md):
#   benchmarks/credit_lab_searchqa.sh START [OUT]
# START: quickstart-searchqa's warm start (RUN/sft_model of `stepopsd train --config quickstart-searchqa
# --out RUN`: the expert's skill with the careless searcher's habit). 8 sampled rollouts of each of the first
# 32 training questions, then `stepopsd credit-audit` with START as the teacher. A step is a mistake when
# its search retrieves none of the passages still needed or its answer is wrong (the careless habit's
# mistake: a bridge question answered with the bridge). Steps already done are skipped.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."; start=$1; o=${2:-runs/credit_lab_searchqa}; mkdir -p $o
TRAIN='{"world": {"seed": 0, "entities": 200, "questions": 800, "fillers": 0}, "retriever": "bm25", "top_k": 2, "max_turns": 3, "threads": 1}'
[ -f $o/rollout.jsonl ] || /usr/bin/time -f "rollout %e s" stepopsd rollout stepopsd/SearchQA-v0 --model $start --env-kwargs "$TRAIN" --seed 0 --episodes 32 --group 8 --max-new-tokens 48 --context-mode window --history-steps 1 --out $o/rollout.jsonl
/usr/bin/time -f "audit %e s" stepopsd credit-audit $o/rollout.jsonl --model $start --label mistake --config quickstart-searchqa --clip-grid 0.05 --clip-grid 0.2 --clip-grid 0.5 --clip-grid 0.9 --json $o/audit.json --plot docs/figures/credit_searchqa.png
echo done $(date)
