"""``stepopsd rollout``: play episodes and write schema trajectories (JSONL)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from stepopsd_cli.errors import check_env_id, check_env_kwargs, check_model_folder, check_output_file, fail, make_env
from stepopsd_cli.options import ContextMode

app = typer.Typer(add_completion=False)


class ScriptedPolicy(str, Enum):
    scripted = "scripted"
    random = "random"


@app.command("rollout")
def rollout(
    env_id: Annotated[str, typer.Argument(help="A registered env id, e.g. stepopsd/FetchItem-v0.")],
    out: Annotated[Path, typer.Option(help="Output JSONL file of trajectories (folders created; an existing file "
                                           "needs --overwrite).")] = Path("trajectories.jsonl"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out when it exists.")] = False,
    env_kwargs: Annotated[str, typer.Option(
        metavar="JSON", help='Keyword arguments of gymnasium.make, a JSON object, e.g. \'{"num_places": 2}\'.')] = "{}",
    policy: Annotated[ScriptedPolicy, typer.Option(help="Text policy when no --model is given.")] = ScriptedPolicy.scripted,
    model: Annotated[Path | None, typer.Option(help="Model folder (or hub id): roll out this LM instead.")] = None,
    episodes: Annotated[int, typer.Option(min=1, help="Number of tasks (episodes per rollout slot).")] = 4,
    group: Annotated[int, typer.Option(min=1, help="Rollouts per task (GRPO group size); --model only.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first episode; episode i uses seed + i.")] = 0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy); --model only.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per turn; --model only.")] = 128,
    context_mode: Annotated[ContextMode, typer.Option(help="Prompt layout; --model only.")] = ContextMode("full"),
    history_steps: Annotated[int, typer.Option(
        min=0, help="Window mode: steps of history per prompt, as the model was trained; --model only.")] = 3,
    show_admissible_actions: Annotated[bool, typer.Option(
        help="List the admissible actions after the current observation, as the model was trained; "
             "--model only.")] = False,
) -> None:
    """Play EPISODES episodes with a scripted/random policy or a model and save the trajectories."""
    from stepopsd.trajectory_io import save_trajectories

    make_kwargs = _json_object(env_kwargs, "--env-kwargs")
    check_env_id(env_id)
    check_env_kwargs(env_id, make_kwargs, "--env-kwargs")
    check_output_file(out, overwrite=overwrite)  # before any episode: a bad --out must not lose them
    from stepopsd.terminal import episode_errors, errors_summary

    if model is None:
        trajectories, errors = _scripted(env_id, make_kwargs, policy, episodes, seed)
        episodes_played = len(trajectories) + len(errors)
    else:
        check_model_folder(model)
        trajectories = _model(env_id, make_kwargs, model, episodes, group, seed, temperature, max_new_tokens,
                              context_mode.value, history_steps, show_admissible_actions)
        errors, episodes_played = episode_errors(trajectories), len(trajectories)
    if errors and len(errors) == episodes_played:
        fail(f"{errors_summary(errors, episodes_played)}; nothing written", exit_code=1)
    from stepopsd.run_dir import WriteFailedError

    try:
        save_trajectories(trajectories, out)
    except WriteFailedError as error:
        fail(str(error), exit_code=1)
    wins = sum(t.success for t in trajectories)
    typer.echo(f"wrote {len(trajectories)} trajectories to {out}: {wins}/{len(trajectories)} successful")
    if errors:
        typer.echo(f"warning: {errors_summary(errors, episodes_played)}"
                   + ("; those are not written" if model is None else "; they count as failures"), err=True)


def _json_object(text: str, option: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{option}: not valid JSON ({error.msg} at column {error.colno}); give an object, "
             'e.g. {"max_episode_steps": 10}')
    if not isinstance(value, dict):
        fail(f"{option} must be a JSON object of keyword arguments, got {text}")
    return value


def _scripted(env_id: str, make_kwargs: dict, policy: ScriptedPolicy, episodes: int, seed: int):
    """(trajectories of the episodes that finished, errors of those the env ended by raising)."""
    from rich.progress import track

    from stepopsd.episodes import expert_output_fn, play_text_episode, random_output_fn

    env = make_env(env_id, **make_kwargs)
    output_fn = expert_output_fn(env) if policy == ScriptedPolicy.scripted else random_output_fn(env, seed)
    trajectories, errors = [], []
    for i in track(range(episodes), description=f"{env_id} ({policy.value})"):
        try:
            trajectories.append(play_text_episode(env, output_fn, seed=seed + i, group_id=i,
                                                  trajectory_id=f"{env_id}/{seed + i}"))
        except Exception as error:  # a broken env (or one without an expert) ends this episode only, as in rollout()
            errors.append(f"{type(error).__name__}: {error}")
    return trajectories, errors


def _model(env_id: str, make_kwargs: dict, model: Path, episodes: int, group: int, seed: int, temperature: float,
           max_new_tokens: int, context_mode: str, history_steps: int, show_admissible_actions: bool):
    from stepopsd.config import RolloutConfig, SamplingConfig

    try:
        config = RolloutConfig(group_size=group, context_mode=context_mode, seed=seed, history_steps=history_steps,
                               show_admissible_actions=show_admissible_actions,
                               sampling=SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens))
    except ValueError as error:
        fail(str(error))
    if max_new_tokens >= config.max_context_tokens:
        fail(f"--max-new-tokens must stay below the context limit ({config.max_context_tokens}), got {max_new_tokens}")
    envs = [make_env(env_id, **make_kwargs) for _ in range(episodes * group)]
    from stepopsd.policy import ModelFolderError, load_policy
    from stepopsd.rollout import Task, rollout

    try:
        policy = load_policy(model)
    except ModelFolderError as error:
        fail(str(error))
    return rollout(policy, envs, [Task(seed=seed + i) for i in range(episodes)], config, progress=True)
