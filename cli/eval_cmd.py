"""``stepopsd eval``: play a model on an env split and print the success table (mean and std over seeds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from stepopsd_cli.errors import check_env_id, check_env_kwargs, fail, make_env
from stepopsd_cli.options import load_config, one_config, output_folder

app = typer.Typer(add_completion=False)

RESULT_FILES = ("results.json", "trajectories.jsonl")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option(help="A model folder or a run directory of stepopsd train.")],
    env: Annotated[Optional[str], typer.Option(help="Env id (default: the run's env).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Env split, passed as gymnasium.make(split=...).")] = None,
    episodes: Annotated[Optional[int], typer.Option(
        min=1, help="Episodes per seed (default: the run's eval_episodes).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Repeat with this many sampling seeds; mean and std reported.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0: greedy).")] = 0.0,
    config: Annotated[list[str], typer.Option(help="Config (name or TOML) when --model is not a run; give it once.",
                                              show_default=False)] = [],
    out: Annotated[Path, typer.Option(help="Folder for trajectories.jsonl and results.json (created).")] = Path("eval"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the results already in --out.")] = False,
) -> None:
    """Evaluate a run or any model folder; writes trajectories (schema JSONL) and results JSON."""
    from stepopsd.run_dir import resolve_model

    try:
        model_dir, run_config = resolve_model(model)
    except ValueError as error:
        fail(str(error))
    overrides = {key: value for key, value in {"env.env_id": env, "env.eval_episodes": episodes}.items()
                 if value is not None}
    config_name = one_config(config)
    train_config = load_config(str(run_config) if run_config and not config_name else config_name, overrides)
    if split:
        env_config = dataclasses.replace(train_config.env, eval_kwargs={**train_config.env.eval_kwargs, "split": split})
        train_config = dataclasses.replace(train_config, env=env_config)
    _check_before_work(train_config, out, overwrite=overwrite, env_given=env is not None, split_given=bool(split))
    output_folder(out)
    from rich.console import Console

    from stepopsd.evaluate import evaluate_seeds, format_table, save_evaluation
    from stepopsd.policy import ModelFolderError, load_policy
    from stepopsd.terminal import episode_errors, errors_summary

    try:
        policy = load_policy(model_dir, dtype=train_config.model.dtype)
    except ModelFolderError as error:
        fail(str(error))
    evaluation = evaluate_seeds(policy, train_config, seeds=seeds, temperature=temperature, progress=True)
    errors, episodes_played = episode_errors(evaluation.trajectories), len(evaluation.trajectories)
    if errors and len(errors) == episodes_played:  # nothing was evaluated: no table, no results to mistake for a 0%
        fail(f"{errors_summary(errors, episodes_played)}; nothing was evaluated, nothing written", exit_code=1)
    from stepopsd.run_dir import WriteFailedError

    try:
        results_path, trajectories_path = save_evaluation(evaluation, out, model=str(model_dir), split=split)
    except WriteFailedError as error:
        fail(str(error), exit_code=1)
    rows = {"mean": evaluation.mean, "std": evaluation.std} if seeds > 1 else {"success": evaluation.mean}
    title = f"{evaluation.env_id} success (%), {episodes_played} episodes, {seeds} seed(s)"
    Console().print(format_table(rows, title))
    if errors:
        typer.echo(f"warning: {errors_summary(errors, episodes_played)}; they count as failures "
                   "(results.json: env_errors)", err=True)
    typer.echo(f"wrote {results_path} and {trajectories_path}")


def _check_before_work(config, out: Path, *, overwrite: bool, env_given: bool, split_given: bool) -> None:
    """Before the model loads: the results would replace nothing, and one eval env can be made."""
    env_id, kwargs = config.env.env_id, config.env.eval_kwargs
    check_env_id(env_id, "--env" if env_given else "env.env_id")
    check_env_kwargs(env_id, {k: v for k, v in kwargs.items() if k != "split" or not split_given}, "env.eval_kwargs")
    if split_given:
        check_env_kwargs(env_id, {"split": kwargs["split"]}, "--split")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not overwrite:
        fail(f"--out {out} already holds {' and '.join(existing)}; pass --overwrite to replace them, "
             "or choose another --out")
    make_env(env_id, **kwargs).close()  # the env's own checks (a bad split value), before the model loads
