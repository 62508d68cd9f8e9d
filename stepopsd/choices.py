"""The values the config's string fields accept: a leaf module (no imports), so the pure stages
(segment, advantage, teacher) and the torch-free config can share one definition of each."""

ALGORITHM_NAMES = ("grpo", "stepopsd", "rlsd", "opd", "oracle", "gigpo")  # the keys of algo.advantage.ADVANTAGE_METHODS
WEIGHT_FNS = ("sigmoid", "exp")
STEP_BUDGETS = ("equal_step_mean_abs", "conserved_step_share", "none")
SPAN_MODES = ("action_only", "clean_step", "final_answer_only", "whole_response")
TEACHER_MODES = ("stale", "live")
CONTEXT_MODES = ("full", "window")
OVERFLOW_POLICIES = ("truncate_history", "end_episode")
HINDSIGHT_MODES = ("none", "correctness", "peer_trajectory")
MISTAKE_LABELS = ("mistake", "expert_action")  # where a step's mistake label comes from (algo.oracle)
COLLAPSE_ACTIONS = ("warn", "stop")  # what the trainer does when health.py raises an alarm
LOSS_AGGREGATIONS = ("token_mean", "trajectory_mean")  # how the update weighs tokens (algo.loss.token_weights)
CARELESS_CHOICES = ("first", "random_wrong", "env")  # how the SFT careless demonstrator picks (episodes.ExpertReplay)
