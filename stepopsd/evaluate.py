"""Evaluation, for every env: play the evaluation episodes, success tables in the env's layout.

An env class declares its table's columns with a ``table_columns`` attribute (ALFWorld: Pick,
Look, Clean, Heat, Cool, PickTwo, All); other envs get one column per ``task_type`` seen.
Envs with a game list are played game by game in their documented order (one pass at most);
others on seeded scenes that never coincide with training draws.

Two kinds of policy: a model (:func:`play_evaluation`, the token-exact rollout engine; the
trainer and ``stepopsd eval``) and any text function ``(observation, info) -> output``
(:func:`play_text_games`: API models, scripted agents).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium

from stepopsd.config import TrainConfig
from stepopsd.episodes import OutputFn, play_text_episode
from stepopsd.policy import Policy, SamplingConfig
from stepopsd.rollout import Task, make_envs, rollout_in_chunks
from stepopsd.run_dir import written_whole
from stepopsd.tasks import ENVS_AT_ONCE, game_tasks
from stepopsd.terminal import episode_errors, safe_text
from stepopsd.trajectory import Trajectory
from stepopsd.trajectory_io import save_trajectories
from stepopsd_envs.plugins import env_class

EVAL_SEED_OFFSET = 10_000_000  # evaluation scenes never coincide with training draws


# --------------------------------------------------------------------------- tables


def success_table(trajectories: Sequence[Trajectory], columns: Sequence[str] = (),
                  total_label: str = "All") -> dict[str, float]:
    """Success rate (%) per ``task_type`` in ``columns`` order (types seen but not listed are
    appended), then ``total_label`` over all trajectories. Empty columns are NaN; an episode
    without a task type (an env that failed at reset) counts in the total only."""
    by_type: dict[str, list[bool]] = {column: [] for column in columns if column != total_label}
    for traj in trajectories:
        if traj.task_type:
            by_type.setdefault(traj.task_type, []).append(traj.success)
    table = {name: _percent(outcomes) for name, outcomes in by_type.items()}
    table[total_label] = _percent([t.success for t in trajectories])
    return table


def _percent(outcomes: list[bool]) -> float:
    return 100.0 * sum(outcomes) / len(outcomes) if outcomes else float("nan")


def table_columns(env_id: str) -> list[str]:
    """The task-type columns an env class declares for its success table (may be empty)."""
    return [c for c in getattr(env_class(env_id), "table_columns", ()) if c != "All"]


def format_table(rows: Mapping[str, Mapping[str, float]], title: str = ""):
    """A rich Table: one row per entry of ``rows`` (e.g. a method, or mean and std), "-" for NaN
    (a column without episodes, said in the caption)."""
    from rich.table import Table

    columns = list(next(iter(rows.values()), {}))
    empty = any(math.isnan(table[c]) for table in rows.values() for c in columns)
    rendered = Table("", title=safe_text(title) if title else None,
                     caption="-: no episodes of that type" if empty else None)
    for column in columns:
        rendered.add_column(safe_text(column))
    for name, table in rows.items():
        rendered.add_row(safe_text(name), *("-" if math.isnan(table[c]) else f"{table[c]:.1f}" for c in columns))
    return rendered


# --------------------------------------------------------------------------- model policies


def evaluation_tasks(env: gymnasium.Env, episodes: int) -> list[Task]:
    """One task per game for envs with a game list (at most one pass), else seeded scenes."""
    games = getattr(env.unwrapped, "games", None)
    return game_tasks(env, min(episodes, len(games)) if games else episodes, first_seed=EVAL_SEED_OFFSET)


def make_eval_envs(config: TrainConfig) -> list[gymnasium.Env]:
    """The evaluation envs; make them once and pass them to every evaluation (an ALFWorld env holds an engine)."""
    return make_envs(config.env.env_id, min(ENVS_AT_ONCE, config.env.eval_episodes), **config.env.eval_kwargs)


def play_evaluation(policy: Policy, config: TrainConfig, *, envs: Sequence[gymnasium.Env] | None = None,
                    sampling: SamplingConfig | None = None, seed: int | None = None,
                    progress: bool = False) -> list[Trajectory]:
    """The evaluation episodes (greedy unless ``sampling`` says otherwise) through ``envs``
    (made and closed here when None); ``seed`` replaces the rollout's sampling seed."""
    own_envs = envs is None
    envs = make_eval_envs(config) if own_envs else envs
    tasks = evaluation_tasks(envs[0], config.env.eval_episodes)
    greedy = dataclasses.replace(config.rollout.sampling, temperature=0.0)
    eval_config = dataclasses.replace(config.rollout, group_size=1, sampling=sampling or greedy,
                                      seed=config.rollout.seed if seed is None else seed)
    try:
        return rollout_in_chunks(policy, envs, tasks, eval_config, progress=progress)
    finally:
        if own_envs:
            for env in envs:
                env.close()


def evaluate_policy(policy: Policy, config: TrainConfig, *, envs: Sequence[gymnasium.Env] | None = None,
                    progress: bool = False, sampling: SamplingConfig | None = None) -> dict[str, float]:
    """Greedy success table (%) of ``policy`` on the eval env, in the env's column order."""
    trajectories = play_evaluation(policy, config, envs=envs, sampling=sampling, progress=progress)
    return success_table(trajectories, table_columns(config.env.env_id))


@dataclass(frozen=True)
class SeedsEvaluation:
    """The evaluation repeated with several sampling seeds."""

    env_id: str
    temperature: float
    per_seed: list[dict[str, float]]  # one success table (%) per seed
    trajectories: list[Trajectory]  # every seed's episodes, seed after seed

    @property
    def mean(self) -> dict[str, float]:
        return {k: statistics.fmean(t[k] for t in self.per_seed) for k in self.per_seed[0]}

    @property
    def std(self) -> dict[str, float]:
        """Population std over seeds (0 with one seed; NaN for a column without episodes)."""
        return {k: _pstdev([t[k] for t in self.per_seed]) for k in self.per_seed[0]}


def _pstdev(values: list[float]) -> float:
    # statistics.pstdev raises AttributeError on a NaN (Python 3.11), and success_table gives NaN to
    # a column that had no episodes (e.g. ALFWorld's Pick column on Heat/Cool games)
    return math.nan if any(math.isnan(v) for v in values) else statistics.pstdev(values)


def evaluate_seeds(policy: Policy, config: TrainConfig, *, seeds: int, temperature: float,
                   progress: bool = False) -> SeedsEvaluation:
    """Play the evaluation episodes once per sampling seed 0..seeds-1 at ``temperature`` (0: greedy)."""
    sampling = dataclasses.replace(config.rollout.sampling, temperature=temperature)
    columns = table_columns(config.env.env_id)
    envs = make_eval_envs(config)
    per_seed, trajectories = [], []
    try:
        for seed in range(seeds):
            played = play_evaluation(policy, config, envs=envs, sampling=sampling, seed=seed, progress=progress)
            per_seed.append(success_table(played, columns))
            trajectories += played
    finally:
        for env in envs:
            env.close()
    return SeedsEvaluation(config.env.env_id, temperature, per_seed, trajectories)


def save_evaluation(evaluation: SeedsEvaluation, out_dir: Path, **header) -> tuple[Path, Path]:
    """``out_dir/results.json`` (``header`` first, then the tables; a column without episodes is null)
    and ``out_dir/trajectories.jsonl``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path, trajectories_path = out_dir / "results.json", out_dir / "trajectories.jsonl"
    save_trajectories(evaluation.trajectories, trajectories_path)
    results = {**header, "env": evaluation.env_id, "seeds": len(evaluation.per_seed),
               "temperature": evaluation.temperature, "episodes": len(evaluation.trajectories),
               "env_errors": len(episode_errors(evaluation.trajectories)),
               "success_mean": _nan_to_null(evaluation.mean), "success_std": _nan_to_null(evaluation.std),
               "per_seed": [_nan_to_null(table) for table in evaluation.per_seed]}
    with written_whole(results_path) as partial:
        partial.write_text(json.dumps(results, indent=2, allow_nan=False))
    return results_path, trajectories_path


def _nan_to_null(table: dict[str, float]) -> dict[str, float | None]:
    return {column: None if math.isnan(value) else value for column, value in table.items()}


# --------------------------------------------------------------------------- text policies


def play_text_games(env: gymnasium.Env, output_fn: OutputFn, game_indices: Sequence[int] | None = None,
                    episodes_per_game: int = 1, max_steps: int = 50) -> list[Trajectory]:
    """Play a text policy on every game of ``env.unwrapped.games`` (or the given indices), in order.

    >>> table = success_table(play_text_games(env, my_output_fn), table_columns("stepopsd/ALFWorld-v0"))  # doctest: +SKIP
    """
    indices = range(len(env.unwrapped.games)) if game_indices is None else game_indices
    return [play_text_episode(env, output_fn, options={"game_index": index}, group_id=index, max_steps=max_steps)
            for index in indices for _ in range(episodes_per_game)]
