"""What an iteration's credit looked like: group, teacher-gap and shaping statistics for the metrics.

Every function returns a flat ``{"group/name": float}`` dict; none of them changes any advantage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stepopsd.algo.hindsight import choose_peer
from stepopsd.algo.rescore import TrajectoryGap
from stepopsd.algo.segment import TOKEN_KIND_NAMES
from stepopsd.algo.shaping import STEP_BUDGET_RULES, ShapedAdvantages, degenerate_group_mask
from stepopsd.trajectory import Trajectory, group_trajectories, is_mixed


def safe_mean(total: float, count: float) -> float:
    """total / count, 0 for an empty count."""
    return total / count if count else 0.0


def group_stats(trajectories: Sequence[Trajectory], rewards: torch.Tensor, group_ids: torch.Tensor) -> dict[str, float]:
    """Number of groups, fraction of mixed ones (0 < successes < n) and zero-variance ones."""
    groups = group_trajectories(trajectories)
    degenerate = degenerate_group_mask(rewards, group_ids)  # [B]
    zero_variance = len({gid for gid, flag in zip(group_ids.tolist(), degenerate.tolist()) if flag})
    return {
        "adv/num_groups": float(len(groups)),
        "adv/mixed_group_frac": safe_mean(sum(is_mixed(g.trajectories) for g in groups), len(groups)),
        "adv/zero_var_groups": float(zero_variance),
    }


def gap_stats(gaps: Sequence[TrajectoryGap], trajectories: Sequence[Trajectory], hindsight_mode: str,
              hindsight_for: str) -> dict[str, float]:
    """delta/* per token kind over rescored trajectories; hindsight/* over the whole batch."""
    groups = group_trajectories(trajectories)
    with_peer = sum(choose_peer(t, g.trajectories, hindsight_for) is not None for g in groups for t in g.trajectories)
    kind_sums = sum((g.kind_abs_sums for g in gaps), torch.zeros(3))
    kind_counts = sum((g.kind_counts for g in gaps), torch.zeros(3))
    stats = {
        "hindsight/frac_with_peer": safe_mean(with_peer, len(trajectories)) if hindsight_mode == "peer_trajectory" else 0.0,
        "hindsight/tokens_mean": safe_mean(sum(g.hindsight_tokens for g in gaps), len(gaps)),
        "rescore/trajectories": float(len(gaps)),
        "delta/abs_mean_target": safe_mean(sum(g.delta.abs().sum().item() for g in gaps),
                                           sum(g.target_tokens for g in gaps)),
    }
    for code, name in TOKEN_KIND_NAMES.items():
        stats[f"delta/abs_mean_{name}"] = safe_mean(kind_sums[code].item(), kind_counts[code].item())
    return stats


def shaping_stats(shaped: ShapedAdvantages, outcome_advantages: torch.Tensor, target_mask: torch.Tensor,
                  budget_clip: float, step_budget: str) -> dict[str, float]:
    """Weight clip rate and step-budget factors, over trajectories whose outcome advantage is not 0."""
    active = outcome_advantages != 0  # [B]
    active_targets = target_mask & active[:, None]  # [B, T]
    rule = STEP_BUDGET_RULES[step_budget]
    budgeted = shaped.step_present & active[:, None] & (shaped.step_present.sum(1, keepdim=True) >= 2)  # [B, S]
    if not rule.applies:
        budgeted = torch.zeros_like(budgeted)
    factors = shaped.step_factors[budgeted]  # [M]
    at_clip = (factors <= 1.0 / budget_clip + 1e-6) | (factors >= budget_clip - 1e-6)
    return {
        "shape/weight_clip_frac": safe_mean(shaped.weight_at_clip[active_targets].sum().item(), active_targets.sum().item()),
        "budget/factor_mean": factors.mean().item() if factors.numel() else 1.0,
        "budget/clip_frac": safe_mean(at_clip.sum().item(), factors.numel()) if rule.clipped else 0.0,
        "budget/steps": float(factors.numel()),
    }
