"""``stepopsd train``: the RL training run (one process, or many under ``accelerate launch``).

A short ``--help``: the knobs people turn have their own option; every other config field is
set with ``--set KEY=VALUE``. Precedence: defaults < ``--config`` < ``--set`` < named options.
Everything checkable is checked before any work: the config's ranges, the env id and options (and what the run reads from the env),
the model folder and the run folder (a run there needs ``--resume`` or ``--overwrite``; no other process may run there).
Ctrl-C stops the run with the command that resumes it (exit code 130).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from stepopsd_cli.errors import check_env_id, check_env_kwargs, check_model_folder, fail
from stepopsd_cli.options import (
    CONFIG_HELP, SET_HELP, AlgorithmName, config_overrides, load_config, one_config, output_folder,
)

app = typer.Typer(add_completion=False)

RUN, ALGORITHM, ANY_FIELD = "Run", "Algorithm and optimizer", "Any config field"


@app.command("train")
def train(
    config: Annotated[list[str], typer.Option(help=CONFIG_HELP, rich_help_panel=RUN, show_default=False)] = [],
    out: Annotated[Path, typer.Option(
        help="Run directory (metrics, checkpoints, final model); created with its parents; must be new or empty "
             "unless --resume or --overwrite.", rich_help_panel=RUN)] = Path("runs/stepopsd"),
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its newest complete checkpoint (same config; "
                         "run.iterations may grow).", rich_help_panel=RUN)] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Delete the run in --out first, then start again.", rich_help_panel=RUN)] = False,
    iterations: Annotated[Optional[int], typer.Option(
        min=1, help="RL iterations (run.iterations).", rich_help_panel=RUN)] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of tasks, sampling and minibatch order (run.seed).", rich_help_panel=RUN)] = None,
    algorithm: Annotated[Optional[AlgorithmName], typer.Option(
        help="StepOPSD or a baseline (algorithm.name).", rich_help_panel=ALGORITHM)] = None,
    alpha_clip: Annotated[Optional[float], typer.Option(
        help="Eq. 3 weight clip: w in \\[1 - alpha_clip, 1 + alpha_clip] (algorithm.alpha_clip).",
        rich_help_panel=ALGORITHM)] = None,
    lambda_0: Annotated[Optional[float], typer.Option(
        "--lambda-0", help="Eq. 4 mixing weight at optimizer step 0 (algorithm.lambda_0).",
        rich_help_panel=ALGORITHM)] = None,
    lr: Annotated[Optional[float], typer.Option(
        help="AdamW learning rate of the policy (optim.lr).", rich_help_panel=ALGORITHM)] = None,
    set_fields: Annotated[list[str], typer.Option(
        "--set", metavar="KEY=VALUE", help=SET_HELP, rich_help_panel=ANY_FIELD, show_default=False)] = [],
) -> None:
    """Train a policy with StepOPSD (or the grpo / rlsd / opd / oracle baselines) on a text env."""
    overrides = config_overrides(set_fields, {
        "run.iterations": iterations, "run.seed": seed, "algorithm.name": algorithm,
        "algorithm.alpha_clip": alpha_clip, "algorithm.lambda_0": lambda_0, "optim.lr": lr,
    })
    train_config = load_config(one_config(config), overrides)
    _check_before_work(train_config, out, resume=resume, overwrite=overwrite)
    output_folder(out)
    from stepopsd.run_dir import RunFolderError, WriteFailedError
    from stepopsd.train import EnvSetupError, NonFiniteError
    from stepopsd.train import train as run_training

    try:
        summary = run_training(train_config, out, resume=resume, overwrite=overwrite)
    except (RunFolderError, EnvSetupError) as error:
        fail(str(error))
    except (NonFiniteError, WriteFailedError) as error:
        fail(str(error), exit_code=1)
    except KeyboardInterrupt:
        _interrupted(out)
    before, after = summary.get("success_before", {}), summary.get("success_after", {})
    if before:
        typer.echo(f"success before RL: {before.get('All', float('nan')):.1f}%")
    typer.echo(f"success after RL:  {after.get('All', float('nan')):.1f}%   (run: {out})")


def _interrupted(out: Path) -> NoReturn:
    """Say how to resume a run stopped by Ctrl-C, and exit 130 (the shell's code for SIGINT)."""
    import shlex

    from stepopsd.run_dir import RunDir

    saved = RunDir(out).config_toml
    if saved.is_file():
        typer.echo(f"interrupted; resume with: stepopsd train --config {shlex.quote(str(saved))} "
                   f"--out {shlex.quote(str(out))} --resume", err=True)
    else:
        typer.echo(f"interrupted before the run in {out} started; nothing to resume", err=True)
    raise typer.Exit(130)


def _check_before_work(config, out: Path, *, resume: bool, overwrite: bool) -> None:
    """What would otherwise fail (or destroy a run) minutes in: env id and options, what the run reads
    from the env (its expert, step labels, ...), model folder, run folder."""
    from stepopsd.run_dir import RunDir, RunFolderError, check_not_in_use, check_run_folder
    from stepopsd.train import EnvSetupError, check_training_env

    check_env_id(config.env.env_id, "env.env_id")
    check_env_kwargs(config.env.env_id, config.env.train_kwargs, "env.train_kwargs")
    check_env_kwargs(config.env.env_id, config.env.eval_kwargs, "env.eval_kwargs")
    try:
        check_training_env(config)
    except EnvSetupError as error:
        fail(str(error))
    if config.model.path:
        check_model_folder(config.model.path, "model.path")
    try:
        check_not_in_use(RunDir(out))
        check_run_folder(RunDir(out), config, resume=resume, overwrite=overwrite)
    except RunFolderError as error:
        fail(str(error))
