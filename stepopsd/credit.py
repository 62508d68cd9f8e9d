"""The "compute advantages" stage the trainer calls once per iteration.

trajectories -> GRPO advantage per trajectory -> (segment, hindsight, rescore, shape) ->
per-token advantages aligned with each trajectory's ``token_ids``, plus diagnostics.

>>> result = compute_advantages(trajectories, AlgorithmConfig(name="stepopsd"),
...                             teacher=teacher.model, tokenize=tokenize, optimizer_step=step)  # doctest: +SKIP
>>> batch = build_batch(trajectories, result.advantages)                                        # doctest: +SKIP

Methods (``AlgorithmConfig.name``), picked from the ``ADVANTAGE_METHODS`` registry:

==========  ================================================================================
grpo        A_i on every generated token; the teacher is never run
stepopsd    Eq. 3-4 per step on ``span_mode`` targets, lambda schedule, per-step budget
rlsd        Eq. 3-4 with the exp weight, whole response as one span, no budget
opd         A_i + opd_beta * Delta_t on the whole response (additive; may flip signs)
==========  ================================================================================

Trajectories whose GRPO advantage is 0 (all-success / all-fail groups) are not rescored:
every method gives them 0 whatever Delta is. The delta/* diagnostics cover the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from stepopsd.advantage import (
    additive_advantages, degenerate_group_mask, grpo_advantages, lambda_at, shape_advantages_detailed,
)
from stepopsd.config import AlgorithmConfig
from stepopsd.hindsight import choose_peer, hindsight_text
from stepopsd.rescore import context_windows, logprob_gap, step_windows, teacher_logprobs
from stepopsd.segment import TOKEN_KIND_NAMES, target_mask_and_step_ids, token_kinds
from stepopsd.trajectory import Trajectory

Tokenize = Callable[[str], Sequence[int]]


@dataclass(frozen=True)
class CreditResult:
    """Per-token advantages (list of [T_i] float32, 0 off generated tokens), the Eq. 2 gaps
    behind them (list of [T_i], 0 off targets and for methods without a teacher), the GRPO
    outcome advantage of each trajectory [B], and diagnostics."""

    advantages: list[torch.Tensor]
    deltas: list[torch.Tensor]
    outcome_advantages: torch.Tensor
    stats: dict[str, float]


@dataclass(frozen=True)
class CreditInputs:
    """What every method receives: the batch, its GRPO advantages and the teacher side."""

    trajectories: Sequence[Trajectory]
    outcome_advantages: torch.Tensor  # [B]
    trainable_mask: torch.Tensor  # [B, T] bool, right-padded
    teacher: torch.nn.Module | None
    tokenize: Tokenize | None


@dataclass(frozen=True)
class Rescored:
    """Eq. 2 gaps of a batch on its targets (right-padded to T)."""

    delta: torch.Tensor  # [B, T], 0 outside targets
    target_mask: torch.Tensor  # [B, T] bool
    step_ids: torch.Tensor  # [B, T] long, -1 outside targets
    stats: dict[str, float]


def _padded(rows: Sequence[torch.Tensor], width: int, fill) -> torch.Tensor:
    out = torch.full((len(rows), width), fill, dtype=rows[0].dtype if rows else torch.float32)  # [B, T]
    for b, row in enumerate(rows):
        out[b, :len(row)] = row
    return out


def _safe_mean(total: float, count: float) -> float:
    return total / count if count else 0.0


@dataclass(frozen=True)
class TrajectoryGap:
    """Eq. 2 for one trajectory: the gap on its targets and the |gap| sums per token kind."""

    delta: torch.Tensor  # [T], 0 outside targets
    kind_abs_sums: torch.Tensor  # [3] |gap| summed over scored generated tokens, by token kind
    kind_counts: torch.Tensor  # [3]
    hindsight_tokens: int
    target_tokens: int


def rescore_trajectory(
    traj: Trajectory, group: Sequence[Trajectory], target_mask: torch.Tensor, teacher: torch.nn.Module,
    tokenize: Tokenize, config: AlgorithmConfig, span_mode: str,
) -> TrajectoryGap:
    """Hindsight block -> teacher log-probs on the scored windows -> gap to the behaviour log-probs."""
    if not traj.behaviour_logprobs:
        raise ValueError(f"trajectory {traj.trajectory_id!r} has no behaviour_logprobs; Eq. 2 needs them")
    text = hindsight_text(traj, group, config.hindsight_mode, correctness_line=config.correctness_line,
                          peer_token_budget=config.peer_token_budget, count_tokens=lambda t: len(tokenize(t)))
    hindsight_ids = list(tokenize(text)) if text else []
    windows = (context_windows if span_mode == "whole_response" else step_windows)(traj, target_mask)
    logprobs, scored = teacher_logprobs(teacher, traj.token_ids, windows, hindsight_ids,
                                        max_rows_per_pass=config.max_rows_per_pass)  # [T], [T]
    generated = scored & torch.tensor(traj.trainable_mask, dtype=torch.bool)  # [T]
    gap = logprob_gap(logprobs, torch.tensor(traj.behaviour_logprobs), generated)  # [T]
    kinds = token_kinds(traj)[generated]  # [M]
    return TrajectoryGap(
        delta=torch.where(target_mask, gap, torch.zeros_like(gap)),
        kind_abs_sums=torch.zeros(3).index_add_(0, kinds, gap[generated].abs()),
        kind_counts=torch.zeros(3).index_add_(0, kinds, torch.ones(len(kinds))),
        hindsight_tokens=len(hindsight_ids),
        target_tokens=int(target_mask.sum()),
    )


def rescore_batch(inputs: CreditInputs, config: AlgorithmConfig, span_mode: str) -> Rescored:
    """Segment every trajectory; rescore those with a non-zero outcome advantage; pad; summarise."""
    if inputs.teacher is None:
        raise ValueError(f"algorithm {config.name!r} needs a teacher model (pass teacher=...)")
    groups: dict[int, list[Trajectory]] = {}
    for traj in inputs.trajectories:
        groups.setdefault(traj.group_id, []).append(traj)
    deltas, targets, step_ids, gaps = [], [], [], []
    for traj, advantage in zip(inputs.trajectories, inputs.outcome_advantages.tolist()):
        target_mask, traj_step_ids = target_mask_and_step_ids(traj, span_mode)  # [T], [T]
        delta = torch.zeros(len(traj.token_ids))  # [T]
        if advantage != 0.0 and target_mask.any():
            gaps.append(rescore_trajectory(traj, groups[traj.group_id], target_mask, inputs.teacher,
                                           inputs.tokenize or _missing_tokenizer, config, span_mode))
            delta = gaps[-1].delta
        deltas.append(delta), targets.append(target_mask), step_ids.append(traj_step_ids)
    width = inputs.trainable_mask.shape[1]
    stats = gap_stats(gaps, groups, config.hindsight_mode, len(inputs.trajectories))
    return Rescored(_padded(deltas, width, 0.0), _padded(targets, width, False), _padded(step_ids, width, -1), stats)


def gap_stats(gaps: Sequence[TrajectoryGap], groups: dict[int, list[Trajectory]], hindsight_mode: str,
              num_trajectories: int) -> dict[str, float]:
    """delta/* per token kind over rescored trajectories; hindsight/* over the whole batch."""
    with_peer = sum(choose_peer(t, group) is not None for group in groups.values() for t in group)
    kind_sums = sum((g.kind_abs_sums for g in gaps), torch.zeros(3))
    kind_counts = sum((g.kind_counts for g in gaps), torch.zeros(3))
    target_sum = sum(g.delta.abs().sum().item() for g in gaps)
    target_count = sum(g.target_tokens for g in gaps)
    stats = {
        "hindsight/frac_with_peer": _safe_mean(with_peer, num_trajectories) if hindsight_mode == "peer_trajectory" else 0.0,
        "hindsight/tokens_mean": _safe_mean(sum(g.hindsight_tokens for g in gaps), len(gaps)),
        "rescore/trajectories": float(len(gaps)),
        "delta/abs_mean_target": _safe_mean(target_sum, target_count),
    }
    for code, name in TOKEN_KIND_NAMES.items():
        stats[f"delta/abs_mean_{name}"] = _safe_mean(kind_sums[code].item(), kind_counts[code].item())
    return stats


def _missing_tokenizer(text: str) -> Sequence[int]:
    raise ValueError("the hindsight block needs a tokenize function (pass tokenize=...)")


def shaping_stats(shaped, outcome_advantages: torch.Tensor, target_mask: torch.Tensor, budget_clip: float,
                  step_budget: str) -> dict[str, float]:
    """Weight clip rate and step-budget factors, over trajectories whose outcome advantage is not 0."""
    active = outcome_advantages != 0  # [B]
    active_targets = target_mask & active[:, None]  # [B, T]
    budgeted = shaped.step_present & active[:, None] & (shaped.step_present.sum(1, keepdim=True) >= 2)  # [B, S]
    if step_budget == "none":
        budgeted = torch.zeros_like(budgeted)
    factors = shaped.step_factors[budgeted]  # [M]
    at_clip = (factors <= 1.0 / budget_clip + 1e-6) | (factors >= budget_clip - 1e-6)
    return {
        "shape/weight_clip_frac": _safe_mean(shaped.weight_at_clip[active_targets].sum().item(), active_targets.sum().item()),
        "budget/factor_mean": factors.mean().item() if factors.numel() else 1.0,
        "budget/clip_frac": _safe_mean(at_clip.sum().item(), factors.numel()),
        "budget/steps": float(factors.numel()),
    }


MethodOutput = tuple[torch.Tensor, torch.Tensor, dict[str, float]]  # advantages [B, T], delta [B, T], stats


def _grpo(inputs: CreditInputs, config: AlgorithmConfig, lam: float) -> MethodOutput:
    """Plain GRPO: the outcome advantage on every token (no teacher)."""
    advantages = inputs.outcome_advantages[:, None].expand_as(inputs.trainable_mask).clone()  # [B, T]
    return advantages, torch.zeros_like(advantages), {}


def _eq34(inputs: CreditInputs, config: AlgorithmConfig, lam: float, *, span_mode: str, weight_fn: str,
          step_budget: str) -> MethodOutput:
    rescored = rescore_batch(inputs, config, span_mode)
    shaped = shape_advantages_detailed(
        inputs.outcome_advantages, rescored.delta, rescored.target_mask, rescored.step_ids,
        alpha_clip=config.alpha_clip, lam=lam, weight_fn=weight_fn, step_budget=step_budget,
        budget_clip=config.budget_clip,
    )
    return shaped.advantages, rescored.delta, {**rescored.stats, **shaping_stats(shaped, inputs.outcome_advantages, rescored.target_mask,
                                                                   config.budget_clip, step_budget)}


def _stepopsd(inputs: CreditInputs, config: AlgorithmConfig, lam: float) -> MethodOutput:
    """StepOPSD: per-step hindsight, Eq. 3-4 on the configured spans, per-step budget."""
    return _eq34(inputs, config, lam, span_mode=config.span_mode, weight_fn=config.weight_fn,
                 step_budget=config.step_budget)


def _rlsd(inputs: CreditInputs, config: AlgorithmConfig, lam: float) -> MethodOutput:
    """RLSD: exp weight, the whole response one span, hindsight once per context, no budget."""
    return _eq34(inputs, config, lam, span_mode="whole_response", weight_fn="exp", step_budget="none")


def _opd(inputs: CreditInputs, config: AlgorithmConfig, lam: float) -> MethodOutput:
    """OPD: A + beta * Delta on the whole response treated as one string."""
    rescored = rescore_batch(inputs, config, "whole_response")
    outcome = inputs.outcome_advantages[:, None].expand_as(rescored.delta)  # [B, T]
    advantages = additive_advantages(outcome, rescored.delta, rescored.target_mask, config.opd_beta)
    return advantages, rescored.delta, rescored.stats


ADVANTAGE_METHODS: dict[str, Callable[[CreditInputs, AlgorithmConfig, float], MethodOutput]] = {
    "grpo": _grpo,
    "stepopsd": _stepopsd,
    "rlsd": _rlsd,
    "opd": _opd,
}


def group_stats(trajectories: Sequence[Trajectory], rewards: torch.Tensor, group_ids: torch.Tensor) -> dict[str, float]:
    """Number of groups, fraction of mixed ones (0 < successes < n) and zero-variance ones."""
    outcomes: dict[int, list[bool]] = {}
    for traj in trajectories:
        outcomes.setdefault(traj.group_id, []).append(traj.success)
    mixed = sum(0 < sum(flags) < len(flags) for flags in outcomes.values())
    degenerate = degenerate_group_mask(rewards, group_ids)  # [B]
    zero_variance = len({gid for gid, flag in zip(group_ids.tolist(), degenerate.tolist()) if flag})
    return {
        "adv/num_groups": float(len(outcomes)),
        "adv/mixed_group_frac": _safe_mean(mixed, len(outcomes)),
        "adv/zero_var_groups": float(zero_variance),
    }


def compute_advantages(
    trajectories: Sequence[Trajectory],
    config: AlgorithmConfig,
    *,
    teacher: torch.nn.Module | None = None,
    tokenize: Tokenize | None = None,
    optimizer_step: int = 0,
) -> CreditResult:
    """Per-token advantages of one iteration's trajectories under ``config.name``.

    ``teacher``: the teacher model (``Teacher.model``), unused by grpo; ``tokenize``: text -> ids
    for the hindsight block (the policy's tokenizer without special tokens); ``optimizer_step``
    drives the lambda schedule.
    """
    rewards = torch.tensor([traj.reward for traj in trajectories], dtype=torch.float32)  # [B]
    group_ids = torch.tensor([traj.group_id for traj in trajectories], dtype=torch.long)  # [B]
    outcome = grpo_advantages(rewards, group_ids, normalize_std=config.normalize_std)  # [B]
    width = max((len(traj.token_ids) for traj in trajectories), default=0)
    trainable = _padded([torch.tensor(t.trainable_mask, dtype=torch.bool) for t in trajectories], width, False)  # [B, T]
    lam = lambda_at(optimizer_step, config.lambda_0, config.lambda_decay_steps)
    inputs = CreditInputs(trajectories, outcome, trainable, teacher, tokenize)
    token_advantages, delta, method_stats = ADVANTAGE_METHODS[config.name](inputs, config, lam)
    token_advantages = torch.where(trainable, token_advantages, torch.zeros_like(token_advantages))  # [B, T]
    stats = {
        **group_stats(trajectories, rewards, group_ids),
        "adv/outcome_abs_mean": outcome.abs().mean().item() if len(trajectories) else 0.0,
        "adv/token_abs_mean": _safe_mean(token_advantages.abs()[trainable].sum().item(), trainable.sum().item()),
        "shape/lambda": lam if config.name in ("stepopsd", "rlsd") else 0.0,
        **method_stats,
    }
    rows = [token_advantages[b, :len(traj.token_ids)].clone() for b, traj in enumerate(trajectories)]
    deltas = [delta[b, :len(traj.token_ids)].clone() for b, traj in enumerate(trajectories)]
    return CreditResult(rows, deltas, outcome, stats)
