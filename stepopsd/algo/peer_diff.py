"""The peer-diff Delta: the teacher's peer without the teacher, a cheap model-free baseline (method ``peer_diff``).

The hindsight teacher reads a successful peer and finds some of a trajectory's tokens unlikely.
This Delta keeps only the comparison of actions: step k of a trajectory is doubted when its
action differs from the action of step k of the peer the teacher would be shown
(:func:`stepopsd.algo.hindsight.choose_peer` under ``hindsight_for``), or when the peer has no
step k. Steps are aligned by index: no env label, no errand or phase is read. The Delta then goes
through stepopsd's shaping (Eq. 3-4 and the step budget), so it drops in where the teacher's goes::

    Delta_t = -gap   on the target tokens of a doubted step
    Delta_t = 0      on every other token, and on every token of a trajectory without a peer

A failed trajectory (A < 0) thus puts more blame on the steps where it left its peer's path; a
won one under ``hindsight_for = "failed_and_won"`` less credit on the steps its cleaner peer did
not need. Index alignment is the crude part: after one extra step, every later step differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stepopsd.algo.hindsight import choose_peer
from stepopsd.algo.segment import on_step_targets
from stepopsd.trajectory import Trajectory, group_trajectories


def differing_steps(traj: Trajectory, peer: Trajectory) -> list[bool]:
    """Per step of ``traj``: its action differs from the peer's step of the same index (or the peer has none).

    Actions are compared with surrounding whitespace stripped.
    """
    return [k >= peer.num_steps or step.action.strip() != peer.steps[k].action.strip()
            for k, step in enumerate(traj.steps)]


def peer_diff_delta(trajectories: Sequence[Trajectory], step_ids: torch.Tensor, target_mask: torch.Tensor,
                    gap: float, hindsight_for: str = "failed") -> torch.Tensor:
    """Delta [B, T]: -gap on the target tokens of each step whose action differs from its peer's, 0 elsewhere.

    step_ids [B, T] long (-1 off targets), target_mask [B, T] bool; the peer is taken from the
    trajectory's own group in ``trajectories``.
    """
    groups = {group.group_id: group.trajectories for group in group_trajectories(trajectories)}
    width = max((traj.num_steps for traj in trajectories), default=0) or 1
    doubted = torch.zeros(len(trajectories), width)  # [B, S] 1.0 on doubted steps
    for b, traj in enumerate(trajectories):
        peer = choose_peer(traj, groups[traj.group_id], hindsight_for)
        if peer is not None and traj.num_steps:
            doubted[b, :traj.num_steps] = torch.tensor(differing_steps(traj, peer), dtype=torch.float32)
    on_targets = on_step_targets(doubted, step_ids, target_mask)  # [B, T]
    return torch.where(on_targets != 0, -gap * on_targets, torch.zeros(on_targets.shape))
