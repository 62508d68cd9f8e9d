"""SFT warm start: expert episodes played through the env, rendered exactly as rollouts are, then
supervised fine-tuning with the loss on generated (thought + action) tokens only.

The expert trajectories come out of :func:`stepopsd.rollout.rollout` itself, with a scripted
responder in place of the model, so their token layout is the rollout's by construction.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium
import torch

from stepopsd.config import SFTConfig
from stepopsd.lab.careless import CarelessDemonstrator
from stepopsd.logprobs import sequence_logprobs
from stepopsd.policy import Policy, Sample, encode
from stepopsd.batch import PolicyBatch, build_batch
from stepopsd.rollout import Responder, RolloutConfig, Task, TurnRequest, rollout_in_chunks
from stepopsd.run_dir import written_whole
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
        stop: Callable[[int], bool] | None = None, state: Path | None = None) -> list[float]:
    """Fine-tune ``policy.model`` in place on ``trajectories``; returns the loss of every step.

    Each step trains on ``batch_rows`` rows drawn at random (without replacement within a step).
    ``stop(step)`` is asked after each step (the model in eval mode); True ends the training there.
    With ``state`` (a folder) and ``config.save_every``, the training's state is written there every
    ``save_every`` steps and when it ends; a call given a folder that holds one goes on from it, bitwise as
    if never stopped (``steps`` may be raised; one stopped by ``stop`` returns its losses), and refuses one
    of other settings, rows or start weights.
    """
    batch = sft_batch(policy, trajectories)
    usable = batch.trainable_mask.any(dim=1).nonzero().flatten()  # [R'] rows with generated tokens
    if len(usable) == 0:
        raise ValueError("no trajectory has generated tokens to train on")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    identity = sft_identity(config, batch, usable, policy.model)
    saved = load_sft_state(state, identity, policy, optimizer, generator) if state else None
    losses = saved["losses"] if saved else []
    if len(losses) > config.steps:
        raise ValueError(f"the SFT state in {state} holds {len(losses)} steps, past sft.steps={config.steps}")
    if saved and saved["stopped"]:
        policy.model.eval()
        return losses

    def save(stopped: bool) -> None:
        if state and config.save_every:
            save_sft_state(state, identity, policy, optimizer, generator, losses, stopped)

    policy.model.train()
    for step in range(len(losses), config.steps):
        rows = usable[torch.randperm(len(usable), generator=generator)[:config.batch_rows]]
        loss = generated_token_nll(policy, batch.select(rows))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            save(stopped=False)
        if on_step is not None:
            on_step(step, losses[-1])
        if stop is not None:
            policy.model.eval()
            if stop(step):
                save(stopped=True)
                break
            policy.model.train()
    else:
        save(stopped=False)
    policy.model.eval()
    return losses


def sft_identity(config: SFTConfig, batch: PolicyBatch, usable: torch.Tensor, model) -> dict:
    """What a saved SFT state must match to be gone on from: the phase's settings (not ``steps``,
    ``save_every``, ``then``), its rows (their count and trained tokens) and the weights it starts from
    (the sum of every parameter, in float64)."""
    settings = {key: value for key, value in dataclasses.asdict(config).items()
                if key not in ("steps", "save_every", "then")}
    with torch.no_grad():
        start_weights = sum(float(parameter.double().sum()) for parameter in model.parameters())
    return {**settings, "rows": len(usable), "row_tokens": int(batch.trainable_mask[usable].sum()),
            "start_weights": start_weights}


def save_sft_state(folder: Path, identity: dict, policy: Policy, optimizer, generator: torch.Generator,
                   losses: list[float], stopped: bool) -> None:
    """``folder``/state.pt, replaced whole (a process killed while writing keeps the last one)."""
    folder.mkdir(parents=True, exist_ok=True)
    with written_whole(folder / "state.pt") as partial:
        torch.save({"identity": identity, "model": policy.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "losses": losses, "stopped": stopped}, partial)


def load_sft_state(folder: Path, identity: dict, policy: Policy, optimizer, generator: torch.Generator) -> dict | None:
    """The state ``folder`` holds, loaded into ``policy``, ``optimizer`` and ``generator``; None if it holds none.
    ValueError if it was saved by another phase (other settings or rows)."""
    path = folder / "state.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, weights_only=True)
    # a state saved before a key joined the identity is not checked on that key
    differ = sorted(key for key in identity if key in saved["identity"] and saved["identity"][key] != identity[key])
    if differ:
        raise ValueError(f"the SFT state in {folder} was saved by another phase (it differs in {', '.join(differ)}): "
                         "remove the folder, or give the settings it was saved with")
    policy.model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    return saved
