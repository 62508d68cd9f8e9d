"""Trajectories + per-token advantages -> padded tensors for the policy loss.

One row per sequence the policy generated from:

* full-conversation mode (every step has ``context_start == 0``): one row per trajectory,
  its whole ``token_ids``;
* sliding-window mode (some step has ``context_start > 0``): one row per step,
  ``token_ids[context_start:response_token_end]``, trainable only on that step's generated ids.

Rows are RIGHT-padded (tokens first, then ``pad_id`` with attention 0), so the default
``position_ids = arange`` of a causal LM are right and every tensor is aligned with
``input_ids``: column t of ``behaviour_logprobs`` / ``advantages`` belongs to token t, as
:func:`stepopsd.logprobs.token_logprobs` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stepopsd.trajectory import Trajectory


@dataclass(frozen=True)
class PolicyBatch:
    """Padded rows for one loss computation. R rows, L columns."""

    input_ids: torch.Tensor  # [R, L] long
    attention_mask: torch.Tensor  # [R, L] long, 1 on real tokens
    trainable_mask: torch.Tensor  # [R, L] bool, True on the generated ids this row trains
    behaviour_logprobs: torch.Tensor  # [R, L] float, sampling policy's log-prob (0 elsewhere)
    advantages: torch.Tensor  # [R, L] float, per-token advantage (0 where not trainable)
    row_trajectory: torch.Tensor  # [R] long, index of the row's trajectory in the input list
    row_offset: torch.Tensor  # [R] long, index in token_ids of the row's first token
    row_group: torch.Tensor  # [R] long, the group_id of the row's trajectory (a group's rows share their prompt)

    @property
    def num_rows(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor) -> PolicyBatch:
        """The given rows, cut to the longest of them (rows are right-padded: only padding is cut)."""
        width = int(self.attention_mask[rows].sum(dim=1).max()) if len(rows) else 0
        return PolicyBatch(
            input_ids=self.input_ids[rows, :width], attention_mask=self.attention_mask[rows, :width],
            trainable_mask=self.trainable_mask[rows, :width], behaviour_logprobs=self.behaviour_logprobs[rows, :width],
            advantages=self.advantages[rows, :width], row_trajectory=self.row_trajectory[rows],
            row_offset=self.row_offset[rows], row_group=self.row_group[rows],
        )


def is_window_mode(traj: Trajectory) -> bool:
    """True for a sliding-window rollout (a step has its own prompt)."""
    return any(step.context_start > 0 for step in traj.steps)


def row_ranges(traj: Trajectory) -> list[tuple[int, int, int, int]]:
    """``(row_start, row_end, train_start, train_end)`` token ranges of each row of ``traj``."""
    length = len(traj.token_ids)
    if not is_window_mode(traj):
        return [(0, length, 0, length)]
    return [
        (step.context_start, step.response_token_end, step.response_token_start, step.response_token_end)
        for step in traj.steps
        if step.response_token_start is not None
    ]


def build_batch(
    trajectories: Sequence[Trajectory], advantages: Sequence[torch.Tensor], *, pad_id: int = 0
) -> PolicyBatch:
    """Rows of all trajectories; ``advantages[i]`` is [T_i] aligned with ``trajectories[i].token_ids``."""
    if len(advantages) != len(trajectories):
        raise ValueError(f"got {len(advantages)} advantage tensors for {len(trajectories)} trajectories")
    rows = [(i, *ranges) for i, traj in enumerate(trajectories) for ranges in row_ranges(traj)]
    width = max((end - start for _, start, end, _, _ in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [R, L]
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)  # [R, L]
    trainable = torch.zeros(len(rows), width, dtype=torch.bool)  # [R, L]
    behaviour = torch.zeros(len(rows), width)  # [R, L]
    row_advantages = torch.zeros(len(rows), width)  # [R, L]
    for r, (i, start, end, train_start, train_end) in enumerate(rows):
        traj, count = trajectories[i], end - start
        if len(advantages[i]) != len(traj.token_ids):
            raise ValueError(f"trajectory {traj.trajectory_id!r}: {len(advantages[i])} advantages for "
                             f"{len(traj.token_ids)} tokens; pass one per token id")
        if not traj.behaviour_logprobs:
            raise ValueError(f"trajectory {traj.trajectory_id!r} has no behaviour_logprobs; the PPO ratio needs them")
        in_row = torch.zeros(len(traj.token_ids), dtype=torch.bool)  # [T]
        in_row[train_start:train_end] = True
        train = torch.tensor(traj.trainable_mask, dtype=torch.bool) & in_row  # [T]
        input_ids[r, :count] = torch.tensor(traj.token_ids[start:end])
        attention_mask[r, :count] = 1
        trainable[r, :count] = train[start:end]
        behaviour[r, :count] = torch.tensor(traj.behaviour_logprobs[start:end]) * train[start:end]
        row_advantages[r, :count] = advantages[i][start:end].float() * train[start:end]
    return PolicyBatch(
        input_ids=input_ids, attention_mask=attention_mask, trainable_mask=trainable,
        behaviour_logprobs=behaviour, advantages=row_advantages,
        row_trajectory=torch.tensor([row[0] for row in rows], dtype=torch.long),
        row_offset=torch.tensor([row[1] for row in rows], dtype=torch.long),
        row_group=torch.tensor([trajectories[row[0]].group_id for row in rows], dtype=torch.long),
    )
