"""The model RL starts from: ``model.path`` or a tiny local model, warmed by SFT on the env's
expert when ``sft.steps > 0`` (then ``sft.then``'s phase). The trainer and ``stepopsd sft`` share :func:`sft_warm_start`."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stepopsd.config import SFTConfig, TrainConfig
from stepopsd.lab.hindsight_rows import (
    ROW_PEER_RULES, careless_replays, corrected_rows, expert_response, hindsight_sft_trajectories, slip_replays,
)
from stepopsd.lab.sft import expert_trajectories, sft
from stepopsd.lab.tiny import build_tiny_model
from stepopsd.policy import Policy, encode, load_policy, save_policy
from stepopsd.rollout import RolloutConfig, Task, first_prompt_ids, make_envs, rollout_in_chunks
from stepopsd.run_dir import RunDir, check_model_source
from stepopsd.tasks import ENVS_AT_ONCE, game_tasks, seed_for
from stepopsd.trajectory import Trajectory
from stepopsd_envs.contract import TrainingNeeds


class WarmStartError(ValueError):
    """The start model cannot be made from this config: no expert episode won, or the env's first
    prompt leaves no room to generate."""


def check_first_prompt_fits(policy: Policy, env, rollout: RolloutConfig, seed: int = 0) -> None:
    """Raise :class:`WarmStartError` unless the env's first prompt (reset with ``seed``) and
    ``rollout.sampling.max_new_tokens`` fit ``rollout.max_context_tokens``: otherwise every episode
    ends before its first step, and SFT or RL trains on nothing."""
    prompt = first_prompt_ids(policy, env, Task(seed=seed), rollout)
    if prompt is None:  # the reset failed: the env's own check says why
        return
    needed = len(prompt) + rollout.sampling.max_new_tokens
    if needed > rollout.max_context_tokens:
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise WarmStartError(
            f"rollout.max_context_tokens={rollout.max_context_tokens} cannot hold {name}'s first prompt "
            f"({len(prompt)} tokens, seed {seed}) and rollout.sampling.max_new_tokens={rollout.sampling.max_new_tokens}; "
            f"every episode would end before its first step: raise rollout.max_context_tokens to at least {needed}")


@dataclass(frozen=True)
class WarmStart:
    """What a warm start played and learnt."""

    episodes: int  # expert episodes played (the careless demonstrator's included)
    won: int  # of which won (SFT trains on those, and on every careless episode)
    careless: int  # episodes played by the careless demonstrator (sft.careless_rate)
    hindsight_rows: int  # extra single-step rows with a hindsight block (sft.hindsight_rows)
    losses: list[float]  # SFT loss of every step
    checks: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (steps done, greedy success) per check


class ExpertEpisodes:
    """The expert's episodes by task, each played once over a warm start's phases: the phases
    share the tokenizer, the rollout's prompts and the env, so a task's episode is the same in
    each (``sft.then`` changes SFT fields only)."""

    def __init__(self) -> None:
        self._by_task: dict[tuple[int | None, str], Trajectory] = {}

    def play(self, policy: Policy, envs: Sequence, tasks: Sequence[Task], rollout: RolloutConfig) -> list[Trajectory]:
        def key(task: Task) -> tuple[int | None, str]:
            return task.seed, json.dumps(task.options, sort_keys=True)

        missing = [task for task in tasks if key(task) not in self._by_task]
        if missing:
            for task, trajectory in zip(missing, expert_trajectories(policy, envs, missing, rollout)):
                self._by_task[key(task)] = trajectory
        return [self._by_task[key(task)] for task in tasks]


def sft_warm_start(policy: Policy, config: TrainConfig,
                   on_step: Callable[[int, float], None] | None = None,
                   on_check: Callable[[int, float], None] | None = None,
                   experts: ExpertEpisodes | None = None, state: Path | None = None) -> WarmStart:
    """Fine-tune ``policy`` in place on ``run.sft_expert_episodes`` episodes of the training
    env's expert (the won ones), played with the rollout's prompts (``config.rollout``), for
    ``config.sft``.

    With ``sft.careless_rate`` that share of the episodes is played by a careless demonstrator
    (:func:`stepopsd.lab.careless.careless_action`) and kept won or lost: the model learns the
    skill from the expert's episodes and a preference against it from the careless ones, a
    start RL can improve by shifting that preference (what RL does to a pretrained LLM).

    With ``sft.hindsight_rows`` it also trains on each expert step placed after the hindsight
    block a teacher is shown (:mod:`stepopsd.lab.hindsight_rows`); with ``sft.hindsight_peer =
    "other_episode"`` it first replays each won scene with one recovered slip: the rows' peers, a
    second won episode of each scene. With ``sft.stop_at_success`` it plays
    ``sft.check_episodes`` greedy episodes every ``sft.check_every`` steps and stops at the
    first check that reaches that success: competence comes as a cliff in the steps, so a fixed
    step count cannot stop a small model at partial competence on every machine and tokenizer.
    ``experts`` keeps the expert's episodes for the next phase (:class:`ExpertEpisodes`). With ``state``
    (a folder) the training goes on from the state a killed call left there (:func:`stepopsd.lab.sft.sft`;
    the episodes and rows are played again, the same), its checks made before it excepted.
    Raises ValueError when the env has no expert, :class:`WarmStartError` when no expert episode was won
    or the first prompt cannot fit (:func:`check_first_prompt_fits`).
    """
    episodes = config.run.sft_expert_episodes
    envs = make_envs(config.env.env_id, min(ENVS_AT_ONCE, max(episodes, config.sft.check_episodes)),
                     **config.env.train_kwargs)
    try:
        check_first_prompt_fits(policy, envs[0], config.rollout)
        tasks = game_tasks(envs[0], episodes, first_seed=seed_for(config.run.seed, -1), options={"expert": True})
        careless = round(config.sft.careless_rate * episodes)
        careless_tasks = tasks[:careless]
        if config.sft.careless_choice == "env":
            careless_tasks = [dataclasses.replace(task, options={**task.options, "careless": True})
                              for task in careless_tasks]
        one_by_one = dataclasses.replace(config.rollout, group_size=1)
        played = (experts or ExpertEpisodes()).play(policy, envs, tasks[careless:], one_by_one)
        careless_played = expert_trajectories(policy, envs, careless_tasks, one_by_one,
                                              careless_verb=config.sft.careless_verb,
                                              careless_choice=config.sft.careless_choice) if careless else []
        won = [t for t in played if t.success]
        if not won:
            raise WarmStartError(f"no expert episode of {config.env.env_id} was won; nothing to learn from")
        rows = hindsight_rows(policy, envs, config, tasks[:careless], careless_played, won,
                              [task for task, episode in zip(tasks[careless:], played) if episode.success], one_by_one)
        checks: list[tuple[int, float]] = []
        stop = None
        if config.sft.stop_at_success > 0:
            check_tasks = game_tasks(envs[0], config.sft.check_episodes, first_seed=seed_for(config.run.seed, -2))
            greedy = dataclasses.replace(config.rollout, group_size=1,
                                         sampling=dataclasses.replace(config.rollout.sampling, temperature=0.0))

            def stop(step: int) -> bool:
                if (step + 1) % config.sft.check_every:
                    return False
                checked = rollout_in_chunks(policy, envs, check_tasks, greedy)
                checks.append((step + 1, sum(t.success for t in checked) / len(checked)))
                if on_check is not None:
                    on_check(*checks[-1])
                return checks[-1][1] >= config.sft.stop_at_success

        losses = sft(policy, won + careless_played + rows, config.sft, on_step=on_step, stop=stop, state=state)
    finally:
        for env in envs:
            env.close()
    return WarmStart(len(played) + careless, len(won) + sum(t.success for t in careless_played), careless,
                     len(rows), losses, checks)


def hindsight_rows(policy: Policy, envs: Sequence, config: TrainConfig, careless_scenes: Sequence[Task],
                   careless_played: Sequence[Trajectory], won: Sequence[Trajectory], won_tasks: Sequence[Task],
                   rollout: RolloutConfig) -> list[Trajectory]:
    """The warm start's hindsight rows (none unless ``sft.hindsight_rows``), cut from the won expert episodes or,
    with ``sft.hindsight_contexts = "careless"``, from the careless ones (:func:`corrected_rows`; the peers:
    slip replays of ``careless_scenes``, the careless episodes' tasks played by the expert, and with
    ``sft.hindsight_peer_draws`` the careless demonstrator's wins of other draws, :func:`careless_replays`)."""
    sft = config.sft
    if not sft.hindsight_rows:
        return []
    tokenize = functools.partial(encode, policy)
    block = {"peer_token_budget": config.algorithm.peer_token_budget,
             "correctness_line": config.algorithm.correctness_line, "peer_view": config.algorithm.peer_view}
    if sft.hindsight_contexts == "careless":
        peers = slip_replays(policy, envs, careless_scenes, rollout, sft.careless_verb, sft.seed)
        if sft.hindsight_peer_draws:
            peers += careless_replays(policy, envs, careless_scenes, rollout, sft.hindsight_peer_draws)
        return corrected_rows(careless_played, peers, tokenize, expert_response(policy, envs[0].unwrapped.protocol),
                              verb=sft.careless_verb, swap_share=sft.hindsight_swap, seed=sft.seed, **block)
    peers = won
    if ROW_PEER_RULES[sft.hindsight_peer].replays:
        peers = slip_replays(policy, envs, won_tasks, rollout, sft.careless_verb, sft.seed)
    return hindsight_sft_trajectories(won, tokenize, peers=peers, peer_rule=sft.hindsight_peer, **block)


def sft_phases(config: TrainConfig) -> list[TrainConfig]:
    """``config`` once per SFT phase that trains (``sft.phases()`` with steps > 0), its ``sft`` that phase's;
    none when ``sft.steps`` is 0: that turns the warm start off, ``sft.then`` included (a run from an
    SFT'd ``model.path`` must not get the second phase again)."""
    if config.sft.steps == 0:
        return []
    return [dataclasses.replace(config, sft=phase) for phase in config.sft.phases() if phase.steps > 0]


def start_model_needs(config: TrainConfig) -> TrainingNeeds:
    """What the warm start reads from the env: its expert when SFT trains, and the careless
    demonstrator's needs when a phase plays careless episodes."""
    phases = sft_phases(config)
    careless = next((phase.sft.careless_choice for phase in phases if phase.sft.careless_rate > 0), "")
    return TrainingNeeds(expert=bool(phases), careless_choice=careless)


def prepare_start_model(config: TrainConfig, run: RunDir, accelerator, *, fresh_run: bool) -> Path:
    """The folder RL starts from: ``model.path`` or ``RUN/tiny_model``, then ``RUN/sft_model``
    when ``sft.steps > 0``. Rank 0 builds what is missing; the others wait and load the result.
    With ``sft.save_every``, a build killed midway goes on from ``RUN/sft_state`` (removed once the
    start is saved), to the same weights.
    ValueError when ``model.path`` names a folder that holds no model."""
    if config.model.path:
        check_model_source(config.model.path)
    base = Path(config.model.path) if config.model.path else run.tiny_model
    phases = sft_phases(config)
    start = run.sft_model if phases else base
    if accelerator.is_main_process and fresh_run:
        if not config.model.path and not (base / "config.json").is_file():
            build_tiny_model(base, config.model.tiny, run_env_id=config.env.env_id)
            print(f"built tiny model in {base}")
        if phases and not (start / "config.json").is_file():
            policy = load_policy(base, dtype=config.model.dtype)
            experts = ExpertEpisodes()
            for number, phase in enumerate(phases, start=1):
                _report(sft_warm_start(policy, phase, on_step=_print_loss(phase.sft), on_check=_print_check(phase.sft),
                                       experts=experts, state=run.sft_state / f"phase-{number}"),
                        f" phase {number}" if len(phases) > 1 else "")
            save_policy(policy, start)
            shutil.rmtree(run.sft_state, ignore_errors=True)
    accelerator.wait_for_everyone()
    return start


def _print_loss(phase: SFTConfig) -> Callable[[int, float], None]:
    every = max(1, phase.steps // 10)
    return lambda step, loss: print(f"  sft step {step + 1}/{phase.steps}  loss {loss:.3f}", flush=True) \
        if (step + 1) % every == 0 else None


def _print_check(phase: SFTConfig) -> Callable[[int, float], None]:
    return lambda steps, success: print(f"  sft step {steps}: greedy success {success:.1%} on {phase.check_episodes} "
                                        f"training tasks (stops at {phase.stop_at_success:.0%})", flush=True)


def _report(report: WarmStart, phase: str) -> None:
    print(f"SFT warm start{phase}: {report.episodes} expert trajectories ({report.won} won, {report.careless} careless, "
          f"{report.hindsight_rows} hindsight rows), {len(report.losses)} steps, "
          f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}")
