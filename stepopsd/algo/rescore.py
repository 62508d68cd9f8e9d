"""Rescoring (docs/algorithm.md step 5, Eq. 2): teacher log-probs under the hindsight context -> Delta.

A :class:`ScoreWindow` says what the teacher reads and scores: context
``token_ids[context_start:insert_at]``, then the hindsight ids, then the scored tokens
``token_ids[insert_at:end]``. StepOPSD uses one window per step (``insert_at`` = the step's
``response_token_start``); the monolithic baselines (rlsd, opd) one window per context.

How the efficient path shares work (:func:`teacher_logprobs`):

* Windows with the same ``context_start`` (full-conversation mode: every step) share a prefix.
  ONE forward over the prefix builds a KV cache; then ONE batched forward scores all windows,
  one row each (hindsight + scored tokens, right-padded), on a copy of that cache whose
  positions at or after the row's ``insert_at`` are masked out by the 2D attention mask, with
  explicit ``position_ids``. With no hindsight the prefix forward's own logits are the answer.
* Windows with a context of their own (sliding-window mode) are rows of right-padded batches
  (no attention mask: under causal attention no real token reaches the padding after it). The ids
  every row starts with (the trajectory's prompt) are forwarded once and the rows run on its cache.
* ``max_rows_per_pass`` bounds the rows of one forward (memory); logits are kept only for the
  scored positions (``logits_to_keep``).

Cost: one forward over the trajectory's tokens, plus the hindsight and scored tokens of each
window (the scored tokens are run twice: once as student context, once after the hindsight).
:func:`teacher_logprobs_naive` is the reference: one full forward per window.

Any transformers causal LM works: ``model(input_ids=, attention_mask=, position_ids=,
cache=, use_cache=, logits_to_keep=).logits`` with a ``DynamicCache`` (``past_key_values=`` for
models whose forward predates that name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from stepopsd.algo.hindsight import hindsight_text
from stepopsd.algo.segment import target_mask_and_step_ids, token_kinds
from stepopsd.config import AlgorithmConfig
from stepopsd.logprobs import (
    MIN_SHARED_PREFIX, cache_keyword, common_prefix_columns, expanded_cache, logits_after_prefix, prefix_cache,
    right_padded_logits, token_logprobs,
)
from stepopsd.trajectory import Trajectory, group_trajectories

Tokenize = Callable[[str], Sequence[int]]


@dataclass(frozen=True, slots=True)
class ScoreWindow:
    """Teacher reads token_ids[context_start:insert_at] + hindsight + token_ids[insert_at:end]."""

    context_start: int
    insert_at: int
    end: int


def step_windows(traj: Trajectory, target_mask: torch.Tensor) -> list[ScoreWindow]:
    """One window per step whose generated range holds a target token (per-step hindsight)."""
    return [
        ScoreWindow(step.context_start, step.response_token_start, step.response_token_end)
        for step in traj.steps
        if step.response_token_start is not None
        and bool(target_mask[step.response_token_start:step.response_token_end].any())
    ]


def context_windows(traj: Trajectory, target_mask: torch.Tensor) -> list[ScoreWindow]:
    """One window per distinct context: hindsight once, before the first targeted step."""
    merged: dict[int, ScoreWindow] = {}
    for window in step_windows(traj, target_mask):
        first = merged.setdefault(window.context_start, window)
        merged[window.context_start] = ScoreWindow(window.context_start, first.insert_at, window.end)
    return list(merged.values())


def logprob_gap(teacher_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2: teacher minus behaviour log-prob where ``mask``, 0 elsewhere; [T] -> [T], detached."""
    gap = teacher_logprobs.detach().float() - behaviour_logprobs.detach().float()
    return torch.where(mask, gap, torch.zeros_like(gap))


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _scored_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits [R, L+1, V] at positions p-1..p+L-1, ids [R, L+1] at the same positions -> [R, L]."""
    return token_logprobs(logits, ids, temperature)[:, 1:]


@torch.no_grad()
def _score_windows_as_rows(model, token_ids: torch.Tensor, windows: Sequence[ScoreWindow], hindsight: torch.Tensor,
                           max_rows_per_pass: int, temperature: float) -> list[torch.Tensor]:
    """Independent windows as rows of right-padded batches (``max_rows_per_pass`` rows each) -> log-probs of
    each window's scored tokens. The ids every row starts with (a window-mode trajectory's prompt) are
    forwarded once, when there are at least ``MIN_SHARED_PREFIX`` of them before the first scored token."""
    rows = [torch.cat([token_ids[w.context_start:w.insert_at], hindsight, token_ids[w.insert_at:w.end]]) for w in windows]
    firsts = [w.insert_at - w.context_start + len(hindsight) for w in windows]  # row index of the first scored token
    prefix = min(common_prefix_columns(right_pad(rows, max(len(row) for row in rows), 0)), min(firsts) - 1)
    prefix = prefix if prefix >= MIN_SHARED_PREFIX else 0
    cache = prefix_cache(model, rows[0][:prefix]) if prefix else None
    device = _device(model)
    scores: list[torch.Tensor] = []
    for chunk_start in range(0, len(rows), max_rows_per_pass):
        chunk = slice(chunk_start, chunk_start + max_rows_per_pass)
        chunk_rows, chunk_firsts = [row[prefix:] for row in rows[chunk]], [first - prefix for first in firsts[chunk]]
        width = max(len(row) for row in chunk_rows)
        input_ids = right_pad(chunk_rows, width, 0)  # [R, W]
        keep_from = min(chunk_firsts) - 1  # logits needed from here on (>= 0)
        logits = (right_padded_logits(model, input_ids, torch.arange(keep_from, width, device=device)) if cache is None
                  else logits_after_prefix(model, cache, prefix, input_ids, width - keep_from))  # [R, W - keep_from, V]
        scored = _scored_logprobs(logits, input_ids[:, keep_from:].to(device), temperature).cpu()  # [R, W - keep_from - 1]
        scores += [scored[r, first - keep_from - 1:len(row) - keep_from - 1]
                   for r, (row, first) in enumerate(zip(chunk_rows, chunk_firsts))]
    return scores


@torch.no_grad()
def _score_shared_prefix(
    model, token_ids: torch.Tensor, windows: Sequence[ScoreWindow], hindsight: torch.Tensor, max_rows_per_pass: int,
    temperature: float,
) -> list[torch.Tensor]:
    """Windows with one common ``context_start``: one prefix forward, then batched hindsight rows on its cache."""
    start, device = windows[0].context_start, _device(model)
    if len(hindsight) == 0:  # teacher context == student context: the prefix forward scores everything
        prefix = token_ids[start:max(w.end for w in windows)]
        keep_from = min(w.insert_at for w in windows) - start - 1
        logits = model(input_ids=prefix[None].to(device), use_cache=False,
                       logits_to_keep=torch.arange(keep_from, len(prefix), device=device)).logits
        scored = _scored_logprobs(logits, prefix[None, keep_from:].to(device), temperature)[0].cpu()  # [len - keep_from - 1]
        return [scored[w.insert_at - start - keep_from - 1:w.end - start - keep_from - 1] for w in windows]
    prefix = token_ids[start:max(w.insert_at for w in windows)]
    keyword = cache_keyword(model)
    cache = prefix_cache(model, prefix)
    results: list[torch.Tensor] = []
    for chunk_start in range(0, len(windows), max_rows_per_pass):
        chunk = windows[chunk_start:chunk_start + max_rows_per_pass]
        results += _score_on_cache(model, keyword, cache, token_ids, chunk, hindsight, temperature)
    return results


def _score_on_cache(model, keyword: str, cache, token_ids, windows, hindsight, temperature: float) -> list[torch.Tensor]:
    """Rows hindsight + token_ids[insert_at:end] after the cached prefix, each seeing it up to its insert_at."""
    start, device, hindsight_length = windows[0].context_start, _device(model), len(hindsight)
    prefix_length = max(w.insert_at for w in windows) - start  # only the part some row of this chunk sees
    rows = [torch.cat([hindsight, token_ids[w.insert_at:w.end]]) for w in windows]
    width = max(len(row) for row in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)  # [R, W]
    attention_mask = torch.zeros(len(rows), prefix_length + width, dtype=torch.long)  # [R, P + W]
    position_ids = torch.zeros(len(rows), width, dtype=torch.long)  # [R, W]
    for r, (row, window) in enumerate(zip(rows, windows)):
        visible_prefix = window.insert_at - start
        input_ids[r, :len(row)] = row
        attention_mask[r, :visible_prefix] = 1
        attention_mask[r, prefix_length:prefix_length + len(row)] = 1
        position_ids[r] = visible_prefix + torch.arange(width)
    logits = model(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device), use_cache=True,
        logits_to_keep=torch.arange(hindsight_length - 1, width, device=device),
        **{keyword: expanded_cache(cache, len(rows), prefix_length)},
    ).logits  # [R, W - H + 1, V]
    scored = _scored_logprobs(logits, input_ids[:, hindsight_length - 1:].to(device), temperature).cpu()  # [R, W - H]
    return [scored[r, :len(row) - hindsight_length] for r, row in enumerate(rows)]


def _scatter(length: int, windows: Sequence[ScoreWindow], scored: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logprobs = torch.zeros(length, dtype=torch.float32)  # [T]
    scored_mask = torch.zeros(length, dtype=torch.bool)  # [T]
    for window, values in zip(windows, scored):
        logprobs[window.insert_at:window.end] = values.float()
        scored_mask[window.insert_at:window.end] = True
    return logprobs, scored_mask


def _check_windows(windows: Sequence[ScoreWindow], hindsight: torch.Tensor) -> None:
    for w in windows:
        assert w.context_start <= w.insert_at <= w.end, w
        if w.insert_at == w.context_start and len(hindsight) == 0:
            raise ValueError(f"window {w} has neither context nor hindsight: its first token cannot be scored")


@torch.no_grad()
def teacher_logprobs(
    model: torch.nn.Module,
    token_ids: Sequence[int] | torch.Tensor,
    windows: Sequence[ScoreWindow],
    hindsight_ids: Sequence[int] | torch.Tensor = (),
    *,
    max_rows_per_pass: int = 16,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher log-prob of every scored token (shared-prefix batched path).

    ``temperature``: the rollout's sampling temperature; the teacher's logits are divided by it
    exactly as the behaviour log-probs were, so Delta compares one distribution family.

    Returns (logprobs [T] float32, 0 where not scored; scored_mask [T] bool), on CPU.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).cpu()  # [T]
    hindsight = torch.as_tensor(hindsight_ids, dtype=torch.long).cpu()  # [H]
    _check_windows(windows, hindsight)
    by_context: dict[int, list[ScoreWindow]] = {}
    for window in windows:
        by_context.setdefault(window.context_start, []).append(window)
    shared = [group for group in by_context.values() if len(group) > 1]
    singles = [group[0] for group in by_context.values() if len(group) == 1]
    done_windows: list[ScoreWindow] = []
    done_scores: list[torch.Tensor] = []
    for group in shared:
        done_windows += group
        done_scores += _score_shared_prefix(model, ids, group, hindsight, max_rows_per_pass, temperature)
    if singles:
        done_windows += singles
        done_scores += _score_windows_as_rows(model, ids, singles, hindsight, max_rows_per_pass, temperature)
    return _scatter(len(ids), done_windows, done_scores)


@torch.no_grad()
def teacher_logprobs_naive(
    model: torch.nn.Module,
    token_ids: Sequence[int] | torch.Tensor,
    windows: Sequence[ScoreWindow],
    hindsight_ids: Sequence[int] | torch.Tensor = (),
    *,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`teacher_logprobs`: one full forward per window, nothing shared."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).cpu()  # [T]
    hindsight = torch.as_tensor(hindsight_ids, dtype=torch.long).cpu()  # [H]
    _check_windows(windows, hindsight)
    scores = []
    for w in windows:
        row = torch.cat([ids[w.context_start:w.insert_at], hindsight, ids[w.insert_at:w.end]])[None]  # [1, L]
        logits = model(input_ids=row.to(_device(model)), use_cache=False).logits  # [1, L, V]
        first = w.insert_at - w.context_start + len(hindsight)
        scores.append(token_logprobs(logits, row.to(logits.device), temperature)[0, first:].cpu())
    return _scatter(len(ids), windows, scores)


# --------------------------------------------------------------------------- the rescoring stage


def right_pad(rows: Sequence[torch.Tensor], width: int, fill) -> torch.Tensor:
    """Rows of different lengths -> one [B, width] tensor, ``fill`` after each row's end."""
    out = torch.full((len(rows), width), fill, dtype=rows[0].dtype if rows else torch.float32)  # [B, T]
    for b, row in enumerate(rows):
        out[b, :len(row)] = row
    return out


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
    tokenize: Tokenize, config: AlgorithmConfig, span_mode: str, temperature: float = 1.0,
) -> TrajectoryGap:
    """Hindsight block from ``group`` -> teacher log-probs on the scored windows -> gap to the behaviour log-probs."""
    if not traj.behaviour_logprobs:
        raise ValueError(f"trajectory {traj.trajectory_id!r} has no behaviour_logprobs; Eq. 2 needs them")
    text = hindsight_text(traj, group, config.hindsight_mode, hindsight_for=config.hindsight_for,
                          correctness_line=config.correctness_line, peer_token_budget=config.peer_token_budget,
                          count_tokens=lambda t: len(tokenize(t)), peer_view=config.peer_view)
    hindsight_ids = list(tokenize(text)) if text else []
    windows = (context_windows if span_mode == "whole_response" else step_windows)(traj, target_mask)
    logprobs, scored = teacher_logprobs(teacher, traj.token_ids, windows, hindsight_ids,
                                        max_rows_per_pass=config.max_rows_per_pass, temperature=temperature)  # [T]
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


@dataclass(frozen=True)
class Rescored:
    """Eq. 2 gaps of a batch on its targets (right-padded to T) and the per-trajectory details."""

    delta: torch.Tensor  # [B, T], 0 outside targets and for trajectories not rescored
    target_mask: torch.Tensor  # [B, T] bool
    step_ids: torch.Tensor  # [B, T] long, -1 outside targets
    gaps: list[TrajectoryGap]  # the rescored trajectories only


def rescore_batch(
    trajectories: Sequence[Trajectory], selected: Sequence[bool], width: int, teacher: torch.nn.Module | None,
    tokenize: Tokenize | None, config: AlgorithmConfig, span_mode: str, temperature: float = 1.0,
) -> Rescored:
    """Segment every trajectory; rescore the ``selected`` ones against their own group; pad to ``width``."""
    if teacher is None:
        raise ValueError(f"algorithm {config.name!r} needs a teacher model (pass teacher=...)")
    groups = {group.group_id: group.trajectories for group in group_trajectories(trajectories)}
    deltas, targets, step_ids, gaps = [], [], [], []
    for traj, rescore in zip(trajectories, selected):
        target_mask, traj_step_ids = target_mask_and_step_ids(traj, span_mode)  # [T], [T]
        delta = torch.zeros(len(traj.token_ids))  # [T]
        if rescore and target_mask.any():
            gaps.append(rescore_trajectory(traj, groups[traj.group_id], target_mask, teacher,
                                           tokenize or _missing_tokenizer, config, span_mode, temperature))
            delta = gaps[-1].delta
        deltas.append(delta), targets.append(target_mask), step_ids.append(traj_step_ids)
    return Rescored(right_pad(deltas, width, 0.0), right_pad(targets, width, False), right_pad(step_ids, width, -1), gaps)


def _missing_tokenizer(text: str) -> Sequence[int]:
    raise ValueError("the hindsight block needs a tokenize function (pass tokenize=...)")
