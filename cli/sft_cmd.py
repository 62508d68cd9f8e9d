"""``stepopsd sft``: supervised warm start on expert trajectories replayed through an env."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepopsd_cli.errors import fail, make_env


def register(app: typer.Typer) -> None:
    @app.command("sft")
    def sft_command(
        model: Annotated[Path, typer.Option(help="Model folder (or hub id) to start from.")],
        env: Annotated[str, typer.Option(help="Env id with an expert plan, e.g. stepopsd/ALFWorld-v0.")],
        out: Annotated[Path, typer.Option(help="Folder to save the fine-tuned model and tokenizer to.")],
        episodes: Annotated[int, typer.Option(min=1, help="Expert episodes to replay.")] = 256,
        steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 200,
        batch_rows: Annotated[int, typer.Option(
            min=1, help="Sequences per step: a trajectory (full mode) or one step's prompt + response (window).")] = 32,
        lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
        context_mode: Annotated[str, typer.Option(help="full or window (as the later rollouts).")] = "full",
        history_steps: Annotated[int, typer.Option(help="Window mode: steps of history per prompt.")] = 3,
        show_admissible_actions: Annotated[bool, typer.Option(
            help="List the admissible actions after the current observation (as the later rollouts).")] = False,
        seed: Annotated[int, typer.Option(help="Seed of the first episode and of the batches.")] = 0,
    ) -> None:
        """Replay EPISODES expert episodes, fine-tune on their generated tokens, save to OUT."""
        from rich.progress import Progress

        from stepopsd.policy import load_policy
        from stepopsd.rollout import RolloutConfig, Task
        from stepopsd.sft import SFTConfig, expert_trajectories, save_policy, sft
        from stepopsd.training_setup import ENVS_AT_ONCE, game_tasks

        if context_mode not in ("full", "window"):
            fail(f"--context-mode must be full or window, got {context_mode!r}")
        envs = [make_env(env) for _ in range(min(episodes, ENVS_AT_ONCE))]
        try:
            policy = load_policy(model)
        except OSError as error:
            fail(f"could not load a model from {model}: {error}")
        tasks = game_tasks(envs[0], episodes, first_seed=seed, options={"expert": True})
        try:
            rollout_config = RolloutConfig(context_mode=context_mode, history_steps=history_steps,
                                           show_admissible_actions=show_admissible_actions)
            trajectories = expert_trajectories(policy, envs, tasks, rollout_config)
        except ValueError as error:
            fail(str(error))
        winners = [t for t in trajectories if t.success]
        typer.echo(f"{len(winners)}/{len(trajectories)} expert episodes won; training on those")
        if not winners:
            fail(f"no expert episode of {env} was won; nothing to learn from")
        with Progress() as progress:
            bar = progress.add_task("sft", total=steps)
            losses = sft(policy, winners, SFTConfig(steps=steps, batch_rows=batch_rows, lr=lr, seed=seed),
                         on_step=lambda step, loss: progress.update(bar, advance=1, description=f"sft loss {loss:.3f}"))
        out.mkdir(parents=True, exist_ok=True)
        save_policy(policy, out)
        typer.echo(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; saved to {out}")
