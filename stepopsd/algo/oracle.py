"""The oracle teacher: Delta from the env's own labels of which step was a mistake.

A perfect hindsight teacher would find exactly the mistaken steps' tokens unlikely and every
other token as likely as the acting policy did. The ``oracle`` method feeds that Delta through
the same shaping as StepOPSD; the credit audit uses the same labels as ground truth.

Upper bounds (ALGORITHM's definition): with the paper's knobs (lambda = alpha_clip = 0.2, decaying)
``oracle`` is the paper's method with a perfect teacher, not a bound. The ceiling of sign-preserving
step credit is ``oracle`` at full strength (lambda 1, alpha_clip near 1, no decay) with
``oracle_sides = "two_sided"``: Delta negative on mistakes and positive on the harmless decisive
steps (``info["decisive"]`` and not a mistake). The ceiling of any step credit is ``oracle_signed``:
a per-step reward from the same signs added to the outcome advantage (it may flip signs).

Label sources (``AlgorithmConfig.oracle_label``):

=================  ===============================================================================
``mistake``        the env's ``info["mistake"]`` for the step (exact, e.g. stepopsd/ForkedErrand-v0)
``expert_action``  the action differs from the env's expert suggestion for the state it was taken
                   in (ALFWorld's ``expert_action``): noisy, another route may also win
=================  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stepopsd.algo.segment import on_step_targets
from stepopsd.choices import MISTAKE_LABELS
from stepopsd.trajectory import Step, Trajectory


def step_mistake(step: Step, label: str) -> bool | None:
    """Whether ``step`` was a mistake according to ``label``; None where the step carries no such label."""
    if label == "mistake":
        value = step.info.get("mistake")
        return None if value is None else bool(value)
    if label == "expert_action":
        suggestion = step.acted_on("expert_action")
        return None if not suggestion else step.action.strip() != str(suggestion).strip()
    raise ValueError(f"label must be one of {MISTAKE_LABELS}, got {label!r}")


def mistake_labels(traj: Trajectory, label: str = "mistake") -> list[bool | None]:
    """Per step of ``traj``: True (mistake), False (not) or None (unlabelled)."""
    return [step_mistake(step, label) for step in traj.steps]


def step_signs(traj: Trajectory, label: str = "mistake", two_sided: bool = True) -> list[int]:
    """Per step: -1 a labelled mistake, +1 (``two_sided``) a decisive step (``info["decisive"]``) that
    was not one, 0 otherwise."""
    return [-1 if is_mistake else (1 if two_sided and is_mistake is False and step.info.get("decisive") else 0)
            for step, is_mistake in zip(traj.steps, mistake_labels(traj, label))]


def step_sign_table(trajectories: Sequence[Trajectory], label: str, two_sided: bool) -> torch.Tensor:
    """[B, S] float: :func:`step_signs` of every trajectory, 0-padded (S at least 1)."""
    width = max((len(traj.steps) for traj in trajectories), default=0) or 1
    signs = torch.zeros(len(trajectories), width)  # [B, S]
    for b, traj in enumerate(trajectories):
        signs[b, :traj.num_steps] = torch.tensor(step_signs(traj, label, two_sided), dtype=torch.float32)
    return signs


def oracle_delta(trajectories: Sequence[Trajectory], step_ids: torch.Tensor, target_mask: torch.Tensor,
                 gap: float, label: str = "mistake", two_sided: bool = False) -> torch.Tensor:
    """Delta [B, T]: -gap on the target tokens of every step labelled a mistake, with ``two_sided``
    +gap on those of harmless decisive steps, 0 elsewhere.

    step_ids [B, T] long (-1 off targets), target_mask [B, T] bool.
    """
    token_signs = on_step_targets(step_sign_table(trajectories, label, two_sided), step_ids, target_mask)  # [B, T]
    return torch.where(token_signs != 0, gap * token_signs, torch.zeros(token_signs.shape))
