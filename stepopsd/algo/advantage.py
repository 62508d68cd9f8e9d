"""The advantage stage the trainer calls once per iteration: trajectories -> per-token advantages.

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
opd         A_i + opd_beta * Delta_t on the whole response (additive; may flip signs); every
            trajectory is rescored, uniform groups included (there A_i = 0 and Delta is the signal)
oracle      stepopsd's shaping with Delta taken from the env's mistake labels (``oracle_sides``: on
            mistakes, or two-sided; at full strength, the ceiling of sign-preserving step credit)
gigpo       A_episode + omega * A_step on each step's generated tokens, A_step from anchor states (no
            teacher); A_episode per ``gigpo_episode_norm``: trajectory (= A_i) or step_rows (verl-agent)
oracle_signed  A_i + oracle_step_reward * (+1 harmless decisive step, -1 mistake) on each step's generated
            tokens (not sign-preserving: the ceiling of any step credit)
peer_diff   stepopsd's shaping with Delta = -peer_diff_gap on the steps whose action differs from the
            teacher's peer's at the same index (``hindsight_for``): the peer without the teacher, no labels
==========  ================================================================================

stepopsd and rlsd rescore only trajectories whose GRPO advantage is not 0 (all-success /
all-fail groups give 0 whatever Delta is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from stepopsd.algo.diagnostics import gap_stats, group_stats, safe_mean, shaping_stats
from stepopsd.algo.gigpo import EPISODE_NORMS, gigpo_step_table
from stepopsd.algo.oracle import oracle_delta, step_sign_table
from stepopsd.algo.peer_diff import peer_diff_delta
from stepopsd.algo.rescore import Tokenize, rescore_batch, right_pad
from stepopsd.algo.segment import target_mask_and_step_ids
from stepopsd.algo.shaping import additive_advantages, grpo_advantages, lambda_at, shape_advantages_detailed
from stepopsd.config import AlgorithmConfig
from stepopsd.trajectory import Trajectory, check_vocabulary


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
    temperature: float  # the rollout's sampling temperature (the teacher scores the same tempered distribution)


MethodOutput = tuple[torch.Tensor, torch.Tensor, dict[str, float]]  # advantages [B, T], delta [B, T], stats


def _grpo(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """Plain GRPO: the outcome advantage on every token (no teacher)."""
    advantages = inputs.outcome_advantages[:, None].expand_as(inputs.trainable_mask).clone()  # [B, T]
    return advantages, torch.zeros_like(advantages), {}


def _rescored(inputs: CreditInputs, config: AlgorithmConfig, span_mode: str, *, every_trajectory: bool = False):
    selected = [every_trajectory or a != 0.0 for a in inputs.outcome_advantages.tolist()]
    rescored = rescore_batch(inputs.trajectories, selected, inputs.trainable_mask.shape[1], inputs.teacher,
                             inputs.tokenize, config, span_mode, inputs.temperature)
    return rescored, gap_stats(rescored.gaps, inputs.trajectories, config.hindsight_mode, config.hindsight_for)


def _shaped(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float, delta: torch.Tensor,
            target_mask: torch.Tensor, step_ids: torch.Tensor, weight_fn: str, step_budget: str) -> MethodOutput:
    """Eq. 3-4 and the step budget on a given Delta."""
    shaped = shape_advantages_detailed(
        inputs.outcome_advantages, delta, target_mask, step_ids, alpha_clip=config.alpha_clip, lambda_mix=lambda_mix,
        weight_fn=weight_fn, step_budget=step_budget, budget_clip=config.budget_clip,
    )
    stats = shaping_stats(shaped, inputs.outcome_advantages, target_mask, config.budget_clip, step_budget)
    return shaped.advantages, delta, stats


def _stepopsd(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """StepOPSD: per-step hindsight, Eq. 3-4 on the configured spans, per-step budget."""
    rescored, stats = _rescored(inputs, config, config.span_mode)
    advantages, delta, shape_stats = _shaped(inputs, config, lambda_mix, rescored.delta, rescored.target_mask,
                                             rescored.step_ids, config.weight_fn, config.step_budget)
    return advantages, delta, {**stats, **shape_stats}


def _rlsd(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """RLSD: exp weight, the whole response one span, hindsight once per context, no budget."""
    rescored, stats = _rescored(inputs, config, "whole_response")
    advantages, delta, shape_stats = _shaped(inputs, config, lambda_mix, rescored.delta, rescored.target_mask,
                                             rescored.step_ids, "exp", "none")
    return advantages, delta, {**stats, **shape_stats}


def _opd(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """OPD: A + beta * Delta on the whole response treated as one string, every trajectory rescored."""
    rescored, stats = _rescored(inputs, config, "whole_response", every_trajectory=True)
    outcome = inputs.outcome_advantages[:, None].expand_as(rescored.delta)  # [B, T]
    return additive_advantages(outcome, rescored.delta, rescored.target_mask, config.opd_beta), rescored.delta, stats


def _segmented(inputs: CreditInputs, span_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Target mask [B, T] bool and step ids [B, T] long of the batch, without rescoring."""
    segmented = [target_mask_and_step_ids(traj, span_mode) for traj in inputs.trajectories]
    width = inputs.trainable_mask.shape[1]
    return (right_pad([mask for mask, _ in segmented], width, False),  # [B, T]
            right_pad([ids for _, ids in segmented], width, -1))  # [B, T]


def _oracle(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """StepOPSD's shaping with Delta from the env's mistake labels instead of a teacher."""
    target_mask, step_ids = _segmented(inputs, config.span_mode)
    delta = oracle_delta(inputs.trajectories, step_ids, target_mask, config.oracle_gap, config.oracle_label,
                         two_sided=config.oracle_sides == "two_sided")  # [B, T]
    return _shaped(inputs, config, lambda_mix, delta, target_mask, step_ids, config.weight_fn, config.step_budget)


def _peer_diff(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """StepOPSD's shaping with Delta = -gap on the steps whose action differs from the peer's (no teacher, no labels)."""
    target_mask, step_ids = _segmented(inputs, config.span_mode)
    delta = peer_diff_delta(inputs.trajectories, step_ids, target_mask, config.peer_diff_gap,
                            config.hindsight_for)  # [B, T]
    return _shaped(inputs, config, lambda_mix, delta, target_mask, step_ids, config.weight_fn, config.step_budget)


def _gigpo(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """GiGPO: the episode advantage plus omega times the anchor-state step advantage of each step."""
    step_table = gigpo_step_table(inputs.trajectories, config.gigpo_gamma, config.normalize_std)
    episode = EPISODE_NORMS[config.gigpo_episode_norm](
        torch.tensor([traj.reward for traj in inputs.trajectories], dtype=torch.float32),
        torch.tensor([traj.group_id for traj in inputs.trajectories], dtype=torch.long),
        torch.tensor([traj.num_steps for traj in inputs.trajectories], dtype=torch.long), config.normalize_std)  # [B]
    advantages = _plus_per_step(episode, inputs, step_table, config.gigpo_omega)  # [B, T]
    flat = [v for row in step_table for v in row]
    stats = {"gigpo/step_adv_abs_mean": safe_mean(sum(abs(v) for v in flat), len(flat)),
             "gigpo/nonzero_step_frac": safe_mean(sum(v != 0 for v in flat), len(flat))}
    return advantages, torch.zeros_like(advantages), stats


@dataclass(frozen=True)
class AdvantageMethod:
    """One credit-assignment method: its function and the facts other stages ask of it."""

    compute: Callable[[CreditInputs, AlgorithmConfig, float], MethodOutput]  # (inputs, config, lambda) -> output
    uses_lambda: bool  # Eq. 4's lambda scales its shaping (logged as shape/lambda)
    uses_teacher: bool  # it rescores with the teacher model (needs ``teacher`` and ``tokenize``)
    reads_labels: bool = False  # it reads each step's ``info[oracle_label]`` (the env must label its steps)

    def __call__(self, inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
        return self.compute(inputs, config, lambda_mix)


def _oracle_signed(inputs: CreditInputs, config: AlgorithmConfig, lambda_mix: float) -> MethodOutput:
    """A_i plus a per-step reward from the labels on each step's generated tokens: -r on mistakes, +r on
    harmless decisive steps (may flip signs): the ceiling of any step credit."""
    signs = step_sign_table(inputs.trajectories, config.oracle_label, two_sided=True).tolist()  # [B][S]
    advantages = _plus_per_step(inputs.outcome_advantages, inputs, signs, config.oracle_step_reward)  # [B, T]
    labelled = sum(sign != 0 for traj, row in zip(inputs.trajectories, signs) for sign in row[:traj.num_steps])
    steps = sum(traj.num_steps for traj in inputs.trajectories)
    return advantages, torch.zeros_like(advantages), {"oracle/labelled_step_frac": safe_mean(labelled, steps)}


def _plus_per_step(outcome: torch.Tensor, inputs: CreditInputs, step_values: Sequence[Sequence[float]],
                   scale: float) -> torch.Tensor:
    """[B, T]: ``outcome`` [B] on every token, plus ``scale`` times step k's value on its generated tokens."""
    advantages = outcome[:, None].expand_as(inputs.trainable_mask).clone()  # [B, T]
    for b, (traj, values) in enumerate(zip(inputs.trajectories, step_values)):
        for step, value in zip(traj.steps, values):
            if step.response_token_start is not None:
                advantages[b, step.response_token_start:step.response_token_end] += scale * value
    return advantages


ADVANTAGE_METHODS: dict[str, AdvantageMethod] = {
    "grpo": AdvantageMethod(_grpo, uses_lambda=False, uses_teacher=False),
    "stepopsd": AdvantageMethod(_stepopsd, uses_lambda=True, uses_teacher=True),
    "rlsd": AdvantageMethod(_rlsd, uses_lambda=True, uses_teacher=True),
    "opd": AdvantageMethod(_opd, uses_lambda=False, uses_teacher=True),
    "oracle": AdvantageMethod(_oracle, uses_lambda=True, uses_teacher=False, reads_labels=True),
    "gigpo": AdvantageMethod(_gigpo, uses_lambda=False, uses_teacher=False),
    "oracle_signed": AdvantageMethod(_oracle_signed, uses_lambda=False, uses_teacher=False, reads_labels=True),
    "peer_diff": AdvantageMethod(_peer_diff, uses_lambda=True, uses_teacher=False),
}


def compute_advantages(
    trajectories: Sequence[Trajectory],
    config: AlgorithmConfig,
    *,
    teacher: torch.nn.Module | None = None,
    tokenize: Tokenize | None = None,
    optimizer_step: int = 0,
    iteration: int = 1,
    temperature: float = 1.0,
) -> CreditResult:
    """Per-token advantages of one iteration's trajectories under ``config.name``.

    ``teacher``: the teacher model (``Teacher.model``), unused by grpo and oracle; ``tokenize``:
    text -> ids for the hindsight block (the policy's tokenizer without special tokens);
    ``optimizer_step`` (optimizer steps done, from 0) or ``iteration`` (this training iteration,
    from 1, as the StepOPSD author's code counts) drives the lambda schedule, per
    ``config.lambda_schedule_unit``; ``temperature``: the rollout's sampling
    temperature, which the teacher's logits are divided by as the behaviour log-probs were.
    Raises :class:`~stepopsd.trajectory.SchemaError` naming the trajectory and position of a token id
    outside the teacher's vocabulary, before any forward, for the methods that rescore.
    """
    rewards = torch.tensor([traj.reward for traj in trajectories], dtype=torch.float32)  # [B]
    group_ids = torch.tensor([traj.group_id for traj in trajectories], dtype=torch.long)  # [B]
    outcome = grpo_advantages(rewards, group_ids, normalize_std=config.normalize_std)  # [B]
    width = max((len(traj.token_ids) for traj in trajectories), default=0)
    trainable = right_pad([torch.tensor(t.trainable_mask, dtype=torch.bool) for t in trajectories], width, False)  # [B, T]
    schedule_step = {"optimizer_step": optimizer_step, "iteration": iteration}[config.lambda_schedule_unit]
    lambda_mix = lambda_at(schedule_step, config.lambda_0, config.lambda_decay_steps)
    inputs = CreditInputs(trajectories, outcome, trainable, teacher, tokenize, temperature)
    method = ADVANTAGE_METHODS[config.name]
    if method.uses_teacher:
        if teacher is None or tokenize is None:
            raise ValueError(f"algorithm {config.name!r} rescores trajectories with a teacher: pass teacher= and tokenize=")
        check_vocabulary(trajectories, teacher.get_input_embeddings().num_embeddings)  # a foreign file's ids
    token_advantages, delta, method_stats = method(inputs, config, lambda_mix)
    token_advantages = torch.where(trainable, token_advantages, torch.zeros_like(token_advantages))  # [B, T]
    stats = {
        **group_stats(trajectories, rewards, group_ids),
        "adv/outcome_abs_mean": outcome.abs().mean().item() if len(trajectories) else 0.0,
        "adv/token_abs_mean": safe_mean(token_advantages.abs()[trainable].sum().item(), trainable.sum().item()),
        "shape/lambda": lambda_mix if method.uses_lambda else 0.0,
        **method_stats,
    }
    rows = [token_advantages[b, :len(traj.token_ids)].clone() for b, traj in enumerate(trajectories)]
    deltas = [delta[b, :len(traj.token_ids)].clone() for b, traj in enumerate(trajectories)]
    return CreditResult(rows, deltas, outcome, stats)
