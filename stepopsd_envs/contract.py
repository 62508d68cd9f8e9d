"""The training contract: what stepopsd's trainer reads from an env, how the env's expert is read
(:class:`ExpertReplay`), and ``check_trainable_env`` beside Gymnasium's ``check_env``, which
``stepopsd train`` runs before any work.

Any ``TextEnv`` can be rolled out and trained with GRPO-family methods. Some settings read more:

=====================  =====================================================================
SFT warm start         the env's expert: ``info["expert_action"]`` at every turn (reactive) or
(``sft.steps > 0``)    ``info["expert_actions"]`` on reset (a plan), when reset with
                       ``options={"expert": True}``; its episode ends within ``rollout.max_turns``
careless demonstrator  ``sft.careless_choice = "first" | "random_wrong"``: a reactive expert and
(``sft.careless_rate``) ``info["admissible_actions"]``; ``"env"``: ``info["careless_action"]``
                       when reset with ``options={"expert": True, "careless": True}``
``algorithm.name =     each step's ``info[oracle_label]``: ``"mistake"`` (a bool per step) or
"oracle"``             ``"expert_action"`` (the expert's command, compared with the step's)
any run                the protocol's rendered action ends with one of the rollout's
                       ``stop_strings`` or of the protocol's own (``protocol.stop_strings``,
                       which the rollout adds), or generation runs on past the action
=====================  =====================================================================

>>> import gymnasium, stepopsd_envs
>>> check_trainable_env(gymnasium.make("stepopsd/FetchItem-v0"), TrainingNeeds(expert=True))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stepopsd_envs.protocol import effective_stop_strings, expert_text


def offers_expert(info: Mapping[str, Any]) -> bool:
    """The env's info (after a reset with ``options={"expert": True}``) offers its expert: reactive or a plan."""
    return "expert_action" in info or "expert_actions" in info


class ExpertReplay:
    """The env's expert, for one episode at a time: call :meth:`next_action` with each turn's info.

    An env's expert is either reactive, ``info["expert_action"]`` at every turn (ALFWorld's
    exploring expert), or a plan, ``info["expert_actions"]`` on reset (FetchItem's plan); the
    reactive one wins where both are given. A finished plan answers "look".
    """

    def __init__(self) -> None:
        self.plan: list[str] | None = None

    def next_action(self, info: Mapping[str, Any]) -> str:
        if "expert_actions" in info:  # present on reset: a new episode's plan
            self.plan = list(info["expert_actions"])
        if "expert_action" in info:
            return info["expert_action"]
        if self.plan is None:
            raise ValueError("the env gave no info['expert_action'] nor info['expert_actions'] on reset; "
                             "playing its expert needs an env with an expert")
        return self.plan.pop(0) if self.plan else "look"

    @property
    def plan_finished(self) -> bool:
        return self.plan is not None and not self.plan


class UntrainableEnvError(ValueError):
    """The env lacks something a training setting reads (the message names both)."""


@dataclass(frozen=True)
class TrainingNeeds:
    """What a training config will read from its env."""

    expert: bool = False  # the SFT warm start plays the env's expert
    careless_choice: str = ""  # "" (no careless episodes) | "first" | "random_wrong" | "env"
    mistake_label: str = ""  # "" | "mistake" | "expert_action": the oracle reads this step info key
    stop_strings: tuple[str, ...] = ()  # the rollout stops generating at these
    expert_turns: int = 0  # the expert's episode must end within this many turns (0: unchecked)


def check_trainable_env(env, needs: TrainingNeeds, *, seed: int = 0, max_steps: int = 50) -> None:
    """Raise :class:`UntrainableEnvError` when ``env`` lacks what ``needs`` reads, by playing one
    seeded episode (its expert's where it has one, else ``look``); the env is left after a reset."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    protocol = env.unwrapped.protocol
    rendered = expert_text(protocol, "look", "")
    stops = effective_stop_strings(needs.stop_strings, protocol)  # the rollout stops at both
    if needs.stop_strings and not any(rendered.endswith(stop) for stop in stops):
        raise UntrainableEnvError(
            f"{name}: its protocol renders an action as {rendered!r}, which ends with none of "
            f"rollout.sampling.stop_strings {list(needs.stop_strings)} and the protocol names no stop_strings; "
            f"generation would run on past the action (set rollout.sampling.stop_strings to the action's closing tag)")
    wants_expert = needs.expert or bool(needs.careless_choice) or needs.mistake_label == "expert_action"
    options: dict[str, Any] = {**({"expert": True} if wants_expert else {}),
                               **({"careless": True} if needs.careless_choice == "env" else {})}
    observation, info = env.reset(seed=seed, options=options or None)  # no options an env might refuse unasked
    if not isinstance(observation, str):
        raise UntrainableEnvError(f"{name}: reset must return a str observation, got {type(observation).__name__}")
    reactive = "expert_action" in info
    if needs.expert and not offers_expert(info):
        raise UntrainableEnvError(
            f"{name} has no expert (no info['expert_action'] nor info['expert_actions'] on reset with "
            "options={'expert': True}); the SFT warm start plays it: set sft.steps=0 and start from an SFT'd "
            "model.path, or give the env an expert (docs/envs.md, 'Training your own env')")
    if needs.careless_choice == "env" and "careless_action" not in info:
        raise UntrainableEnvError(
            f"{name} gives no info['careless_action'] (reset with options={{'expert': True, 'careless': True}}), "
            "which sft.careless_choice='env' plays: choose 'first' or 'random_wrong'")
    if needs.careless_choice in ("first", "random_wrong") and not (reactive and info.get("admissible_actions")):
        raise UntrainableEnvError(
            f"{name}: a careless demonstrator (sft.careless_rate > 0) needs a reactive expert "
            "(info['expert_action'] at every turn) and the commands in info['admissible_actions']; set sft.careless_rate=0")
    if needs.mistake_label == "expert_action" and "expert_action" not in info:
        raise UntrainableEnvError(
            f"{name}: no info['expert_action'] on reset with options={{'expert': True}}, which the oracle compares "
            "each step's action with (algorithm.oracle_label = 'expert_action')")
    if needs.mistake_label == "mistake":
        _check_step_labels(env, name, info, protocol, max_steps)
    if needs.expert and needs.expert_turns:
        _check_expert_ends(env, name, protocol, seed, needs.expert_turns)


def _check_expert_ends(env, name: str, protocol, seed: int, max_turns: int) -> None:
    """The expert's seeded episode ends within ``max_turns`` turns (the SFT warm start learns from won episodes)."""
    _, info = env.reset(seed=seed, options={"expert": True})
    expert = ExpertReplay()
    for _ in range(max_turns):
        _, _, terminated, truncated, info = env.step(expert_text(protocol, expert.next_action(info), ""))
        if terminated or truncated:
            return
    raise UntrainableEnvError(
        f"{name}: its expert's episode (seed {seed}) has not ended after rollout.max_turns={max_turns} turns; "
        "the SFT warm start (sft.steps > 0) learns from won expert episodes only and would get none: "
        "raise rollout.max_turns, or set sft.steps=0")


def _check_step_labels(env, name: str, info: dict, protocol, max_steps: int) -> None:
    """Every step's info holds ``mistake`` (one expert episode, or ``look`` steps without an expert)."""
    expert = ExpertReplay() if offers_expert(info) else None
    for _ in range(max_steps):
        action = expert.next_action(info) if expert is not None else "look"
        _, _, terminated, truncated, info = env.step(expert_text(protocol, action, ""))
        if "mistake" not in info:
            raise UntrainableEnvError(
                f"{name}: a step's info holds no 'mistake', which the oracle reads (algorithm.oracle_label); "
                "the oracle needs an env that labels its steps, e.g. stepopsd/ForkedErrand-v0")
        if terminated or truncated:
            return
