"""The rollout engine: B tasks x G rollouts advance one turn together, one generate call per turn.

Token conventions (shared by every stage, see docs/rollout.md):

* full mode: ``token_ids`` = prompt ids, then per step the generated ids followed by the ids
  the chat template renders for the next observation message; every step has
  ``context_start`` = 0 (until a context overflow starts a new segment, see below).
* window mode: per step, a fresh prompt (task + last H steps + current observation) then
  the generated ids; ``context_start`` = start of that prompt. The prompt is the env's own
  ``window_prompt(H)`` as the only message where the env defines one (ALFWorld: verl-agent's
  text), else the system prompt and :func:`window_message`.

Generated ids are kept exactly as sampled; only template markup and observations are
tokenised. A context overflow either ends the episode as truncated or (``truncate_history``)
starts a new segment whose prompt holds only the last H steps; both are counted in the
trajectory's metadata. An env exception ends only that episode (truncated, error recorded).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from bisect import bisect_left
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import torch

from stepopsd.config import RolloutConfig, SamplingConfig
from stepopsd.episodes import text_spans
from stepopsd.policy import Policy, Sample, prompt_ids, sample, user_turn_ids
from stepopsd.progress import RolloutProgress
from stepopsd.trajectory import Span, SpanKind, Step, Trajectory
from stepopsd.turn_cache import TurnCache, common_prefix_length
from stepopsd_envs.protocol import effective_stop_strings


@dataclass(frozen=True, slots=True)
class Task:
    """One task: what ``env.reset`` receives. Every rollout of its group resets the same way."""

    seed: int | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """What a responder sees for one live episode: its index, prompt ids, observation, info."""

    episode: int
    prompt_ids: list[int]
    observation: str
    info: dict[str, Any]


# requests of all live episodes -> one Sample each (the model, or a scripted expert in sft.py)
Responder = Callable[[Sequence[TurnRequest]], list[Sample]]

EPISODE_INFO_KEYS = ("task", "task_id", "task_type")  # held once per trajectory, not per step


def json_info(info: dict[str, Any], drop: Sequence[str] = EPISODE_INFO_KEYS) -> dict:
    """A JSON copy of an env's info dict: tuples become lists, keys in ``drop`` and non-JSON values are left out."""
    kept = {}
    for key, value in info.items():
        if key in drop:
            continue
        try:
            kept[str(key)] = json.loads(json.dumps(value))
        except (TypeError, ValueError):  # an object, a set, a circular reference: not stored
            continue
    return kept


def state_info(acted_in: dict[str, Any], step_info: dict) -> dict:
    """The JSON entries of the info of the state an action was chosen in that ``step_info`` lacks or changed."""
    before = json_info(acted_in, EPISODE_INFO_KEYS + ("expert_actions",))
    return {key: value for key, value in before.items() if key not in step_info or step_info[key] != value}


def observation_message(observation: str, info: dict[str, Any], show_admissible_actions: bool) -> str:
    """The user message for an observation (optionally listing the admissible actions)."""
    actions = info.get("admissible_actions") or []
    if show_admissible_actions and actions:
        return f"{observation}\nAdmissible actions: {', '.join(actions)}."
    return observation


def window_message(task_observation: str, history: Sequence[tuple[str, str]], current: str, steps_so_far: int) -> str:
    """A sliding-window user message: the task, the last steps' actions and observations, now.

    ``current`` is the message of the observation to act on (with its admissible actions, when
    shown); past observations come without theirs, which no longer apply.
    """
    if steps_so_far == 0:
        return current
    lines = [task_observation, "", f"Your last {len(history)} of {steps_so_far} steps:"]
    for offset, (action, observation) in enumerate(history):
        lines += [f"Step {steps_so_far - len(history) + offset + 1}. Action: {action}", f"Observation: {observation}"]
    lines += ["", f"Now step {steps_so_far + 1}. Current observation: {current}"]
    return "\n".join(lines)


def token_range(tokenizer, ids: Sequence[int], text: str, char_start: int, char_end: int) -> tuple[int, int]:
    """The smallest [start, end) range of ``ids`` whose decoded text covers ``text[char_start:char_end]``."""

    def covered(count: int) -> int:  # chars of text fully decoded from ids[:count]
        return common_prefix_length(tokenizer.decode(list(ids[:count])), text)

    counts = range(len(ids))  # covered() grows with the count: the first count that reaches a char is a bisection
    end = bisect_left(counts, True, key=lambda count: covered(count) >= char_end)
    if char_start == char_end:
        return end, end
    start = bisect_left(counts, True, key=lambda count: covered(count + 1) > char_start)
    return start, end


class _Episode:
    """One live rollout: the token stream, its steps and the window history."""

    def __init__(self, index: int, env: gymnasium.Env, task: Task, group_id: int, member: int) -> None:
        self.index, self.env, self.task, self.group_id, self.member = index, env, task, group_id, member
        self.token_ids: list[int] = []
        self.trainable: list[bool] = []
        self.behaviour_logprobs: list[float] = []
        self.steps: list[Step] = []
        self.history: list[tuple[str, str]] = []  # (action, observation)
        self.segment_start = 0  # context_start of the current full-mode segment
        self.pending_prompt: list[int] = []  # a new segment's prompt, appended with the next response
        self.observation, self.info, self.first_message, self.system = "", {}, "", ""
        self.task_observation = ""  # the reset observation: heads every window prompt
        self.task_info: dict[str, Any] = {}
        self.total_reward, self.won, self.terminated, self.truncated = 0.0, False, False, False
        self.history_truncations, self.context_overflow, self.error = 0, False, ""

    @property
    def finished(self) -> bool:
        return self.terminated or self.truncated

    def start(self, show_admissible_actions: bool) -> None:
        try:
            self.observation, self.info = self.env.reset(seed=self.task.seed, options=dict(self.task.options))
        except Exception as error:  # a broken env ends this episode only
            self.fail(error)
            return
        self.task_info = dict(self.info)
        self.system = self.env.unwrapped.system_prompt() if hasattr(self.env.unwrapped, "system_prompt") else ""
        self.task_observation = self.observation
        self.first_message = observation_message(self.observation, self.info, show_admissible_actions)

    def fail(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"
        self.truncated = True

    def next_context(self, policy: Policy, config: RolloutConfig) -> list[int] | None:
        """Ids to generate from this turn, or None (episode ended as truncated) on overflow."""
        budget = config.max_context_tokens - config.sampling.max_new_tokens
        if config.context_mode == "full" and self.steps and not self.pending_prompt:
            context = self.token_ids[self.segment_start:]
            if len(context) <= budget:
                return context
            if config.on_overflow == "end_episode":
                return self._overflow()
            self.history_truncations += 1
        history_steps = config.history_steps if self.steps else 0
        while True:
            try:
                prompt = self._window_prompt(policy, history_steps, config)
            except Exception as error:  # the env's prompt hook failed: this episode ends, the batch goes on
                self.fail(error)
                return None
            if len(prompt) <= budget:
                self.pending_prompt = prompt
                return prompt
            if history_steps == 0 or config.on_overflow == "end_episode":
                return self._overflow()
            history_steps -= 1
            self.history_truncations += 1

    def _window_prompt(self, policy: Policy, history_steps: int, config: RolloutConfig) -> list[int]:
        """The prompt ids of a window-mode step, or of a full-mode segment start (first turn, after an overflow)."""
        hook = getattr(self.env.unwrapped, "window_prompt", None)
        own = hook(history_steps) if hook is not None and config.context_mode == "window" else None
        if own is not None:  # the env's own text, sent alone (see TextEnv.window_prompt)
            return prompt_ids(policy, "", own)
        history = self.history[len(self.history) - history_steps:] if history_steps else []
        current = observation_message(self.observation, self.info, config.show_admissible_actions)
        user = window_message(self.task_observation, history, current, len(self.steps))
        return prompt_ids(policy, self.system, user)

    def _overflow(self) -> None:
        self.context_overflow, self.truncated = True, True

    def add_response(self, generated: Sample) -> tuple[int, int]:
        """Append the (pending prompt and) generated ids; returns (context_start, response_start)."""
        if self.pending_prompt:
            self.segment_start = len(self.token_ids)
            self._append(self.pending_prompt, trainable=False)
            self.pending_prompt = []
        response_start = len(self.token_ids)
        self._append(list(generated.token_ids), trainable=True, logprobs=list(generated.logprobs))
        return self.segment_start, response_start

    def _append(self, ids: list[int], trainable: bool, logprobs: list[float] | None = None) -> None:
        self.token_ids += ids
        self.trainable += [trainable] * len(ids)
        self.behaviour_logprobs += logprobs if logprobs is not None else [0.0] * len(ids)

    def add_step(self, policy: Policy, config: RolloutConfig, generated: Sample, starts: tuple[int, int],
                 result: tuple[str, float, bool, bool, dict[str, Any]]) -> None:
        """Record one env turn: spans in chars and tokens, then the observation block (full mode)."""
        context_start, response_start = starts
        observation, reward, terminated, truncated, info = result
        step_info = {**json_info(info), "finish_reason": generated.finish_reason}
        parsed = self.env.unwrapped.protocol.parse(generated.text)
        message = observation_message(observation, info, config.show_admissible_actions)
        spans = [self._token_span(policy, span, generated, response_start)
                 for span in text_spans(parsed.raw, observation, parsed) if span.kind != SpanKind.OBSERVATION]
        if config.context_mode == "full":
            block_start = len(self.token_ids)
            self._append(user_turn_ids(policy, message, after_eos=generated.finish_reason == "eos"), trainable=False)
            spans.append(Span(SpanKind.OBSERVATION, 0, len(observation), block_start, len(self.token_ids)))
        else:
            spans.append(Span(SpanKind.OBSERVATION, 0, len(observation)))
        self.steps.append(Step(
            index=len(self.steps), response=parsed.raw, thought=parsed.thought, action=parsed.action,
            observation=observation, reward=float(reward), valid_action=bool(info.get("valid_action", parsed.valid)),
            spans=tuple(spans), response_token_start=response_start,
            response_token_end=response_start + len(generated.token_ids), context_start=context_start,
            info=step_info, state_info=state_info(self.info, step_info),
        ))
        self.history.append((parsed.action or "(invalid output)", observation))
        self.observation, self.info = observation, info
        self.total_reward += float(reward)
        self.won = self.won or bool(info.get("won", False))
        self.terminated, self.truncated = bool(terminated), bool(truncated) or len(self.steps) >= config.max_turns

    def _token_span(self, policy: Policy, span: Span, generated: Sample, response_start: int) -> Span:
        start, end = token_range(policy.tokenizer, generated.token_ids, generated.text, span.char_start, span.char_end)
        return Span(span.kind, span.char_start, span.char_end, response_start + start, response_start + end)

    def trajectory(self, config: RolloutConfig) -> Trajectory:
        task_id = str(self.task_info.get("task_id", self.task.seed))
        env_id = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
        metadata = {"task": self.task_info.get("task", ""), "context_mode": config.context_mode,
                    "history_truncations": self.history_truncations, "context_overflow": self.context_overflow}
        if self.error:
            metadata["error"] = self.error
        return Trajectory(
            trajectory_id=f"{task_id}/{self.group_id}/{self.member}", task_id=task_id, env_id=env_id,
            group_id=self.group_id, prompt=self.first_message, steps=tuple(self.steps), reward=self.total_reward,
            success=self.won, token_ids=tuple(self.token_ids), trainable_mask=tuple(self.trainable),
            behaviour_logprobs=tuple(self.behaviour_logprobs), task_type=str(self.task_info.get("task_type", "")),
            terminated=self.terminated, truncated=self.truncated and not self.terminated, metadata=metadata,
        )


def first_prompt_ids(policy: Policy, env: gymnasium.Env, task: Task, config: RolloutConfig) -> list[int] | None:
    """The ids a rollout of ``task`` would generate from at its first turn, however long; None when the
    env's reset fails (its error is then the rollout's to report)."""
    episode = _Episode(0, env, task, 0, 0)
    episode.start(config.show_admissible_actions)
    if episode.finished:
        return None
    return episode.next_context(policy, dataclasses.replace(config, max_context_tokens=sys.maxsize))


def with_protocol_stops(sampling: SamplingConfig, protocol) -> SamplingConfig:
    """``sampling`` with the env protocol's ``stop_strings`` added after its own
    (:func:`stepopsd_envs.protocol.effective_stop_strings`: Search-R1's ``</search>`` without a config naming it)."""
    stops = effective_stop_strings(sampling.stop_strings, protocol)
    return dataclasses.replace(sampling, stop_strings=stops) if stops != sampling.stop_strings else sampling


def model_responder(policy: Policy, sampling: SamplingConfig, *, turn_cache: bool = True) -> Responder:
    """The policy itself: one batched sampling call over all live episodes' prompts per turn.

    With ``turn_cache`` each episode's KV cache is kept between turns (:class:`TurnCache`, one per
    rollout); without it every turn is one ``generate`` call that re-reads each prompt (the reference).
    """
    if not turn_cache:
        return lambda requests: sample(policy, [r.prompt_ids for r in requests], sampling)
    sampler = TurnCache(policy, sampling)
    return lambda requests: sampler([r.episode for r in requests], [r.prompt_ids for r in requests])


def rollout(policy: Policy, envs: Sequence[gymnasium.Env], tasks: Sequence[Task], config: RolloutConfig, *,
            first_group_id: int = 0, respond: Responder | None = None, progress: bool = False) -> list[Trajectory]:
    """Roll out ``config.group_size`` episodes of every task, all envs in lock-step.

    ``envs`` needs len(tasks) * group_size separate env instances (reused across calls).
    Trajectories come back task-major, with ``group_id = first_group_id + task index``.
    """
    needed = len(tasks) * config.group_size
    if len(envs) < needed:
        raise ValueError(f"rollout needs {needed} envs ({len(tasks)} tasks x group {config.group_size}), got {len(envs)}")
    episodes = [_Episode(t * config.group_size + m, envs[t * config.group_size + m], task, first_group_id + t, m)
                for t, task in enumerate(tasks) for m in range(config.group_size)]
    respond = respond or model_responder(policy, with_protocol_stops(config.sampling, envs[0].unwrapped.protocol),
                                         turn_cache=config.turn_cache)
    with torch.random.fork_rng(), ThreadPoolExecutor(max(1, config.env_workers)) as pool, \
            RolloutProgress(len(episodes), progress) as bar:
        torch.manual_seed(config.seed)
        list(pool.map(lambda e: e.start(config.show_admissible_actions), episodes))
        while True:
            live = [e for e in episodes if not e.finished]
            contexts = [e.next_context(policy, config) for e in live]
            live = [e for e, c in zip(live, contexts) if c is not None]
            contexts = [c for c in contexts if c is not None]
            if not live:
                break
            requests = [TurnRequest(e.index, c, e.observation, e.info) for e, c in zip(live, contexts)]
            samples = respond(requests)
            starts = [e.add_response(s) for e, s in zip(live, samples)]
            results = list(pool.map(_step_env, live, samples))
            for episode, generated, start, result in zip(live, samples, starts, results):
                if isinstance(result, Exception):
                    episode.fail(result)
                else:
                    episode.add_step(policy, config, generated, start, result)
            bar.update(sum(e.finished for e in episodes), len(live), sum(len(s.token_ids) for s in samples))
    return [episode.trajectory(config) for episode in episodes]


def rollout_in_chunks(policy: Policy, envs: Sequence[gymnasium.Env], tasks: Sequence[Task], config: RolloutConfig, *,
                      respond: Responder | None = None, progress: bool = False) -> list[Trajectory]:
    """:func:`rollout` of any number of tasks through a fixed set of envs, as many tasks at a time as they hold.

    Group ids are the tasks' indices, as one call to :func:`rollout` would give them; each chunk
    samples with its own seed (``config.seed`` + its first task's index).
    """
    per_call = len(envs) // config.group_size
    if per_call == 0:
        raise ValueError(f"a group of {config.group_size} needs at least {config.group_size} envs, got {len(envs)}")
    trajectories: list[Trajectory] = []
    for start in range(0, len(tasks), per_call):
        chunk_config = dataclasses.replace(config, seed=config.seed + start)
        trajectories += rollout(policy, envs, tasks[start:start + per_call], chunk_config, first_group_id=start,
                                respond=respond, progress=progress)
    return trajectories


def _step_env(episode: _Episode, generated: Sample):
    try:
        return episode.env.step(generated.text)
    except Exception as error:  # the env's bug ends this episode only; the batch goes on
        return error


def make_envs(env_id: str, count: int, **kwargs) -> list[gymnasium.Env]:
    """``count`` separate instances of a registered env (one per concurrent rollout)."""
    import stepopsd_envs  # noqa: F401  (registers the envs)

    return [gymnasium.make(env_id, **kwargs) for _ in range(count)]


def rollout_stats(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Summary metrics of a batch (grouped with slashes, ready for a logger)."""
    count = max(len(trajectories), 1)
    steps = [step for t in trajectories for step in t.steps]
    return {
        "rollout/success": sum(t.success for t in trajectories) / count,
        "rollout/steps_mean": len(steps) / count,
        "rollout/invalid_action_rate": sum(not s.valid_action for s in steps) / max(len(steps), 1),
        "rollout/generated_tokens": float(sum(sum(t.trainable_mask) for t in trajectories)),
        "rollout/context_overflows": float(sum(bool(t.metadata.get("context_overflow")) for t in trajectories)),
        "rollout/history_truncations": float(sum(t.metadata.get("history_truncations", 0) for t in trajectories)),
        "rollout/env_errors": float(sum("error" in t.metadata for t in trajectories)),
    }
