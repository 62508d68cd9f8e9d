"""The PPO update of one iteration: epochs over minibatches (one optimizer step each), micro-batches
accumulated inside a minibatch, the PPO-clip loss of :mod:`stepopsd.algo.loss` on each.

Rows are sequences a rollout generated from (a whole trajectory in full mode, one step's prompt +
response in window mode). Rows without a gradient are not forwarded; every micro-batch still runs a
backward, so DDP's ranks make the same calls. With ``optim.shared_prefix`` (on one process) a
minibatch's rows are ordered by group, then length, and the columns every row of a micro-batch shares
(its group's prompt: half of an ErrandChain window row) are forwarded once
(:func:`stepopsd.logprobs.shared_prefix_logits`). The loop that calls it: :mod:`stepopsd.train`.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from stepopsd.algo.loss import loss_denominator, policy_loss, token_entropy, token_weights
from stepopsd.algo.teacher import Teacher
from stepopsd.batch import PolicyBatch
from stepopsd.config import OptimConfig, TrainConfig
from stepopsd.logprobs import (
    MIN_SHARED_PREFIX, common_prefix_columns, right_padded_logits, shared_prefix_logits, tempered, token_logprobs,
)
from stepopsd.tasks import seed_for


class NonFiniteError(RuntimeError):
    """The loss, gradient norm or weights became NaN or infinite; the run stopped before saving them."""


@dataclass
class TrainState:
    """Counters restored on resume (saved as JSON in every checkpoint: :mod:`stepopsd.checkpoint`)."""

    iteration: int = 0  # iterations completed
    optimizer_step: int = 0
    teacher_snapshot_step: int = 0  # optimizer step of the stale teacher's last refresh

    def state_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Set every counter from ``state`` (read back from JSON); ValueError unless it holds exactly these integers."""
        names = {field.name for field in dataclasses.fields(self)}
        if not isinstance(state, dict) or set(state) != names or not all(type(v) is int for v in state.values()):
            raise ValueError(f"the counters {state!r} are not the integers {sorted(names)}")
        for key, value in state.items():
            setattr(self, key, value)


def ppo_update(config: TrainConfig, model, optimizer, teacher: Teacher, batch: PolicyBatch, accelerator,
            state: TrainState, iteration: int) -> dict[str, float]:
    """PPO epochs: each epoch shuffles the rows into ``minibatches`` optimizer steps.

    The stale teacher refreshes after the optimizer step at which it falls due (its snapshot
    serves the next iteration's rescoring; this iteration's KL reference was taken before).
    """
    optim = config.optim
    temperature = config.rollout.sampling.temperature
    ref_logprobs = row_logprobs(teacher.model, batch, temperature) if optim.kl_coef > 0 else None  # [R, L]
    weights = token_weights(batch.trainable_mask, batch.row_trajectory, optim.loss_aggregation,
                            scale_tokens=config.rollout.sampling.max_new_tokens)  # [R, L]
    live = rows_with_gradient(batch, optim)  # [R]
    row_lengths = batch.attention_mask.sum(dim=1)  # [R]
    share_prefix = optim.shared_prefix and accelerator.num_processes == 1
    generator = torch.Generator().manual_seed(seed_for(config.run.seed, iteration, accelerator.process_index))
    model.train()
    stat_sums: dict[str, float] = {}  # each loss statistic times the rows it was taken over
    grad_norm_sum = 0.0
    steps = forwarded = 0
    for _ in range(optim.ppo_epochs):
        order = torch.randperm(batch.num_rows, generator=generator)
        for rows in order.chunk(max(1, min(optim.minibatches, batch.num_rows))):
            rows = rows[torch.argsort(row_lengths[rows], stable=True)]  # like lengths share a micro-batch: little padding
            if share_prefix:  # and a group's rows one, whose prompt's prefix is then forwarded once
                rows = rows[torch.argsort(batch.row_group[rows], stable=True)]
            num_tokens = loss_denominator(weights[rows], batch.trainable_mask[rows], optim.loss_aggregation)
            micro_batches = rows.split(optim.micro_batch_rows)
            minibatch_loss = 0.0
            for index, micro in enumerate(micro_batches):
                sync = index == len(micro_batches) - 1
                kept = rows_to_forward(micro, live)
                with (accelerator.no_sync(model) if not sync else nullcontext()):
                    loss, stats = micro_loss(config, model, batch, kept, ref_logprobs, weights, temperature, num_tokens,
                                             share_prefix)
                    accelerator.backward(loss)
                minibatch_loss += float(loss.detach())
                forwarded += len(kept)
                for key, value in stats.items():
                    stat_sums[key] = stat_sums.get(key, 0.0) + value * len(kept)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), optim.max_grad_norm)
            if not math.isfinite(float(grad_norm)):  # all-reduced: every rank stops here together
                raise NonFiniteError(
                    f"iteration {iteration}, optimizer step {state.optimizer_step + 1}: the gradient norm is "
                    f"{float(grad_norm)} (this rank's loss {minibatch_loss}); stopped before applying it (checkpoints "
                    "on disk stay as they were). Lower optim.lr or the loss coefficients (optim.kl_coef, "
                    "optim.entropy_coef) and start again (--overwrite or a new --out)")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.optimizer_step += 1
            steps += 1
            teacher.sync(state.optimizer_step)
            state.teacher_snapshot_step = teacher.snapshot_step
            grad_norm_sum += float(grad_norm)
    return {**{key: value / max(forwarded, 1) for key, value in stat_sums.items()},
            "update/grad_norm": grad_norm_sum / max(steps, 1),
            "update/optimizer_step": float(state.optimizer_step),
            "update/rows_forwarded_frac": forwarded / max(batch.num_rows * optim.ppo_epochs, 1)}


def rows_with_gradient(batch: PolicyBatch, optim: OptimConfig) -> torch.Tensor:
    """[R] bool: the rows whose loss has a gradient. Under the PPO-clip term alone a row whose
    advantages are all 0 (every row of a uniform group under GRPO) has none, so it need not be
    forwarded; with a KL or entropy term every row has."""
    if optim.kl_coef > 0 or optim.entropy_coef > 0:
        return torch.ones(batch.num_rows, dtype=torch.bool)
    return batch.advantages.ne(0).any(dim=1)


def rows_to_forward(micro: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """The rows of a micro-batch to forward: its live ones, or its first when none is (every
    micro-batch still runs a backward, so DDP's ranks make the same calls and sync together)."""
    kept = micro[live[micro]]
    return kept if len(kept) else micro[:1]


def micro_loss(config: TrainConfig, model, batch: PolicyBatch, rows: torch.Tensor, ref_logprobs, weights: torch.Tensor,
                temperature: float, num_tokens: float, share_prefix: bool = False):
    device = next(model.parameters()).device
    micro = batch.select(rows)  # window-mode rows differ in length: drop the padding beyond the longest
    width = micro.input_ids.shape[1]
    # Columns before the first trainable token carry no loss: logits only from the one before it on
    # (an LLM's [r, L', V] logits over a long prompt are most of a micro-batch's memory)
    start = first_scored_column(micro.trainable_mask)
    prefix = min(common_prefix_columns(micro.input_ids), start) if share_prefix and len(rows) > 1 else 0
    if prefix >= MIN_SHARED_PREFIX:
        logits = shared_prefix_logits(model, micro.input_ids, prefix, logits_to_keep=width - start)  # [r, L' - start, V]
    else:
        logits = right_padded_logits(model, micro.input_ids, logits_to_keep=width - start)  # [r, L' - start, V]
    scored = slice(start, width)
    return policy_loss(
        token_logprobs(logits, micro.input_ids[:, scored].to(device), temperature),
        micro.behaviour_logprobs[:, scored].to(device),
        micro.advantages[:, scored].to(device),
        micro.trainable_mask[:, scored].to(device),
        clip_ratio=config.optim.clip_ratio,
        clip_ratio_c=config.optim.clip_ratio_c,
        log_ratio_clamp=config.optim.log_ratio_clamp,
        kl_value_cap=config.optim.kl_value_cap,
        ref_logprobs=None if ref_logprobs is None else ref_logprobs[rows, scored].to(device),
        kl_coef=config.optim.kl_coef,
        entropy=token_entropy(tempered(logits, temperature)) if config.optim.entropy_coef > 0 else None,
        entropy_coef=config.optim.entropy_coef,
        num_tokens=num_tokens,
        weights=weights[rows, scored].to(device),
    )


def first_scored_column(trainable_mask: torch.Tensor) -> int:
    """The column whose logits predict the first trainable token of any row (0 when none is trainable)."""
    columns = trainable_mask.any(dim=0).nonzero()
    return max(int(columns[0]) - 1, 0) if len(columns) else 0


@torch.no_grad()
def row_logprobs(model, batch: PolicyBatch, temperature: float, rows_per_pass: int = 8) -> torch.Tensor:
    """Log-probs [R, L] of every row's tokens under ``model`` (the KL reference)."""
    logprobs = torch.zeros(batch.input_ids.shape)  # [R, L]
    for rows in torch.arange(batch.num_rows).split(rows_per_pass):
        chunk = batch.select(rows)  # as in the policy's micro-batches: no forward over padding
        logits = right_padded_logits(model, chunk.input_ids)  # [r, L', V]
        logprobs[rows, :chunk.input_ids.shape[1]] = token_logprobs(logits, chunk.input_ids.to(logits.device),
                                                                   temperature).cpu()
    return logprobs
