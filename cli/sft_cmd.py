"""``stepopsd sft``: the trainer's SFT warm start (:func:`stepopsd.lab.warm_start.sft_warm_start`) on any model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stepopsd_cli.errors import check_env_id, check_env_kwargs, check_model_folder, check_new_folder, fail
from stepopsd_cli.options import SET_HELP, ContextMode, config_overrides, load_config, output_folder

app = typer.Typer(add_completion=False)

DEFAULTS = {"run.sft_expert_episodes": 256, "sft.steps": 200}  # a standalone warm start (the trainer's: 64, 0)


@app.command("sft")
def sft_command(
    model: Annotated[Path, typer.Option(help="Model folder (or hub id) to start from.")],
    env: Annotated[str, typer.Option(help="Env id with an expert, e.g. stepopsd/ALFWorld-v0 (env.env_id).")],
    out: Annotated[Path, typer.Option(
        help="New or empty folder to save the fine-tuned model and tokenizer to (created; not --model).")],
    episodes: Annotated[Optional[int], typer.Option(
        min=1, help="Expert episodes to play [default: 256] (run.sft_expert_episodes).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps [default: 200] (sft.steps).")] = None,
    batch_rows: Annotated[Optional[int], typer.Option(
        min=1, help="Sequences per step: a trajectory (full mode) or one step's prompt + response (window) "
                    "[default: 32] (sft.batch_rows).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate [default: 1e-3] (sft.lr).")] = None,
    context_mode: Annotated[Optional[ContextMode], typer.Option(
        help="Prompt layout, as the later rollouts [default: full] (rollout.context_mode).")] = None,
    history_steps: Annotated[Optional[int], typer.Option(
        help="Window mode: steps of history per prompt [default: 3] (rollout.history_steps).")] = None,
    show_admissible_actions: Annotated[Optional[bool], typer.Option(
        help="List the admissible actions after the current observation, as the later rollouts "
             "(rollout.show_admissible_actions).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the episodes and the batches (run.seed, sft.seed).")] = None,
    set_fields: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP,
                                                  show_default=False)] = [],
) -> None:
    """Play expert episodes in ENV, fine-tune MODEL on the won ones' generated tokens, save to OUT."""
    overrides = DEFAULTS | config_overrides(set_fields, {
        "env.env_id": env, "run.sft_expert_episodes": episodes, "sft.steps": steps, "sft.batch_rows": batch_rows,
        "sft.lr": lr, "rollout.context_mode": context_mode, "rollout.history_steps": history_steps,
        "rollout.show_admissible_actions": show_admissible_actions, "run.seed": seed, "sft.seed": seed,
    })
    config = load_config(None, overrides)
    if out.resolve() == model.resolve():
        fail(f"--out {out} is the input --model; save the fine-tuned model to a new folder")
    check_new_folder(out)
    check_model_folder(model)
    check_env_id(config.env.env_id, "--env")
    check_env_kwargs(config.env.env_id, config.env.train_kwargs, "env.train_kwargs")
    from rich.progress import Progress

    from stepopsd.policy import ModelFolderError, load_policy, save_policy
    from stepopsd.lab.warm_start import ExpertEpisodes, sft_phases, sft_warm_start

    try:
        policy = load_policy(model, dtype=config.model.dtype)
    except ModelFolderError as error:  # one line naming the folder
        fail(str(error))
    phases = sft_phases(config)
    experts = ExpertEpisodes()
    for number, phase in enumerate(phases, start=1):
        named = f"phase {number}: " if len(phases) > 1 else ""
        try:
            with Progress() as progress:  # closed before an error line, which is then the last line
                bar = progress.add_task(f"{named}expert episodes, then sft", total=phase.sft.steps)
                report = sft_warm_start(policy, phase, on_step=lambda step, loss: progress.update(
                    bar, advance=1, description=f"{named}sft loss {loss:.3f}"), on_check=lambda steps, success: progress.console.print(
                    f"step {steps}: greedy success {success:.1%} (stops at {phase.sft.stop_at_success:.0%})"),
                    experts=experts)
        except ValueError as error:  # no expert, no episode won, a first prompt the context cannot hold
            fail(str(error))
        typer.echo(f"{named}{report.won}/{report.episodes} expert episodes won; trained on those"
                   + (f", every one of the {report.careless} careless episodes" if report.careless else "")
                   + (f" and {report.hindsight_rows} hindsight rows" if report.hindsight_rows else "")
                   + f"; {len(report.losses)} steps, loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}")
    from stepopsd.run_dir import WriteFailedError

    try:
        save_policy(policy, output_folder(out))
    except WriteFailedError as error:
        fail(str(error), exit_code=1)
    typer.echo(f"saved to {out}")
