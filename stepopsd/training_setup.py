"""What the training loop needs around it: the start model, task streams, seeds, evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import gymnasium

from stepopsd.config import TrainConfig
from stepopsd.evaluate import success_table
from stepopsd.policy import Policy, SamplingConfig, load_policy
from stepopsd.rollout import Task, make_envs, rollout_in_chunks
from stepopsd.sft import expert_trajectories, save_policy, sft
from stepopsd.tiny import build_tiny_model
from stepopsd.trajectory import Trajectory
from stepopsd_envs.plugins import env_class

EVAL_SEED_OFFSET = 10_000_000  # evaluation scenes never coincide with training draws
ENVS_AT_ONCE = 32  # envs alive at once while playing the SFT experts and the evaluation


def seed_for(*parts: int) -> int:
    """A stable 31-bit seed from integers (same on every machine and Python run)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def rank_share(num_tasks: int, accelerator) -> int:
    """Tasks this rank rolls out per iteration (tasks are dealt round-robin)."""
    rank, world = accelerator.process_index, accelerator.num_processes
    return len(range(rank, num_tasks, world))


def iteration_tasks(seed: int, iteration: int, num_tasks: int, accelerator) -> tuple[list[Task], int]:
    """This rank's tasks of an iteration and the group id of its first one.

    Task k of iteration i resets every env of its group with the same seed, so the group
    plays one scene; group ids are unique across ranks and iterations.
    """
    mine = range(accelerator.process_index, num_tasks, accelerator.num_processes)
    tasks = [Task(seed=seed_for(seed, iteration, k)) for k in mine]
    return tasks, iteration * num_tasks + accelerator.process_index * len(tasks)


def prepare_start_model(config: TrainConfig, out_dir: Path, accelerator, *, fresh_run: bool) -> Path:
    """The model RL starts from: ``model.path`` or a tiny local model, SFT-warmed when asked.

    Rank 0 builds; the others wait and load the result.
    """
    base = Path(config.model.path) if config.model.path else out_dir / "tiny_model"
    start = out_dir / "sft_model" if config.sft.steps > 0 else base
    if accelerator.is_main_process and fresh_run:
        if not config.model.path and not (base / "config.json").is_file():
            build_tiny_model(base, config.model.tiny)
            print(f"built tiny model in {base}")
        if config.sft.steps > 0 and not (start / "config.json").is_file():
            _sft_warm_start(config, base, start)
    accelerator.wait_for_everyone()
    return start


def _sft_warm_start(config: TrainConfig, base: Path, out: Path) -> None:
    policy = load_policy(base, dtype=config.model.dtype)
    episodes = config.run.sft_expert_episodes
    envs = make_envs(config.env.env_id, min(ENVS_AT_ONCE, episodes), **config.env.train_kwargs)
    tasks = game_tasks(envs[0], episodes, first_seed=seed_for(config.run.seed, -1), options={"expert": True})
    expert_config = dataclasses.replace(config.rollout, group_size=1)
    trajectories = expert_trajectories(policy, envs, tasks, expert_config)
    wins = sum(t.success for t in trajectories)
    print(f"SFT warm start: {len(trajectories)} expert trajectories ({wins} won), {config.sft.steps} steps")
    report_every = max(1, config.sft.steps // 10)
    losses = sft(policy, [t for t in trajectories if t.success], config.sft,
                 on_step=lambda step, loss: print(f"  sft step {step + 1}/{config.sft.steps}  loss {loss:.3f}",
                                                  flush=True) if (step + 1) % report_every == 0 else None)
    print(f"SFT loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    save_policy(policy, out)
    for env in envs:
        env.close()


def game_tasks(env, episodes: int, first_seed: int, options: dict | None = None) -> list[Task]:
    """Tasks over an env's game list, spread evenly over it (cycling when there are more episodes
    than games), or seeded scenes for envs without a list; ``options`` go to every reset.

    Game lists are sorted by path, i.e. grouped by task type: taking the first N games would
    leave whole task types out.
    """
    games = getattr(env.unwrapped, "games", None)
    if games:
        spread = (lambda k: k * len(games) // episodes) if episodes <= len(games) else (lambda k: k % len(games))
        return [Task(seed=first_seed + k, options={**(options or {}), "game_index": spread(k)})
                for k in range(episodes)]
    return [Task(seed=first_seed + k, options=dict(options or {})) for k in range(episodes)]


def evaluation_tasks(env, episodes: int) -> list[Task]:
    """One task per game for envs with a game list (at most one pass), else seeded scenes."""
    games = getattr(env.unwrapped, "games", None)
    return game_tasks(env, min(episodes, len(games)) if games else episodes, first_seed=EVAL_SEED_OFFSET)


def make_eval_envs(config: TrainConfig) -> list[gymnasium.Env]:
    """The evaluation envs; make them once and pass them to every evaluation (an ALFWorld env holds an engine)."""
    return make_envs(config.env.env_id, min(ENVS_AT_ONCE, config.env.eval_episodes), **config.env.eval_kwargs)


def evaluate_policy(policy: Policy, config: TrainConfig, *, envs: Sequence[gymnasium.Env] | None = None,
                    progress: bool = False, sampling: SamplingConfig | None = None) -> dict[str, float]:
    """Greedy success table (%) of ``policy`` on the eval env, in the env's column order."""
    trajectories = play_evaluation(policy, config, envs=envs, sampling=sampling, progress=progress)
    return success_table(trajectories, table_columns(config.env.env_id))


def table_columns(env_id: str) -> list[str]:
    """The task-type columns an env class declares for its success table (may be empty)."""
    return [c for c in getattr(env_class(env_id), "table_columns", ()) if c != "All"]


def play_evaluation(policy: Policy, config: TrainConfig, *, envs: Sequence[gymnasium.Env] | None = None,
                    sampling: SamplingConfig | None = None, progress: bool = False) -> list[Trajectory]:
    """The evaluation episodes (greedy by default) through ``envs`` (made and closed here when None)."""
    own_envs = envs is None
    envs = make_eval_envs(config) if own_envs else envs
    tasks = evaluation_tasks(envs[0], config.env.eval_episodes)
    greedy = dataclasses.replace(config.rollout.sampling, temperature=0.0)
    eval_config = dataclasses.replace(config.rollout, group_size=1, sampling=sampling or greedy)
    trajectories = rollout_in_chunks(policy, envs, tasks, eval_config, progress=progress)
    if own_envs:
        for env in envs:
            env.close()
    return trajectories
