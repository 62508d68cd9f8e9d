"""The step-typed trajectory schema every stage of stepopsd speaks (JSONL io: :mod:`stepopsd.trajectory_io`).

Plain frozen dataclasses, standard library only (no torch), so another project can
``pip install stepopsd`` and read or write these files without the training stack.

Coordinates
-----------
A trajectory holds ONE token sequence, ``token_ids``. Every :class:`Span` gives

* ``char_start`` / ``char_end``: offsets into the text of its step. Thought, action and
  other spans index ``Step.response`` (the model's raw output for that turn); observation
  spans index ``Step.observation``.
* ``token_start`` / ``token_end``: offsets into ``Trajectory.token_ids`` (``None`` for a
  trajectory that was never tokenised, e.g. a scripted rollout).

``Step.context_start`` is where the step's context begins inside ``token_ids``: 0 for a
full-conversation rollout (every step sees everything before it), the start of the step's
own prompt block for a sliding-window rollout (each step was generated from its own
prompt, stored in ``token_ids`` right before the step's response). The student context of
a step is therefore always ``token_ids[context_start : response_start]``.

Step info
---------
``Step.info`` is the info dict the env returned with the step (the state *after* the action:
``won``, ``valid_action``, the admissible actions now, ...), plus the rollout's
``finish_reason``. ``Step.state_info`` is the info of the state the action was chosen *in*
(the reset info for step 0, the previous step's info afterwards), keeping only the keys whose
value differs from, or is absent in, ``Step.info`` (e.g. ALFWorld's ``expert_action`` and
``admissible_actions`` when acting). :meth:`Step.acted_on` reads a key in that state. Both hold
JSON values only (tuples become lists; other non-JSON values are dropped) and never the
per-episode keys the trajectory already holds (``task``, ``task_id``, ``task_type``; nor the
reset plan ``expert_actions`` in ``state_info``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """A trajectory violates the schema; the message names trajectory, step and field."""


class SpanKind(str, Enum):
    THOUGHT = "thought"
    ACTION = "action"
    OBSERVATION = "observation"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Span:
    """A typed region of one step, in characters of the step text and tokens of the trajectory."""

    kind: SpanKind
    char_start: int
    char_end: int
    token_start: int | None = None
    token_end: int | None = None

    @property
    def has_tokens(self) -> bool:
        return self.token_start is not None and self.token_end is not None


@dataclass(frozen=True, slots=True)
class Step:
    """One environment turn: what the model generated, what the env answered."""

    index: int
    response: str
    thought: str
    action: str
    observation: str
    reward: float = 0.0
    valid_action: bool = True
    spans: tuple[Span, ...] = ()
    response_token_start: int | None = None
    response_token_end: int | None = None
    context_start: int = 0
    info: dict = field(default_factory=dict)  # the env's info after this step (+ finish_reason)
    state_info: dict = field(default_factory=dict)  # info of the state acted in, where it differs from info

    def span(self, kind: SpanKind) -> Span | None:
        """The first span of ``kind`` in this step, or None."""
        return next((s for s in self.spans if s.kind == kind), None)

    def acted_on(self, key: str, default=None):
        """The value of info ``key`` in the state this step's action was chosen in.

        >>> Step(0, "", "", "look", "", info={"expert_action": "go to desk 1"},
        ...      state_info={"expert_action": "look"}).acted_on("expert_action")
        'look'
        """
        return self.state_info[key] if key in self.state_info else self.info.get(key, default)


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One episode of one agent on one task, token-exact when ``token_ids`` is set."""

    trajectory_id: str
    task_id: str
    env_id: str
    group_id: int
    prompt: str
    steps: tuple[Step, ...]
    reward: float
    success: bool
    token_ids: tuple[int, ...] = ()
    trainable_mask: tuple[bool, ...] = ()
    behaviour_logprobs: tuple[float, ...] = ()
    task_type: str = ""
    terminated: bool = False
    truncated: bool = False
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_trajectory(self)

    @property
    def num_steps(self) -> int:
        return len(self.steps)


@dataclass(frozen=True, slots=True)
class TrajectoryGroup:
    """The n rollouts of one task that GRPO normalises against each other."""

    group_id: int
    trajectories: tuple[Trajectory, ...]

    def __post_init__(self) -> None:
        for traj in self.trajectories:
            if traj.group_id != self.group_id:
                raise SchemaError(
                    f"trajectory {traj.trajectory_id!r}: group_id {traj.group_id} "
                    f"does not match its group {self.group_id}"
                )

    @property
    def num_successes(self) -> int:
        return sum(t.success for t in self.trajectories)

    @property
    def is_mixed(self) -> bool:
        """Some but not all trajectories succeeded: the only groups with hindsight peers."""
        return is_mixed(self.trajectories)


def is_mixed(group: Sequence[Trajectory]) -> bool:
    """Some but not all of ``group`` succeeded (0 < successes < n): GRPO has signal, hindsight a peer."""
    return 0 < sum(traj.success for traj in group) < len(group)


def group_trajectories(trajectories: Iterable[Trajectory]) -> list[TrajectoryGroup]:
    """Gather trajectories into groups by ``group_id``, in order of first appearance.

    >>> group_trajectories([])
    []
    """
    by_group: dict[int, list[Trajectory]] = {}
    for traj in trajectories:
        by_group.setdefault(traj.group_id, []).append(traj)
    return [TrajectoryGroup(gid, tuple(trajs)) for gid, trajs in by_group.items()]


# --------------------------------------------------------------------------- validation


def check_vocabulary(trajectories: Iterable[Trajectory], vocab_size: int) -> None:
    """Raise :class:`SchemaError` naming the first token id outside ``[0, vocab_size)``: a file written
    with another tokenizer, or damaged (decoding or embedding it would fail or show wrong text)."""
    for traj in trajectories:
        if not traj.token_ids or max(traj.token_ids) < vocab_size:  # the common case, without a Python loop
            continue
        bad = next(n for n, token_id in enumerate(traj.token_ids) if token_id >= vocab_size)
        _fail(traj, f"token_ids[{bad}]", f"id {traj.token_ids[bad]} is outside the vocabulary "
                                         f"(ids 0..{vocab_size - 1})")


def _fail(traj: Trajectory, where: str, message: str) -> None:
    raise SchemaError(f"trajectory {traj.trajectory_id!r}, {where}: {message}")


def _check_span(traj: Trajectory, step: Step, span_index: int, span: Span) -> None:
    where = f"step {step.index}, spans[{span_index}] ({span.kind.value})"
    text = step.observation if span.kind == SpanKind.OBSERVATION else step.response
    text_field = "observation" if span.kind == SpanKind.OBSERVATION else "response"
    if not 0 <= span.char_start <= span.char_end <= len(text):
        _fail(traj, where, f"char offsets [{span.char_start}, {span.char_end}) "
                           f"outside the step's {text_field} of length {len(text)}")
    if (span.token_start is None) != (span.token_end is None):
        _fail(traj, where, "token_start and token_end must both be set or both be None")
    if span.has_tokens:
        if not traj.token_ids:
            _fail(traj, where, "token offsets given but the trajectory has no token_ids")
        if not 0 <= span.token_start <= span.token_end <= len(traj.token_ids):
            _fail(traj, where, f"token offsets [{span.token_start}, {span.token_end}) "
                               f"outside token_ids of length {len(traj.token_ids)}")


def _check_response_order(traj: Trajectory) -> None:
    """Each tokenised step's response starts at or after the end of the tokenised step before it."""
    tokenised = [step for step in traj.steps if step.response_token_start is not None]
    for before, step in zip(tokenised, tokenised[1:]):
        if step.response_token_start < before.response_token_end:
            _fail(traj, f"step {step.index}, response_token_start/end",
                  f"[{step.response_token_start}, {step.response_token_end}) overlaps step {before.index}'s "
                  f"response [{before.response_token_start}, {before.response_token_end}); "
                  "each step's response must follow the one before it")


def validate_trajectory(traj: Trajectory) -> None:
    """Raise :class:`SchemaError` unless every invariant of the schema holds."""
    n_tokens = len(traj.token_ids)
    if not traj.steps and (traj.success or not traj.truncated):
        # The rollout writes a zero-step trajectory only when it ended the episode before its first
        # step (reset failed, first prompt overflowed): truncated, never a success.
        _fail(traj, "steps", "is empty; only a truncated, unsuccessful trajectory may have no steps")
    if len(traj.trainable_mask) != n_tokens:
        _fail(traj, "trainable_mask", f"length {len(traj.trainable_mask)} != len(token_ids) {n_tokens}")
    if traj.behaviour_logprobs and len(traj.behaviour_logprobs) != n_tokens:
        _fail(traj, "behaviour_logprobs",
              f"length {len(traj.behaviour_logprobs)} != len(token_ids) {n_tokens} (use () for none)")
    if any(math.isnan(lp) for lp in traj.behaviour_logprobs):
        _fail(traj, "behaviour_logprobs", "contains NaN")
    token_spans: list[tuple[int, int, str]] = []
    for position, step in enumerate(traj.steps):
        if step.index != position:
            _fail(traj, f"steps[{position}].index", f"is {step.index}; step indices must be 0..K-1 in order")
        if not 0 <= step.context_start <= n_tokens:
            _fail(traj, f"step {step.index}, context_start", f"{step.context_start} outside [0, {n_tokens}]")
        if (step.response_token_start is None) != (step.response_token_end is None):
            _fail(traj, f"step {step.index}, response_token_start/end", "must both be set or both be None")
        if step.response_token_start is not None and not (
            step.context_start <= step.response_token_start <= step.response_token_end <= n_tokens
        ):
            _fail(traj, f"step {step.index}, response_token_start/end",
                  f"[{step.response_token_start}, {step.response_token_end}) must lie in "
                  f"[context_start={step.context_start}, {n_tokens}]")
        for span_index, span in enumerate(step.spans):
            _check_span(traj, step, span_index, span)
            if span.has_tokens:
                token_spans.append((span.token_start, span.token_end, f"step {step.index} {span.kind.value}"))
                if span.kind == SpanKind.OBSERVATION and any(
                    traj.trainable_mask[span.token_start:span.token_end]
                ):
                    _fail(traj, f"step {step.index}, trainable_mask",
                          f"observation tokens [{span.token_start}, {span.token_end}) are marked trainable")
    _check_response_order(traj)
    token_spans.sort()
    for (start_a, end_a, name_a), (start_b, end_b, name_b) in zip(token_spans, token_spans[1:]):
        if start_b < end_a:
            _fail(traj, "spans", f"token spans overlap: {name_a} [{start_a}, {end_a}) and {name_b} [{start_b}, {end_b})")
