"""The credit audit: does a method put a failed trajectory's blame on the step that caused it?

Input: trajectories whose steps carry mistake labels (``info["mistake"]`` from an env such as
stepopsd/ForkedErrand-v0, or ALFWorld's ``expert_action`` as a noisy label, see algo/oracle.py),
and a teacher model for the methods that rescore. Audited: failed trajectories of mixed groups
with at least one labelled mistake step and one labelled harmless step.

For each audited trajectory and each arm, every step gets a blame score, and the score's
ranking of the mistake step(s) above the harmless ones is measured by the AUC (Mann-Whitney,
ties count one half; 1 = the mistake always ranks first, 0.5 = no information):

* ``delta``: -mean Delta over the step's target tokens (the teacher found the tokens unlikely);
  scores are rounded to 1e-5 so the float noise of a teacher equal to the behaviour policy ties;
* a shaped advantage (``before budget``, ``equal_step_mean_abs``, ``conserved_step_share``):
  the step's total |A~| divided by the total it gets from the same shaping with Delta = 0, i.e.
  the credit the teacher added to the step relative to what the budget gives it anyway. GRPO
  gives every step its Delta = 0 credit, so its AUC is 0.5 by construction.

Arms: ``grpo`` (Delta = 0), the hindsight controls of ``CONTROLS`` (by default ``HINDSIGHT_CONTROLS``: ``none`` /
``correctness`` / ``peer_trajectory`` and a peer taken from another group, ``other_group_peer``: a successful
trajectory of a different task; on request also ``swapped_peer``: the group's own peer with its parcel choices
swapped, :func:`stepopsd.lab.hindsight_rows.swapped_parcels`), the ``oracle`` (Delta from the labels), ``peer_diff`` (Delta on the steps whose
action differs from the peer's at the same index: the model-free baseline a teacher must beat), and ``gigpo`` (no Delta: its step
credit |A_i + omega A_step| relative to |A_i|, reported in the before-budget column). Shaping uses lambda = lambda_0 (no decay). The AUCs are averaged over trajectories with a bootstrap 95%
confidence interval.

``clip_grid`` adds columns ``alpha_clip=a``: the ``conserved_step_share`` column recomputed from the
same Delta with Eq. 3's clip at 1 +- a. Eq. 3 caps each token's weight, so a step's extra credit
counts the tokens doubted by more than ~the clip (|Delta| > 0.41 nats at a = 0.2), not by how much;
the grid shows how much of Delta's ranking the clip keeps. (lambda only scales the ranking score, so
it needs no grid.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from stepopsd.algo.advantage import ADVANTAGE_METHODS, CreditInputs
from stepopsd.algo.hindsight import choose_peer
from stepopsd.algo.oracle import mistake_labels
from stepopsd.algo.rescore import rescore_trajectory, right_pad
from stepopsd.algo.segment import target_mask_and_step_ids
from stepopsd.algo.shaping import grpo_advantages, shape_advantages
from stepopsd.choices import HINDSIGHT_CONTROLS
from stepopsd.config import AlgorithmConfig
from stepopsd.lab.hindsight_rows import swapped_parcels
from stepopsd.lab.stats import bootstrap_ci, cluster_bootstrap_ci
from stepopsd.trajectory import Trajectory, check_vocabulary, group_trajectories, is_mixed

TEACHER_FREE_ARMS = ("grpo", "oracle", "peer_diff")  # Delta without a teacher: none, the labels, the peer's actions
BUDGET_COLUMNS = ("none", "equal_step_mean_abs", "conserved_step_share")  # "none": before the budget


def ranking_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties one half; None without both kinds.

    >>> ranking_auc([0.9, 0.1, 0.1], [True, False, False])
    1.0
    >>> ranking_auc([0.5, 0.5], [True, False])
    0.5
    """
    positives = [s for s, flag in zip(scores, labels) if flag]
    negatives = [s for s, flag in zip(scores, labels) if not flag]
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def audited_trajectories(trajectories: Sequence[Trajectory], label: str = "mistake") -> list[Trajectory]:
    """Failed trajectories of mixed groups with a labelled mistake step and a labelled harmless one."""
    chosen = []
    for group in group_trajectories(trajectories):
        if not is_mixed(group.trajectories):
            continue
        for traj in group.trajectories:
            flags = [flag for flag in mistake_labels(traj, label) if flag is not None]
            if not traj.success and any(flags) and not all(flags):
                chosen.append(traj)
    return chosen


def step_means(values: torch.Tensor, target_mask: torch.Tensor, step_ids: torch.Tensor, num_steps: int,
               reduce: str = "mean") -> list[float | None]:
    """Mean (or sum) of ``values`` [T] over each step's target tokens; None for a step without any."""
    out: list[float | None] = []
    for k in range(num_steps):
        on_step = target_mask & (step_ids == k)  # [T]
        out.append(None if not on_step.any() else float(getattr(values[on_step], reduce)()))
    return out


def step_auc(scores: Sequence[float | None], labels: Sequence[bool | None]) -> float | None:
    """AUC over the steps that have both a score and a label; scores equal to 1e-5 tie (float noise
    of a teacher that matches the behaviour policy is not a ranking)."""
    pairs = [(round(s, 5), flag) for s, flag in zip(scores, labels) if s is not None and flag is not None]
    return ranking_auc([s for s, _ in pairs], [flag for _, flag in pairs])


def shaped_step_credit(delta: torch.Tensor, target_mask: torch.Tensor, step_ids: torch.Tensor, outcome: float,
                       num_steps: int, config: AlgorithmConfig, step_budget: str) -> list[float | None]:
    """Per step: total |A~| under ``step_budget`` over the total with Delta = 0 (see the module docstring)."""
    def shaped(gap: torch.Tensor) -> torch.Tensor:
        return shape_advantages(torch.tensor([outcome]), gap[None], target_mask[None], step_ids[None],
                                alpha_clip=config.alpha_clip, lambda_mix=config.lambda_0, weight_fn=config.weight_fn,
                                step_budget=step_budget, budget_clip=config.budget_clip)[0]  # [T]
    with_teacher = step_means(shaped(delta).abs(), target_mask, step_ids, num_steps, "sum")
    without = step_means(shaped(torch.zeros_like(delta)).abs(), target_mask, step_ids, num_steps, "sum")
    return [None if a is None or not b else a / b for a, b in zip(with_teacher, without)]


@dataclass(frozen=True)
class AuditResult:
    """AUCs per arm and column: {arm: {column: {"mean", "ci_low", "ci_high", "n"}}}."""

    table: dict[str, dict[str, dict[str, float]]]
    per_trajectory: dict[str, dict[str, list[float]]]  # the AUC of every audited trajectory, per arm and column
    num_audited: int
    num_trajectories: int
    label: str


def _summary(aucs: list[float]) -> dict[str, float]:
    if not aucs:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    low, high = bootstrap_ci(aucs)
    return {"mean": sum(aucs) / len(aucs) if aucs else float("nan"), "ci_low": low, "ci_high": high, "n": len(aucs)}


def _teacher_free_methods(trajectories: Sequence[Trajectory], outcome: torch.Tensor, config: AlgorithmConfig,
                          label: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(per-token advantages [B, T], Delta [B, T]) of grpo, oracle, peer_diff and gigpo over the whole batch,
    from the advantage registry itself (gigpo's anchor states are the batch's)."""
    width = max(len(t.token_ids) for t in trajectories)
    trainable = right_pad([torch.tensor(t.trainable_mask, dtype=torch.bool) for t in trajectories], width, False)  # [B, T]
    inputs = CreditInputs(trajectories, outcome, trainable, teacher=None, tokenize=None, temperature=1.0)
    labelled = dataclasses.replace(config, oracle_label=label)
    return {name: ADVANTAGE_METHODS[name](inputs, labelled, config.lambda_0)[:2] for name in TEACHER_FREE_ARMS + ("gigpo",)}


def _own_group(traj: Trajectory, groups: dict[int, list[Trajectory]], seed: int) -> list[Trajectory]:
    return groups[traj.group_id]


def _other_group_peer(traj: Trajectory, groups: dict[int, list[Trajectory]], seed: int) -> list[Trajectory]:
    """A group for the control: ``traj`` with the first success of the next group that has one."""
    successes_by_group = {gid: wins for gid, members in groups.items() if (wins := [t for t in members if t.success])}
    ids = sorted(successes_by_group)
    others = [gid for gid in ids[ids.index(traj.group_id) + 1:] + ids[:ids.index(traj.group_id)]]
    return [traj, successes_by_group[others[0]][0]] if others else [traj]


def _swapped_peer_group(traj: Trajectory, groups: dict[int, list[Trajectory]], seed: int) -> list[Trajectory]:
    """``traj``'s own group with the peer it is shown replaced by that peer with its parcel choices swapped."""
    peer = choose_peer(traj, groups[traj.group_id])
    return [swapped_parcels(member, seed) if member is peer else member for member in groups[traj.group_id]]


@dataclass(frozen=True)
class HindsightControl:
    """A teacher arm: the hindsight mode, and the group the audited trajectory's peer is chosen from."""

    mode: str
    group: Callable[[Trajectory, dict[int, list[Trajectory]], int], list[Trajectory]]  # (audited, groups by id, seed)


CONTROLS: dict[str, HindsightControl] = {
    "none": HindsightControl("none", _own_group),
    "correctness": HindsightControl("correctness", _own_group),
    "peer_trajectory": HindsightControl("peer_trajectory", _own_group),
    "other_group_peer": HindsightControl("peer_trajectory", _other_group_peer),
    "swapped_peer": HindsightControl("peer_trajectory", _swapped_peer_group),
}


def audit_credit(
    trajectories: Sequence[Trajectory],
    config: AlgorithmConfig,
    *,
    teacher: torch.nn.Module | None = None,
    tokenize: Callable[[str], Sequence[int]] | None = None,
    temperature: float = 1.0,
    label: str = "mistake",
    controls: Sequence[str] = HINDSIGHT_CONTROLS,
    progress: Callable[[int, int], None] | None = None,
    clip_grid: Sequence[float] = (),
    control_seed: int = 0,
) -> AuditResult:
    """Blame-ranking AUCs of every arm (teacher arms, ``controls`` of ``CONTROLS``, only when a teacher is given;
    ``control_seed`` seeds the ``swapped_peer`` control). A token id outside the teacher's vocabulary raises
    :class:`SchemaError` before any work."""
    unknown = [name for name in controls if name not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown hindsight control {unknown[0]!r}; the controls are {', '.join(CONTROLS)}")
    if teacher is not None:
        check_vocabulary(trajectories, teacher.get_input_embeddings().num_embeddings)
    audited = audited_trajectories(trajectories, label)
    groups = {g.group_id: list(g.trajectories) for g in group_trajectories(trajectories)}
    outcome_advantages = grpo_advantages(torch.tensor([t.reward for t in trajectories]),
                                         torch.tensor([t.group_id for t in trajectories]))  # [B]
    outcome = dict(zip((t.trajectory_id for t in trajectories), outcome_advantages.tolist()))
    row = {t.trajectory_id: b for b, t in enumerate(trajectories)}
    registry = _teacher_free_methods(trajectories, outcome_advantages, config, label) if audited else {}
    arms = [*TEACHER_FREE_ARMS, *(controls if teacher is not None else ())]
    clip_columns = {clip_column(alpha): dataclasses.replace(config, alpha_clip=alpha) for alpha in clip_grid}
    aucs: dict[str, dict[str, list[float]]] = {arm: {c: [] for c in ("delta", *BUDGET_COLUMNS, *clip_columns)}
                                               for arm in arms}
    aucs["gigpo"] = {c: [] for c in ("delta", *BUDGET_COLUMNS)}
    for done, traj in enumerate(audited):
        target_mask, step_ids = target_mask_and_step_ids(traj, config.span_mode)  # [T], [T]
        labels = mistake_labels(traj, label)
        for arm in arms:
            if arm in registry:  # grpo (Delta = 0), the oracle (Delta from the labels), peer_diff (from the peer's actions)
                delta = registry[arm][1][row[traj.trajectory_id], :len(traj.token_ids)]  # [T]
            else:
                control = CONTROLS[arm]
                delta = rescore_trajectory(traj, control.group(traj, groups, control_seed), target_mask, teacher,
                                           tokenize, dataclasses.replace(config, hindsight_mode=control.mode),
                                           config.span_mode, temperature).delta
            scores = {"delta": [None if m is None else -m for m in step_means(delta, target_mask, step_ids, traj.num_steps)]}
            for budget in BUDGET_COLUMNS:
                scores[budget] = shaped_step_credit(delta, target_mask, step_ids, outcome[traj.trajectory_id],
                                                    traj.num_steps, config, budget)
            for column, clipped in clip_columns.items():
                scores[column] = shaped_step_credit(delta, target_mask, step_ids, outcome[traj.trajectory_id],
                                                    traj.num_steps, clipped, "conserved_step_share")
            for column, column_scores in scores.items():
                auc = step_auc(column_scores, labels)
                if auc is not None:
                    aucs[arm][column].append(auc)
        gigpo_advantages = registry["gigpo"][0][row[traj.trajectory_id]]  # [T]
        gigpo_credit = [float(gigpo_advantages[step.response_token_start:step.response_token_end].abs().mean())
                        / abs(outcome[traj.trajectory_id]) for step in traj.steps]  # per token of step k, relative to GRPO's
        auc = step_auc(gigpo_credit, labels)
        if auc is not None:
            aucs["gigpo"]["none"].append(auc)
        if progress is not None:
            progress(done + 1, len(audited))
    return AuditResult(summarize(aucs), aucs, len(audited), len(trajectories), label)


def clip_column(alpha: float) -> str:
    """The column name of the conserved_step_share AUC recomputed at Eq. 3's clip ``alpha``."""
    return f"alpha_clip={alpha:g}"


def clip_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The ``alpha_clip=a`` columns as markdown (arms that have them); "" when there are none."""
    columns = sorted({c for cells in table.values() for c in cells if c.startswith("alpha_clip=")},
                     key=lambda c: float(c.partition("=")[2]))
    if not columns:
        return ""
    arms = [arm for arm, cells in table.items() if columns[0] in cells]
    return _markdown(table, {c: f"A~ conserved_step_share, {c}" for c in columns}, arms)


def summarize(per_trajectory: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-trajectory AUCs -> {arm: {column: {"mean", "ci_low", "ci_high", "n"}}}."""
    return {arm: {column: _summary(values) for column, values in columns.items()} for arm, columns in per_trajectory.items()}


def summarize_clusters(per_cluster: list[dict[str, dict[str, list[float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-trajectory AUCs of several audits (one per seed or teacher) -> the table of the pooled
    trajectories, its CI resampling the audits as well as their trajectories (:func:`cluster_bootstrap_ci`)."""
    table = {}
    for arm, columns in per_cluster[0].items():
        table[arm] = {}
        for column in columns:
            groups = [audit[arm][column] for audit in per_cluster]
            pooled = [v for group in groups for v in group]
            low, high = cluster_bootstrap_ci(groups)
            table[arm][column] = ({"mean": sum(pooled) / len(pooled), "ci_low": low, "ci_high": high, "n": len(pooled)}
                                  if pooled else _summary([]))
    return table


COLUMN_TITLES = {"delta": "Delta", "none": "A~ before budget", "equal_step_mean_abs": "A~ equal_step_mean_abs (paper)",
                 "conserved_step_share": "A~ conserved_step_share"}


def markdown_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The AUC table as markdown: mean [95% CI] per arm and column, "-" where an arm has none."""
    return _markdown(table, COLUMN_TITLES, list(table))


def _markdown(table: dict[str, dict[str, dict[str, float]]], titles: dict[str, str], arms: list[str]) -> str:
    """Rows ``arms``, columns ``titles`` (column -> header): mean [95% CI], "-" for an empty cell."""
    lines = [f"| arm | {' | '.join(titles.values())} |", "|---|" + "---|" * len(titles)]
    for arm in arms:
        shown = [f"{cell['mean']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]" if cell["n"] else "-"
                 for cell in (table[arm][c] for c in titles)]
        lines.append(f"| {arm} | {' | '.join(shown)} |")
    return "\n".join(lines)


def plot_table(table: dict[str, dict[str, dict[str, float]]], path) -> None:
    """Grouped bars of the AUC per arm and column with their 95% CIs (PNG, PDF or SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms, columns = list(table), list(COLUMN_TITLES)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(arms)), 3.8))
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        cells = [table[arm][column] for arm in arms]
        means = [c["mean"] if c["n"] else 0.0 for c in cells]
        errors = [[c["mean"] - c["ci_low"] if c["n"] else 0.0 for c in cells],
                  [c["ci_high"] - c["mean"] if c["n"] else 0.0 for c in cells]]
        ax.bar([a + i * width for a in range(len(arms))], means, width, yerr=errors, label=COLUMN_TITLES[column],
               capsize=2)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks([a + 0.4 - width / 2 for a in range(len(arms))], arms, rotation=15, ha="right")
    ax.set_ylabel("mistake-step AUC")
    ax.set_ylim(0, 1.2)  # headroom above the oracle for the legend
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
