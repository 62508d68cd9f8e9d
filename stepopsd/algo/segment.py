"""Step segmentation (docs/algorithm.md step 2): a trajectory's spans -> per-token target masks.

Every function maps one :class:`~stepopsd.trajectory.Trajectory` to tensors of length
T = len(token_ids). Targets are always generated (trainable) tokens of a step whose
``response_token_start/end`` is known; observation tokens are never targets.

Span modes
----------
``action_only``        the ACTION span of every step (tag contents; paper's ALFWorld setting)
``clean_step``         each step's whole generated range: thought + action with their tag
                       tokens and the end-of-turn token, never the observation (Search-QA)
``final_answer_only``  the ACTION span of the last step only (ablation)
``whole_response``     every trainable token as ONE step (step id 0): the rlsd / opd baselines
"""

from __future__ import annotations

import torch

from stepopsd.choices import SPAN_MODES
from stepopsd.trajectory import SpanKind, Step, Trajectory

# token kind codes of token_kinds(); NOT_GENERATED covers prompt, observation and padding
NOT_GENERATED, THOUGHT_TOKEN, ACTION_TOKEN, OTHER_RESPONSE_TOKEN = -1, 0, 1, 2
TOKEN_KIND_NAMES = {THOUGHT_TOKEN: "thought", ACTION_TOKEN: "action", OTHER_RESPONSE_TOKEN: "other"}


def _action_range(step: Step) -> tuple[int, int] | None:
    """Token range of the step's ACTION span inside its generated range, or None."""
    action = step.span(SpanKind.ACTION)
    if action is None or not action.has_tokens or step.response_token_start is None:
        return None
    start = max(action.token_start, step.response_token_start)
    end = min(action.token_end, step.response_token_end)
    return (start, end) if start < end else None


def step_target_ranges(traj: Trajectory, span_mode: str) -> list[tuple[int, int, int]]:
    """``(step_id, token_start, token_end)`` of every target range, in step order."""
    if span_mode not in SPAN_MODES:
        raise ValueError(f"span_mode must be one of {SPAN_MODES}, got {span_mode!r}")
    rescorable = [s for s in traj.steps if s.response_token_start is not None]
    if span_mode == "clean_step":
        return [(s.index, s.response_token_start, s.response_token_end) for s in rescorable]
    if span_mode == "whole_response":
        return [(0, s.response_token_start, s.response_token_end) for s in rescorable]
    steps = traj.steps[-1:] if span_mode == "final_answer_only" else traj.steps
    ranges = [(s.index, _action_range(s)) for s in steps]
    return [(index, *token_range) for index, token_range in ranges if token_range is not None]


def target_mask_and_step_ids(traj: Trajectory, span_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Target mask [T] bool and step id [T] long (-1 outside targets) of one trajectory."""
    length = len(traj.token_ids)
    target_mask = torch.zeros(length, dtype=torch.bool)  # [T]
    step_ids = torch.full((length,), -1, dtype=torch.long)  # [T]
    for step_id, start, end in step_target_ranges(traj, span_mode):
        target_mask[start:end] = True
        step_ids[start:end] = step_id
    generated = torch.tensor(traj.trainable_mask, dtype=torch.bool)  # [T]
    target_mask &= generated
    step_ids[~target_mask] = -1
    return target_mask, step_ids


def on_step_targets(step_values: torch.Tensor, step_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """[B, T]: step k's value (``step_values`` [B, S]) on the target tokens of step k, 0 off targets.

    step_ids [B, T] long (-1 off targets), target_mask [B, T] bool.
    """
    token_values = step_values.gather(1, step_ids.clamp(min=0, max=step_values.shape[1] - 1))  # [B, T]
    return torch.where(target_mask, token_values, torch.zeros(token_values.shape))


def token_kinds(traj: Trajectory) -> torch.Tensor:
    """[T] long: THOUGHT_TOKEN / ACTION_TOKEN inside those spans, OTHER_RESPONSE_TOKEN for the
    rest of a step's generated range (tags, end-of-turn), NOT_GENERATED elsewhere."""
    kinds = torch.full((len(traj.token_ids),), NOT_GENERATED, dtype=torch.long)  # [T]
    for step in traj.steps:
        if step.response_token_start is None:
            continue
        kinds[step.response_token_start:step.response_token_end] = OTHER_RESPONSE_TOKEN
        for span in step.spans:
            if span.has_tokens and span.kind in (SpanKind.THOUGHT, SpanKind.ACTION):
                start = max(span.token_start, step.response_token_start)
                end = min(span.token_end, step.response_token_end)
                kinds[start:end] = THOUGHT_TOKEN if span.kind == SpanKind.THOUGHT else ACTION_TOKEN
    return kinds
