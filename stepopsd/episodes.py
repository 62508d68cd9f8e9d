"""Play one text episode with any output-producing function and record it as a Trajectory.

This is the tokenizer-free path (scripted experts, random agents, API models): the
trajectory carries text and character spans but no token ids. Model rollouts that need
token-exact trajectories go through :mod:`stepopsd.rollout`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium

from stepopsd.trajectory import Span, SpanKind, Step, Trajectory

EXPERT_THOUGHT = "Next step of the plan: {action}."  # the scripted expert's thought before each action

# (observation, info) -> the agent's raw output for this turn
OutputFn = Callable[[str, dict[str, Any]], str]


def text_spans(response: str, observation: str, parsed) -> tuple[Span, ...]:
    """Character spans of one step: thought and action inside the response, the observation."""
    spans = []
    if parsed.thought_chars is not None:
        spans.append(Span(SpanKind.THOUGHT, *parsed.thought_chars))
    if parsed.action_chars is not None:
        spans.append(Span(SpanKind.ACTION, *parsed.action_chars))
    spans.append(Span(SpanKind.OBSERVATION, 0, len(observation)))
    return tuple(spans)


def play_text_episode(
    env: gymnasium.Env,
    output_fn: OutputFn,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    group_id: int = 0,
    trajectory_id: str = "",
    max_steps: int | None = None,
) -> Trajectory:
    """Run ``output_fn`` in ``env`` until terminated or truncated (or ``max_steps`` steps, which
    marks the trajectory truncated); return the trajectory."""
    protocol = env.unwrapped.protocol
    observation, info = env.reset(seed=seed, options=options)
    prompt, task_info = observation, info
    steps: list[Step] = []
    total_reward, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        response = output_fn(observation, info)
        observation, reward, terminated, truncated, info = env.step(response)
        parsed = protocol.parse(response)
        total_reward += reward
        steps.append(Step(
            index=len(steps),
            response=parsed.raw,
            thought=info.get("thought", ""),
            action=info.get("action", ""),
            observation=observation,
            reward=float(reward),
            valid_action=bool(info.get("valid_action", parsed.valid)),
            spans=text_spans(parsed.raw, observation, parsed),
            info={"won": bool(info.get("won", False))},
        ))
        if max_steps is not None and len(steps) >= max_steps:
            truncated = truncated or not terminated
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    task_id = str(task_info.get("task_id", ""))
    return Trajectory(
        trajectory_id=trajectory_id or f"{task_id}/{group_id}",
        task_id=task_id,
        env_id=env_id,
        group_id=group_id,
        prompt=prompt,
        steps=tuple(steps),
        reward=total_reward,
        success=bool(info.get("won", False)),
        task_type=str(task_info.get("task_type", "")),
        terminated=terminated,
        truncated=truncated,
        metadata={"task": task_info.get("task", "")},
    )


def careless_action(expert_action: str, admissible_actions: Sequence[str], verb: str,
                    rng: random.Random | None = None) -> str:
    """What a careless demonstrator does where the expert does ``expert_action``: a ``verb``
    command becomes the first admissible ``verb`` command as listed (the first object in sight,
    not the one the task names), or with ``rng`` a random admissible ``verb`` command other than
    the expert's (always a wrong choice); any other command stays the expert's.

    >>> careless_action("take mug 1 from shelf 1", ["go to desk 1", "take apple 2 from shelf 1", "take mug 1 from shelf 1"], "take")
    'take apple 2 from shelf 1'
    >>> careless_action("take mug 1 from shelf 1", ["take mug 1 from shelf 1", "take cup 1 from shelf 1"], "take", random.Random(0))
    'take cup 1 from shelf 1'
    """
    if expert_action.split(" ", 1)[0] != verb:
        return expert_action
    choices = [action for action in admissible_actions if action.split(" ", 1)[0] == verb]
    if rng is not None:
        wrong = [action for action in choices if action != expert_action]
        return rng.choice(wrong) if wrong else expert_action
    return choices[0] if choices else expert_action


class ExpertReplay:
    """The env's expert, for one episode at a time: call :meth:`next_action` with each turn's info.

    An env's expert is either reactive, ``info["expert_action"]`` at every turn (ALFWorld's
    exploring expert), or a plan, ``info["expert_actions"]`` on reset (FetchItem's plan); the
    reactive one wins where both are given. A finished plan answers "look". With
    ``careless_verb`` it plays a careless demonstrator (:func:`careless_action`, a random wrong
    choice drawn from ``careless_rng`` when given); that needs a reactive expert, which goes on
    from wherever the careless choice led. With ``env_careless`` it plays the env's own careless
    demonstrator, ``info["careless_action"]`` (reset with ``options={"careless": True}``).
    """

    def __init__(self, careless_verb: str | None = None, careless_rng: random.Random | None = None, *,
                 env_careless: bool = False) -> None:
        self.plan: list[str] | None = None
        self.careless_verb = careless_verb
        self.careless_rng = careless_rng
        self.env_careless = env_careless

    def next_action(self, info: dict[str, Any]) -> str:
        if self.env_careless:
            if "careless_action" not in info:
                raise ValueError("the env gave no info['careless_action'] (reset with options={'expert': True, "
                                 "'careless': True}); sft.careless_choice='env' needs an env with its own careless "
                                 "demonstrator, e.g. stepopsd/ALFWorld-v0")
            return info["careless_action"]
        if "expert_actions" in info:  # present on reset: a new episode's plan
            self.plan = list(info["expert_actions"])
        if "expert_action" in info:
            if self.careless_verb is None:
                return info["expert_action"]
            return careless_action(info["expert_action"], info.get("admissible_actions", ()), self.careless_verb,
                                   self.careless_rng)
        if self.careless_verb is not None:
            raise ValueError("a careless demonstrator needs a reactive expert (info['expert_action'] every turn); "
                             "a plan cannot go on after a careless choice")
        if self.plan is None:
            raise ValueError("the env gave no info['expert_action'] nor info['expert_actions'] on reset; "
                             "playing its expert needs an env with an expert")
        return self.plan.pop(0) if self.plan else "look"

    @property
    def plan_finished(self) -> bool:
        return self.plan is not None and not self.plan


def expert_output_fn(env: gymnasium.Env) -> OutputFn:
    """Plays the env's expert (:class:`ExpertReplay`) in the env's protocol."""
    protocol = env.unwrapped.protocol
    expert = ExpertReplay()

    def output(observation: str, info: dict[str, Any]) -> str:
        finished = "expert_actions" not in info and "expert_action" not in info and expert.plan_finished
        action = expert.next_action(info)
        return protocol.format(action, thought="The plan is finished." if finished else EXPERT_THOUGHT.format(action=action))

    return output


def random_output_fn(env: gymnasium.Env, seed: int = 0) -> OutputFn:
    """Picks a random admissible action each turn (a baseline agent)."""
    protocol = env.unwrapped.protocol
    rng = random.Random(seed)

    def output(observation: str, info: dict[str, Any]) -> str:
        choices = info.get("admissible_actions") or ["look"]
        return protocol.format(rng.choice(choices), thought="Trying something.")

    return output
