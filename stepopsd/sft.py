"""SFT warm start: expert plans replayed through the env, rendered exactly as rollouts are, then
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
from stepopsd.logprobs import token_logprobs
from stepopsd.policy import Policy, Sample, encode
from stepopsd.rollout import Responder, RolloutConfig, Task, TurnRequest, rollout
from stepopsd.batch import build_batch
from stepopsd.trajectory import Trajectory


def expert_responder(policy: Policy, protocol, thought_template: str = "Next step of the plan: {action}.") -> Responder:
    """Answers each turn with the next action of the env's expert plan (``info["expert_actions"]`` on reset).

    The response ids are the tokenised expert text plus the end-of-turn token, as a model that
    finishes its turn would generate them.
    """
    plans: dict[int, list[str]] = {}
    end_of_turn = policy.tokenizer.eos_token_id

    def respond(requests: Sequence[TurnRequest]) -> list[Sample]:
        samples = []
        for request in requests:
            if "expert_actions" in request.info:
                plans[request.episode] = list(request.info["expert_actions"])
            if request.episode not in plans:
                raise ValueError("the env gave no info['expert_actions'] on reset; SFT needs an env with an expert plan")
            plan = plans[request.episode]
            action = plan.pop(0) if plan else "look"
            text = protocol.format(action, thought=thought_template.format(action=action) if thought_template else "")
            ids = encode(policy, text) + [end_of_turn]
            samples.append(Sample(tuple(ids), (0.0,) * len(ids), text, "eos"))
        return samples

    return respond


def expert_trajectories(policy: Policy, envs: Sequence[gymnasium.Env], tasks: Sequence[Task], config: RolloutConfig,
                        thought_template: str = "Next step of the plan: {action}.") -> list[Trajectory]:
    """Expert episodes as token-exact schema trajectories (same layout as model rollouts)."""
    protocol = envs[0].unwrapped.protocol
    return rollout(policy, envs, tasks, config, respond=expert_responder(policy, protocol, thought_template))


def generated_token_nll(policy: Policy, trajectories: Sequence[Trajectory]) -> torch.Tensor:
    """Mean negative log-likelihood over the generated (trainable) tokens of a batch.

    Rows are the sequences the policy generated from (:func:`stepopsd.batch.build_batch`): a
    whole trajectory in full mode, one step's prompt + response in window mode, so SFT sees
    exactly the contexts a rollout does.
    """
    no_advantages = [torch.zeros(len(t.token_ids)) for t in trajectories]
    batch = build_batch(trajectories, no_advantages, pad_id=policy.tokenizer.pad_token_id)
    device = policy.device
    ids = batch.input_ids.to(device)  # [R, L]
    logits = policy.model(input_ids=ids, attention_mask=batch.attention_mask.to(device), use_cache=False).logits
    token_logp = token_logprobs(logits, ids)  # [R, L]
    mask = batch.trainable_mask.to(device).float()  # [R, L]
    return -(token_logp * mask).sum() / mask.sum().clamp(min=1.0)


def sft(policy: Policy, trajectories: Sequence[Trajectory], config: SFTConfig,
        on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fine-tune ``policy.model`` in place on ``trajectories``; returns the loss of every step."""
    usable = [t for t in trajectories if any(t.trainable_mask)]
    if not usable:
        raise ValueError("no trajectory has generated tokens to train on")
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    policy.model.train()
    losses = []
    for step in range(config.steps):
        batch = rng.sample(usable, min(config.batch_size, len(usable)))
        loss = generated_token_nll(policy, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    policy.model.eval()
    return losses


def save_policy(policy: Policy, out_dir) -> None:
    """Save model and tokenizer with ``save_pretrained`` (reloadable by :func:`load_policy`)."""
    policy.model.save_pretrained(out_dir)
    policy.tokenizer.save_pretrained(out_dir)
