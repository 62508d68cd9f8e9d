"""Hindsight blocks of the teacher context (docs/algorithm.md step 3), as plain text.

The teacher context of a step is the student context followed by this block, placed directly
before the rescored step (token position ``Step.response_token_start``)::

    <hindsight>
    final_correctness: incorrect
    <peer_correct_trajectory>
    step 1
    thought: ...
    action: ...
    observation: ...
    </peer_correct_trajectory>
    </hindsight>

Modes: ``none`` (no block: teacher context = student context), ``correctness`` (the
correctness line only, for every trajectory), ``peer_trajectory`` (the correctness line when
``correctness_line`` is on, the default, plus the peer block for the trajectories that have a
peer, below). The correctness line says ``correct`` or ``incorrect`` from the trajectory's own
``success``. A block is tokenised once per trajectory and reused before each of its steps.

Which peer (``PEER_RULES``, picked by ``AlgorithmConfig.hindsight_for``):

* ``failed`` (the default): a failed trajectory of a mixed group gets the FIRST successful
  trajectory of the group in batch order (the order the rollout produced them). It is
  deterministic, needs no scoring, and every failed trajectory of a group sees the same peer, so
  their teacher contexts differ only by their own steps. Won trajectories get no peer.
* ``failed_and_won``: the same for failed trajectories; a won trajectory also gets a peer, the
  cleanest OTHER win of its group (never itself; none when it is the group's only win), so the
  teacher can withdraw credit from a step the win did not need (a recovered mistake). Clean is
  judged without labels, from what any agent sees: fewest steps, then fewest invalid actions,
  then batch order (:func:`cleanliness`). Its block keeps the correctness line ``correct``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stepopsd.choices import HINDSIGHT_MODES
from stepopsd.trajectory import Trajectory, is_mixed

TRUNCATION_NOTE = "[... middle of the peer trajectory omitted to fit {budget} tokens ...]"


def _first_win_for_a_failure(traj: Trajectory, group: Sequence[Trajectory]) -> Trajectory | None:
    """The first successful trajectory of ``group`` if ``traj`` failed in a mixed group, else None."""
    if traj.success or not is_mixed(group):
        return None
    return next(member for member in group if member.success)


def cleanliness(traj: Trajectory) -> tuple[int, int]:
    """Sort key of a win as a peer, lower is cleaner: (steps, invalid actions); no env label is read."""
    return traj.num_steps, sum(not step.valid_action for step in traj.steps)


def _cleanest_other_win(traj: Trajectory, group: Sequence[Trajectory]) -> Trajectory | None:
    """A failure's peer as under ``failed``; a win's: the cleanest other win of ``group`` (first on ties)."""
    if not traj.success:
        return _first_win_for_a_failure(traj, group)
    others = [member for member in group if member.success and member.trajectory_id != traj.trajectory_id]
    return min(others, key=cleanliness, default=None)


PEER_RULES: dict[str, Callable[[Trajectory, Sequence[Trajectory]], Trajectory | None]] = {
    "failed": _first_win_for_a_failure,
    "failed_and_won": _cleanest_other_win,
}


def choose_peer(traj: Trajectory, group: Sequence[Trajectory], hindsight_for: str = "failed") -> Trajectory | None:
    """The peer ``traj`` is shown from ``group`` under the rule ``hindsight_for`` (``PEER_RULES``), or None."""
    return PEER_RULES[hindsight_for](traj, group)


def render_peer(peer: Trajectory) -> str:
    """The peer's steps as text: thought, action and observation of each step (view ``steps``)."""
    blocks = []
    for step in peer.steps:
        lines = [f"step {step.index + 1}"]
        if step.thought:
            lines.append(f"thought: {step.thought}")
        lines.append(f"action: {step.action}")
        if step.observation:
            lines.append(f"observation: {step.observation}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def render_peer_actions(peer: Trajectory) -> str:
    """The peer's actions, one line per step (view ``actions``): a long episode fits a small budget whole,
    where the ``steps`` view of it would lose its middle to :func:`truncate_middle`."""
    return "\n".join(f"step {step.index + 1}: {step.action}" for step in peer.steps)


def render_peer_outcomes(peer: Trajectory) -> str:
    """What the peer's steps achieved, one line per step whose env reported it in ``info["outcome"]``
    (view ``outcomes``): a win that recovered from a mistake shows only what it kept, which the
    ``actions`` view leaves to the reader to work out from the order of its steps."""
    lines = [step.info["outcome"] for step in peer.steps if step.info.get("outcome")]
    if not lines:
        raise ValueError(f"trajectory {peer.trajectory_id} ({peer.env_id}): no step has info['outcome']; "
                         "peer_view 'outcomes' needs an env that reports what a step achieved "
                         "(stepopsd/ErrandChain-v0 does); use 'steps' or 'actions'")
    return "\n".join(lines)


PEER_VIEWS: dict[str, Callable[[Trajectory], str]] = {"steps": render_peer, "actions": render_peer_actions,
                                                      "outcomes": render_peer_outcomes}


def truncate_middle(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> str:
    """``text`` if it fits ``max_tokens``, else its head and tail around a note saying so.

    Binary search on the number of characters kept on each side (O(log len) token counts);
    the result always fits unless the note alone does not, in which case the note is returned.
    """
    if count_tokens(text) <= max_tokens:
        return text
    note = TRUNCATION_NOTE.format(budget=max_tokens)

    def joined(kept: int) -> str:
        return f"{text[:kept]}\n{note}\n{text[len(text) - kept:]}" if kept else note

    low, high = 0, len(text) // 2  # invariant: joined(low) is the best known fit
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(joined(middle)) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return joined(low)


def hindsight_block(correctness: str | None, peer_text: str | None) -> str:
    """The ``<hindsight>`` block, or "" when it would hold nothing."""
    if correctness is None and peer_text is None:
        return ""
    lines = ["<hindsight>"]
    if correctness is not None:
        lines.append(f"final_correctness: {correctness}")
    if peer_text is not None:
        lines += ["<peer_correct_trajectory>", peer_text, "</peer_correct_trajectory>"]
    lines.append("</hindsight>")
    return "\n".join(lines) + "\n"


def peer_hindsight_block(peer: Trajectory | None, correctness: str | None, peer_token_budget: int,
                         count_tokens: Callable[[str], int], peer_view: str = "steps") -> str:
    """The block showing ``peer`` in ``PEER_VIEWS[peer_view]`` (middle-truncated to ``peer_token_budget``
    tokens) after the correctness line: the one rendering of a peer that teachers and hindsight SFT rows read."""
    peer_text = (truncate_middle(PEER_VIEWS[peer_view](peer), peer_token_budget, count_tokens)
                 if peer is not None else None)
    return hindsight_block(correctness, peer_text)


def hindsight_text(
    traj: Trajectory,
    group: Sequence[Trajectory],
    mode: str,
    *,
    hindsight_for: str = "failed",
    correctness_line: bool = True,
    peer_token_budget: int = 1024,
    count_tokens: Callable[[str], int] = len,
    peer_view: str = "steps",
) -> str:
    """The hindsight block the teacher sees before every step of ``traj`` ("" for none)."""
    if mode not in HINDSIGHT_MODES:
        raise ValueError(f"hindsight_mode must be one of {HINDSIGHT_MODES}, got {mode!r}")
    if mode == "none":
        return ""
    correctness = ("correct" if traj.success else "incorrect") if correctness_line or mode == "correctness" else None
    peer = choose_peer(traj, group, hindsight_for) if mode == "peer_trajectory" else None
    return peer_hindsight_block(peer, correctness, peer_token_budget, count_tokens, peer_view)
