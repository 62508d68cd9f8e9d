"""SFT warm start: expert episodes played through the env, rendered exactly as rollouts are, then
supervised fine-tuning with the loss on generated (thought + action) tokens only.

The expert trajectories come out of :func:`stepopsd.rollout.rollout` itself, with a scripted
responder in place of the model, so their token layout is the rollout's by construction.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import gymnasium
import torch

from stepopsd.config import SFTConfig
from stepopsd.lab.careless import CarelessDemonstrator
from stepopsd.logprobs import sequence_logprobs
from stepopsd.policy import Policy, Sample, encode
from stepopsd.batch import PolicyBatch, build_batch
from stepopsd.rollout import Responder, RolloutConfig, Task, TurnRequest, rollout_in_chunks
from stepopsd.trajectory import Trajectory
from stepopsd_envs.contract import ExpertReplay
from stepopsd_envs.protocol import EXPERT_THOUGHT, expert_text


def expert_responder(policy: Policy, protocol, thought_template: str = EXPERT_THOUGHT,
                     careless_verb: str | None = None, careless_choice: str = "first") -> Responder:
    """Answers each turn with the env's expert action (:class:`stepopsd_envs.contract.ExpertReplay`;
    :class:`stepopsd.lab.careless.CarelessDemonstrator`, careless at ``careless_verb`` commands when given: the first in sight, or with
    ``careless_choice="random_wrong"`` a wrong one drawn per episode, seeded by its index; with
    ``careless_choice="env"``, verb or none, the env's own careless demonstrator).

    Each turn is :func:`expert_sample`'s.
    """
    experts: dict[int, ExpertReplay | CarelessDemonstrator] = {}

    def respond(requests: Sequence[TurnRequest]) -> list[Sample]:
        samples = []
        for request in requests:
            if request.episode not in experts:
                if careless_choice == "env":
                    experts[request.episode] = CarelessDemonstrator(env_careless=True)
                elif careless_verb is None:
                    experts[request.episode] = ExpertReplay()
                else:
                    rng = random.Random(request.episode) if careless_choice == "random_wrong" else None
                    experts[request.episode] = CarelessDemonstrator(careless_verb, rng)
            samples.append(expert_sample(policy, protocol, experts[request.episode].next_action(request.info),
                                         thought_template))
        return samples

    return respond


def expert_sample(policy: Policy, protocol, action: str, thought_template: str = EXPERT_THOUGHT) -> Sample:
    """The scripted expert's turn for ``action``: its tokenised text (:func:`expert_text`) plus the
    end-of-turn token, as a model that finishes its turn would generate them."""
    text = expert_text(protocol, action, thought_template)
    ids = encode(policy, text) + [policy.tokenizer.eos_token_id]
    return Sample(tuple(ids), (0.0,) * len(ids), text, "eos")


def expert_trajectories(policy: Policy, envs: Sequence[gymnasium.Env], tasks: Sequence[Task], config: RolloutConfig,
                        thought_template: str = EXPERT_THOUGHT, careless_verb: str | None = None,
                        careless_choice: str = "first") -> list[Trajectory]:
    """Expert episodes as token-exact schema trajectories (same layout as model rollouts);
    a careless demonstrator's with ``careless_verb`` (:func:`stepopsd.lab.careless.careless_action`,
    ``careless_choice`` as in :func:`expert_responder`) or with ``careless_choice="env"`` (the env's own).

    Tasks are played ``len(envs) // group_size`` at a time, so a few envs serve many episodes.
    """
    protocol = envs[0].unwrapped.protocol
    respond = expert_responder(policy, protocol, thought_template, careless_verb, careless_choice)
    return rollout_in_chunks(policy, envs, tasks, config, respond=respond)


def generated_token_nll(policy: Policy, batch: PolicyBatch) -> torch.Tensor:
    """Mean negative log-likelihood over the generated (trainable) tokens of a batch's rows.

    Rows are the sequences the policy generated from (:func:`stepopsd.batch.build_batch`): a
    whole trajectory in full mode, one step's prompt + response in window mode, so SFT sees
    exactly the contexts a rollout does.
    """
    token_logp = sequence_logprobs(policy.model, batch.input_ids, batch.attention_mask)  # [R, L]
    mask = batch.trainable_mask.to(token_logp.device).float()  # [R, L]
    return -(token_logp * mask).sum() / mask.sum().clamp(min=1.0)


def sft_batch(policy: Policy, trajectories: Sequence[Trajectory]) -> PolicyBatch:
    """All rows of ``trajectories`` (advantages unused), padded with the tokenizer's pad id."""
    no_advantages = [torch.zeros(len(t.token_ids)) for t in trajectories]
    return build_batch(trajectories, no_advantages, pad_id=policy.tokenizer.pad_token_id)


def sft(policy: Policy, trajectories: Sequence[Trajectory], config: SFTConfig,
        on_step: Callable[[int, float], None] | None = None,
        stop: Callable[[int], bool] | None = None) -> list[float]:
    """Fine-tune ``policy.model`` in place on ``trajectories``; returns the loss of every step.

    Each step trains on ``batch_rows`` rows drawn at random (without replacement within a step).
    ``stop(step)`` is asked after each step (the model in eval mode); True ends the training there.
    """
    batch = sft_batch(policy, trajectories)
    usable = batch.trainable_mask.any(dim=1).nonzero().flatten()  # [R'] rows with generated tokens
    if len(usable) == 0:
        raise ValueError("no trajectory has generated tokens to train on")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    policy.model.train()
    losses = []
    for step in range(config.steps):
        rows = usable[torch.randperm(len(usable), generator=generator)[:config.batch_rows]]
        loss = generated_token_nll(policy, batch.select(rows))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
        if stop is not None:
            policy.model.eval()
            if stop(step):
                break
            policy.model.train()
    policy.model.eval()
    return losses

