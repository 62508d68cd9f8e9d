#!/usr/bin/env bash
# The credit audit on ALFWorld with the noisy expert_action label (docs/benchmarks.md):
#   benchmarks/credit_lab_alfworld.sh [OUT]
# quickstart-alfworld's earlier warm start (tiny model without alfworld_text, 600 SFT steps of 32 rows on the exploring expert of generated Heat /
# Cool games), 8 sampled rollouts of each of the held-out games 20-35 (the audit needs mixed groups; with this warm start
# games 0-19 gave one, 20-35 seven, in a first rollout without labels), then `stepopsd credit-audit` with
# that model as the teacher. A step counts as a mistake when its action differs from the expert_action of
# the state it acted in: noisy (the exploring expert is one of many good plans). Steps already done are
# skipped.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."; o=${1:-runs/credit_lab_alfworld}; mkdir -p $o
TRAIN='{"split": "generated", "task_types": ["Heat", "Cool"], "generated_per_type": 150, "generator_seed": 0, "generated_receptacles": 5, "generated_distractors": 2, "success_reward": 1.0, "invalid_action_reward": 0.0, "max_episode_steps": 25, "expert_actions": true}'
EVAL='{"split": "generated", "task_types": ["Heat", "Cool"], "generated_per_type": 18, "generator_seed": 1, "generated_receptacles": 5, "generated_distractors": 2, "success_reward": 1.0, "invalid_action_reward": 0.0, "max_episode_steps": 25, "expert_actions": true}'
[ -f $o/tiny/config.json ] || stepopsd model init-tiny --out $o/tiny
[ -f $o/sft/config.json ] || /usr/bin/time -f "sft %e s" stepopsd sft --model $o/tiny --env stepopsd/ALFWorld-v0 --episodes 300 --steps 600 --batch-rows 32 --lr 2e-3 --context-mode window --history-steps 2 --show-admissible-actions --set "env.train_kwargs=$TRAIN" --out $o/sft
[ -f $o/rollout.jsonl ] || /usr/bin/time -f "rollout %e s" stepopsd rollout stepopsd/ALFWorld-v0 --model $o/sft --env-kwargs "$EVAL" --seed 20 --episodes 16 --group 8 --max-new-tokens 40 --context-mode window --history-steps 2 --show-admissible-actions --out $o/rollout.jsonl
/usr/bin/time -f "audit %e s" stepopsd credit-audit $o/rollout.jsonl --model $o/sft --label expert_action --config quickstart-alfworld --clip-grid 0.05 --clip-grid 0.2 --clip-grid 0.5 --clip-grid 0.9 --json $o/audit.json --plot docs/figures/credit_alfworld.png
echo done $(date)
