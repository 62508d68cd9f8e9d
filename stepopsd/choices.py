"""The values the config's string fields accept and the ranges of the numbers the maths checks: a leaf
module (no imports), so the pure stages (segment, advantage, teacher), the torch-free config and the
CLI share one definition of each."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """A closed interval, or half-open at the top: the one statement of an option's range."""

    low: float
    high: float
    include_high: bool = True

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high if self.include_high else self.low <= value < self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}{']' if self.include_high else ')'}"


ALPHA_CLIP_RANGE = Range(0.0, 1.0, include_high=False)  # Eq. 3: w in [1 - alpha_clip, 1 + alpha_clip] stays positive
LAMBDA_RANGE = Range(0.0, 1.0)  # Eq. 4: A~ = A * ((1 - lambda) + lambda * w) keeps sign(A)

ALGORITHM_NAMES = ("grpo", "stepopsd", "rlsd", "opd", "oracle", "gigpo", "oracle_signed", "peer_diff")  # the keys of algo.advantage.ADVANTAGE_METHODS (a test pins it)
WEIGHT_FNS = ("sigmoid", "exp")
STEP_BUDGETS = ("equal_step_mean_abs", "conserved_step_share", "none")  # the keys of algo.shaping.STEP_BUDGET_RULES (a test pins it)
SPAN_MODES = ("action_only", "clean_step", "final_answer_only", "whole_response")
TEACHER_MODES = ("stale", "live")
CONTEXT_MODES = ("full", "window")
OVERFLOW_POLICIES = ("truncate_history", "end_episode")
HINDSIGHT_MODES = ("none", "correctness", "peer_trajectory")
HINDSIGHT_TARGETS = ("failed", "failed_and_won")  # who gets a peer: the keys of algo.hindsight.PEER_RULES
AUDIT_CONTROLS = ("none", "correctness", "peer_trajectory", "other_group_peer", "swapped_peer")  # the keys of lab.credit_audit.CONTROLS
HINDSIGHT_CONTROLS = AUDIT_CONTROLS[:4]  # the teacher arms an audit runs by default (swapped_peer on request)
PEER_VIEWS = ("steps", "actions", "outcomes")  # how a peer is written in the block: the keys of algo.hindsight.PEER_VIEWS
ORACLE_SIDES = ("mistakes", "two_sided")  # where the oracle's Delta is not 0 (algo.oracle.oracle_delta)
MISTAKE_LABELS = ("mistake", "expert_action")  # where a step's mistake label comes from (algo.oracle)
COLLAPSE_ACTIONS = ("warn", "stop")  # what the trainer does when health.py raises an alarm
LOSS_AGGREGATIONS = ("token_mean", "trajectory_mean", "seq_mean_token_sum_norm")  # the keys of algo.loss.LOSS_AGGREGATION_RULES
GIGPO_EPISODE_NORMS = ("trajectory", "step_rows")  # the keys of algo.gigpo.EPISODE_NORMS
LAMBDA_SCHEDULE_UNITS = ("optimizer_step", "iteration")  # what the lambda schedule counts (algo.advantage)
CARELESS_CHOICES = ("first", "random_wrong", "env")  # how the SFT careless demonstrator picks (lab.careless)
HINDSIGHT_ROW_PEERS = ("self_if_alone", "other_episode")  # a hindsight row's peer: the keys of lab.hindsight_rows.ROW_PEER_RULES
HINDSIGHT_ROW_CONTEXTS = ("won", "careless")  # whose steps hindsight rows are cut from (lab.warm_start)
