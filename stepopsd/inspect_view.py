"""Step-level credit of one trajectory group, for people: a terminal view and an HTML page.

Reads the ``metadata["credit"]`` the trainer writes beside dumped trajectories
(``outcome_advantage``, per-token ``token_advantages`` and teacher gaps ``delta``).
A token's tint is its shaped advantage relative to the trajectory's GRPO advantage:
green where the teacher gave it more credit than GRPO would, red where less.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stepopsd.trajectory import SchemaError, Trajectory, TrajectoryGroup, group_trajectories
from stepopsd.trajectory_io import describe_json, is_finite_number

DecodeToken = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class StepCredit:
    """One step's summary: its action, mean teacher gap and mean shaped advantage over its response."""

    index: int
    action: str
    valid_action: bool
    delta_mean: float
    advantage_mean: float


def credit_of(traj: Trajectory) -> dict:
    """``metadata["credit"]`` once it holds a finite outcome advantage and one finite number per token
    in each per-token list; else :class:`SchemaError` naming the trajectory and the field."""
    credit = traj.metadata.get("credit")
    if credit is None:
        raise ValueError(f"trajectory {traj.trajectory_id!r} carries no credit; inspect the trajectories "
                         "a training run dumps (RUN/trajectories/iter-*.jsonl)")
    where = f"trajectory {traj.trajectory_id!r}, metadata.credit"
    if not isinstance(credit, dict):
        raise SchemaError(f"{where}: must be a JSON object, got {describe_json(credit)}")
    if not is_finite_number(credit.get("outcome_advantage")):
        raise SchemaError(f"{where}.outcome_advantage: must be a finite number, "
                          f"got {describe_json(credit.get('outcome_advantage'))}")
    for name in ("token_advantages", "delta"):
        values = credit.get(name)
        if not isinstance(values, list) or len(values) != len(traj.token_ids):
            got = f"length {len(values)}" if isinstance(values, list) else describe_json(values)
            raise SchemaError(f"{where}.{name}: must be a list of one number per token "
                              f"(len(token_ids) {len(traj.token_ids)}), got {got}")
        bad = next((n for n, value in enumerate(values) if not is_finite_number(value)), None)
        if bad is not None:
            raise SchemaError(f"{where}.{name}[{bad}]: must be a finite number, got {describe_json(values[bad])}")
    return credit


def step_credits(traj: Trajectory) -> list[StepCredit]:
    """Per step with response tokens: its mean teacher gap and mean shaped advantage."""
    credit = credit_of(traj)
    rows = []
    for step in traj.steps:
        if step.response_token_start is None:
            continue
        window = range(step.response_token_start, step.response_token_end)
        rows.append(StepCredit(
            index=step.index,
            action=step.action,
            valid_action=step.valid_action,
            delta_mean=_mean([credit["delta"][t] for t in window]),
            advantage_mean=_mean([credit["token_advantages"][t] for t in window]),
        ))
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def relative_credit(advantage: float, outcome_advantage: float) -> float:
    """A~ / A - 1 (0 when A = 0): how much the teacher rescaled this token's credit."""
    return advantage / outcome_advantage - 1.0 if outcome_advantage else 0.0


def pick_group(trajectories: Sequence[Trajectory], group_id: int | None) -> TrajectoryGroup:
    """The requested group, else the first mixed one (where hindsight acts), else the first."""
    groups = group_trajectories(trajectories)
    if not groups:
        raise ValueError("no trajectories to inspect")
    if group_id is not None:
        chosen = next((g for g in groups if g.group_id == group_id), None)
        if chosen is None:
            raise ValueError(f"no group {group_id}; groups in the file: {sorted(g.group_id for g in groups)[:20]}")
        return chosen
    return next((g for g in groups if g.is_mixed), groups[0])


def _tint(relative: float, scale: float) -> str:
    """Background colour: green for more credit than GRPO, red for less, white for none."""
    strength = min(abs(relative) / scale, 1.0) if scale > 0 else 0.0
    fade = int(255 - 140 * strength)
    return f"rgb({fade},255,{fade})" if relative > 0 else f"rgb(255,{fade},{fade})"


def render_html(group: TrajectoryGroup, decode: DecodeToken, title: str = "") -> str:
    """A self-contained HTML page: per trajectory, a step table and its tokens tinted by credit."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em} .tok{font-family:monospace;white-space:pre-wrap}"
             ".obs{color:#888} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:13px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>Group {group.group_id}: {group.num_successes}/"
             f"{len(group.trajectories)} successful. Token tint = shaped advantage / GRPO advantage - 1 "
             "(green: more credit, red: less).</p>"]
    for traj in group.trajectories:
        credit = credit_of(traj)
        outcome = credit["outcome_advantage"]
        relative = [relative_credit(a, outcome) for a in credit["token_advantages"]]
        scale = max((abs(r) for r, m in zip(relative, traj.trainable_mask) if m), default=0.0)
        parts.append(f"<h2>{html.escape(traj.trajectory_id)} - {'success' if traj.success else 'failure'}, "
                     f"GRPO advantage {outcome:+.3f}</h2><table><tr><th>step</th><th>action</th>"
                     "<th>mean &Delta;</th><th>mean A~</th></tr>")
        for row in step_credits(traj):
            parts.append(f"<tr><td>{row.index}</td><td>{html.escape(row.action or '(invalid)')}</td>"
                         f"<td>{row.delta_mean:+.4f}</td><td>{row.advantage_mean:+.4f}</td></tr>")
        parts.append("</table><div class='tok'>")
        for token_id, trainable, rel in zip(traj.token_ids, traj.trainable_mask, relative):
            text = html.escape(decode(token_id))
            if trainable:
                parts.append(f"<span style='background:{_tint(rel, scale)}' title='{rel:+.3f}'>{text}</span>")
            else:
                parts.append(f"<span class='obs'>{text}</span>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)
