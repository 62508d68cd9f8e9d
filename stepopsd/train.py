"""The training loop, read top to bottom.

    for each iteration:
        tasks (this rank's share; groups stay whole on one rank)
        -> rollout (policy x envs)            -> trajectories
        -> compute_advantages (algorithm)     -> per-token advantages
        -> PPO epochs over minibatches        -> optimizer steps (stepopsd.update)
        -> metrics, periodic eval, checkpoint

The start model comes from the CPU lab's one seam (:func:`stepopsd.lab.warm_start.prepare_start_model`:
``model.path``, or a tiny local model, SFT-warmed when ``sft.steps > 0``). Banners in :func:`train`
mark the method (``====``) apart from the plumbing (``----``).

Distributed data parallel comes from ``accelerate`` only: run the same command under
``accelerate launch`` (DDP; FSDP / DeepSpeed through an accelerate config). Rank 0 alone
writes files.

Refused before any work: a folder another process runs in (rank 0 holds the folder's lock for
the whole run), a folder holding another run (unless ``resume`` continues it with the same config,
or ``overwrite`` deletes it), a checkpoint to resume from that holds a file only an unrestricted
pickle load could read, envs that cannot be made and envs that lack what the run
reads from them (:func:`training_needs`, checked by ``stepopsd_envs.contract.check_trainable_env``). Stopped mid-run: a
non-finite gradient norm or weights (:class:`NonFiniteError`), before the step is applied or a
checkpoint is written.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from stepopsd.algo.advantage import ADVANTAGE_METHODS, compute_advantages
from stepopsd.algo.teacher import Teacher
from stepopsd.batch import build_batch
from stepopsd.checkpoint import restore_latest, save_checkpoint, usable_checkpoints
from stepopsd.config import TrainConfig, save_train_config
from stepopsd.evaluate import evaluate_policy, make_eval_envs
from stepopsd.health import health_alarms
from stepopsd.lab.warm_start import (  # the one seam to the CPU lab
    WarmStartError,
    check_first_prompt_fits,
    prepare_start_model,
    start_model_needs,
)
from stepopsd.metrics import MetricsLogger, truncate_metrics
from stepopsd.policy import Policy, encode, load_policy, save_policy
from stepopsd.rollout import make_envs, rollout, rollout_stats
from stepopsd.run_dir import RunDir, check_run_folder, clear_run, run_lock
from stepopsd.tasks import iteration_tasks, rank_share, seed_for
from stepopsd.trajectory import Trajectory
from stepopsd.trajectory_io import save_trajectories
from stepopsd.update import NonFiniteError, TrainState, ppo_update
from stepopsd_envs.contract import TrainingNeeds, UntrainableEnvError, check_trainable_env


class EnvSetupError(ValueError):
    """The run's envs cannot be made with ``env.train_kwargs`` / ``env.eval_kwargs``, or lack what
    the run reads from them (:func:`training_needs`)."""


__all__ = ["EnvSetupError", "NonFiniteError", "check_training_env", "train", "training_needs"]


def train(config: TrainConfig, out_dir: Path, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Run training; returns the final summary (also written to ``out_dir/summary.json``).

    ``out_dir`` must be new or empty, unless ``resume`` (continue the run there; its saved config
    must match in all but ``run.iterations``) or ``overwrite`` (delete the run there first):
    :class:`~stepopsd.run_dir.RunFolderError` otherwise, and when another process runs there.
    Raises :class:`EnvSetupError` when the envs cannot be made or lack what the run reads, when the
    env's first prompt leaves no room to generate or no expert episode of the warm start was won, and
    :class:`NonFiniteError` when training diverges.
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    run = RunDir(out_dir)
    with run_lock(run) if accelerator.is_main_process else nullcontext():
        return _train(config, run, accelerator, resume=resume, overwrite=overwrite)


def _train(config: TrainConfig, run: RunDir, accelerator, *, resume: bool, overwrite: bool) -> dict:
    # ---- plumbing: checks before any work, run folder, start model, optimizer, resume -------------
    is_main = accelerator.is_main_process
    check_run_folder(run, config, resume=resume, overwrite=overwrite)
    num_tasks = config.run.tasks_per_iteration
    envs, eval_envs = _make_envs(config, rank_share(num_tasks, accelerator) * config.rollout.group_size, is_main)
    checkpoints = _open_run(config, run, accelerator, resume=resume, overwrite=overwrite)

    try:
        start_path = prepare_start_model(config, run, accelerator, fresh_run=not checkpoints)
        policy = load_policy(start_path, dtype=config.model.dtype, device=str(accelerator.device),
                             lora_rank=config.model.lora_rank,
                             enable_thinking={"auto": None, "on": True, "off": False}[config.model.thinking])
        check_first_prompt_fits(policy, envs[0], config.rollout)
    except WarmStartError as error:
        if not resume and is_main:
            clear_run(run)  # a new run refused before its work keeps nothing: the corrected command needs no --overwrite
        raise EnvSetupError(str(error)) from None
    teacher = Teacher(policy.model, mode=config.algorithm.teacher_mode,
                      refresh_steps=config.algorithm.teacher_refresh_steps)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.optim.lr,
                                  weight_decay=config.optim.weight_decay)
    model, optimizer = accelerator.prepare(policy.model, optimizer)
    state = TrainState()
    # Saved by stepopsd.checkpoint as JSON and safetensors: accelerate's register_for_checkpointing
    # would load them with pickle, which runs whatever code a planted file holds
    frozen_teacher = teacher.model if teacher.mode == "stale" else None

    logger = MetricsLogger(run, tensorboard=config.run.tensorboard, wandb_project=config.run.wandb_project) \
        if is_main else None
    summary: dict = {}
    if checkpoints:
        checkpoint = restore_latest(accelerator, checkpoints, state, frozen_teacher)
        teacher.snapshot_step = state.teacher_snapshot_step
        if is_main:
            truncate_metrics(run.root, state.iteration)
            print(f"resumed from {checkpoint.name} (iteration {state.iteration})")
    elif config.run.eval_before:
        summary["success_before"] = _evaluate(config, policy, accelerator, logger, eval_envs, iteration=0)

    tokenize = lambda text: encode(policy, text)  # noqa: E731  (hindsight text -> ids)
    time_totals: dict[str, float] = {}
    for iteration in range(state.iteration + 1, config.run.iterations + 1):
        # ==== method: rollout -> credit (GRPO / StepOPSD / baselines) -> PPO update ====================
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        tasks, first_group = iteration_tasks(config.run.seed, iteration, num_tasks, accelerator)
        rollout_config = dataclasses.replace(config.rollout, seed=seed_for(config.run.seed, iteration,
                                                                           accelerator.process_index))
        model.eval()
        trajectories = rollout(policy, envs, tasks, rollout_config, first_group_id=first_group,
                               progress=config.run.progress and is_main)
        timings["time/rollout_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        teacher.sync(state.optimizer_step)
        state.teacher_snapshot_step = teacher.snapshot_step
        credit = compute_advantages(trajectories, config.algorithm, teacher=teacher.model, tokenize=tokenize,
                                    optimizer_step=state.optimizer_step, iteration=iteration,
                                    temperature=config.rollout.sampling.temperature)
        timings["time/advantages_s"] = time.perf_counter() - clock

        clock = time.perf_counter()
        batch = build_batch(trajectories, credit.advantages, pad_id=policy.tokenizer.pad_token_id)
        update_stats = ppo_update(config, model, optimizer, teacher, batch, accelerator, state, iteration)
        timings["time/update_s"] = time.perf_counter() - clock

        # ---- plumbing: metrics, health alarms, trajectory dumps, evaluation, checkpoints -----------
        metrics = _reduce({**rollout_stats(trajectories), **_per_type(trajectories), **credit.stats,
                           **update_stats, **timings}, accelerator)
        metrics["rollout/tokens_per_s"] = metrics["rollout/generated_tokens"] / max(timings["time/rollout_s"], 1e-9)
        alarms = health_alarms(metrics)
        metrics["health/alarms"] = float(len(alarms))
        time_totals = {key: time_totals.get(key, 0.0) + value for key, value in timings.items()}
        state.iteration = iteration
        if is_main:
            logger.log(iteration, metrics)
            print(f"iter {iteration:4d}  success {metrics['rollout/success']:.3f}  "
                  f"mixed {metrics['adv/mixed_group_frac']:.2f}  loss {metrics.get('loss/total', 0.0):+.4f}  "
                  f"({sum(timings.values()):.1f}s)", flush=True)
            for alarm in alarms:
                print(f"warning: iteration {iteration}: {alarm}", flush=True)
            if config.run.save_trajectories_every and iteration % config.run.save_trajectories_every == 0:
                _dump_trajectories(run, iteration, trajectories, credit)
        if config.run.eval_every and iteration % config.run.eval_every == 0 and iteration < config.run.iterations:
            _evaluate(config, policy, accelerator, logger, eval_envs, iteration)
        if iteration == config.run.iterations or (
                config.run.checkpoint_every and iteration % config.run.checkpoint_every == 0):
            _check_finite_weights(model, accelerator, iteration)
            save_checkpoint(accelerator, run, iteration, state, frozen_teacher, keep_last=config.run.keep_checkpoints)
        if alarms and config.run.on_collapse == "stop":
            summary["stopped_early"] = f"iteration {iteration}: {'; '.join(alarms)}"
            if is_main:
                print(f"stopping early (run.on_collapse = stop) after iteration {iteration}", flush=True)
            break

    # ---- plumbing: final evaluation and model ------------------------------------------------------
    summary["success_after"] = _evaluate(config, policy, accelerator, logger, eval_envs, state.iteration)
    summary["time_split"] = _time_split(time_totals, is_main)
    for env in envs + eval_envs:
        env.close()
    summary["replica_checksums"] = _replica_checksums(model, accelerator)
    if is_main:
        save_policy(dataclasses.replace(policy, model=accelerator.unwrap_model(model)), run.final_model)
        summary["final_model"] = str(run.final_model)
        run.summary_json.write_text(json.dumps(summary, indent=2))
        logger.close()
    accelerator.wait_for_everyone()
    return summary


def _time_split(time_totals: dict[str, float], is_main: bool) -> dict[str, float]:
    """Seconds per phase summed over this run's iterations, printed with their shares."""
    total = sum(time_totals.values())
    if is_main and total > 0:
        print("time: " + "  ".join(f"{key.removeprefix('time/').removesuffix('_s')} {value:.0f}s "
                                    f"({100 * value / total:.0f}%)" for key, value in time_totals.items()), flush=True)
    return time_totals


def _open_run(config: TrainConfig, run: RunDir, accelerator, *, resume: bool, overwrite: bool) -> list[Path]:
    """Once every rank has checked the folder: (rank 0) clear it when overwriting and save the
    config; returns the usable checkpoints to resume from, newest first (empty: a fresh start)."""
    accelerator.wait_for_everyone()  # every rank has looked before rank 0 changes anything
    checkpoints = usable_checkpoints(run) if resume else []
    if accelerator.is_main_process:
        if overwrite:
            clear_run(run)
        if resume and not checkpoints:
            print(f"--resume: no complete checkpoint in {run.root}; starting fresh")
        if not checkpoints:
            run.metrics_jsonl.unlink(missing_ok=True)  # a resumed run killed before its first checkpoint
        save_train_config(config, run.config_toml)
    accelerator.wait_for_everyone()
    return checkpoints


def training_needs(config: TrainConfig) -> TrainingNeeds:
    """What a run of ``config`` reads from its env: the start model's SFT (expert, careless
    demonstrator, an expert episode that ends within ``rollout.max_turns``), the method's step labels,
    the rollout's stop strings."""
    labels = config.algorithm.oracle_label if ADVANTAGE_METHODS[config.algorithm.name].reads_labels else ""
    return dataclasses.replace(start_model_needs(config), mistake_label=labels,
                               stop_strings=config.rollout.sampling.stop_strings,
                               expert_turns=config.rollout.max_turns)


def check_training_env(config: TrainConfig, env=None) -> None:
    """Raise :class:`EnvSetupError` when the training env cannot be made or lacks what the run
    reads (:func:`training_needs`), by playing an episode in ``env`` (every rollout resets its envs
    with a seed) or in an env made and closed here."""
    import gymnasium

    made = env is None
    try:
        env = gymnasium.make(config.env.env_id, **config.env.train_kwargs) if made else env
    except (TypeError, ValueError, ImportError, OSError, gymnasium.error.Error) as error:
        raise _env_error(config, "train_kwargs", error) from error
    try:
        check_trainable_env(env, training_needs(config))
    except UntrainableEnvError as error:
        raise EnvSetupError(str(error)) from None
    finally:
        if made:
            env.close()


def _make_envs(config: TrainConfig, count: int, is_main: bool) -> tuple[list, list]:
    """This rank's training envs and (rank 0) the evaluation envs, made once, before anything is
    written or loaded (a bad env option, or an env without what the run reads, leaves the run folder
    as it was)."""
    import gymnasium

    failures = (TypeError, ValueError, ImportError, OSError, gymnasium.error.Error)
    try:
        envs = make_envs(config.env.env_id, count, **config.env.train_kwargs)
    except failures as error:
        raise _env_error(config, "train_kwargs", error) from error
    try:
        check_training_env(config, envs[0])
    except EnvSetupError:
        for env in envs:
            env.close()
        raise
    try:
        eval_envs = make_eval_envs(config) if is_main else []  # rank 0 alone evaluates
    except failures as error:
        for env in envs:
            env.close()
        raise _env_error(config, "eval_kwargs", error) from error
    return envs, eval_envs


def _env_error(config: TrainConfig, kwargs_name: str, error: Exception) -> EnvSetupError:
    kwargs = json.dumps(getattr(config.env, kwargs_name))
    return EnvSetupError(f"cannot make {config.env.env_id} with env.{kwargs_name}={kwargs}: {' '.join(str(error).split())}")


def _check_finite_weights(model, accelerator, iteration: int) -> None:
    """Raise NonFiniteError when any rank holds a NaN or infinite weight (before a checkpoint saves it)."""
    finite = torch.stack([torch.isfinite(p.detach()).all() for p in model.parameters()]).all()
    bad = torch.tensor([0.0 if bool(finite) else 1.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if float(bad.sum()) > 0:
        raise NonFiniteError(f"iteration {iteration}: the weights hold NaN or infinite values; stopped before "
                             "checkpointing them (checkpoints on disk stay as they were). Lower optim.lr and start again "
                             "(--overwrite or a new --out)")


def _per_type(trajectories: list[Trajectory]) -> dict[str, float]:
    by_type: dict[str, list[bool]] = {}
    for traj in trajectories:
        by_type.setdefault(traj.task_type or "all", []).append(traj.success)
    return {f"rollout/success/{name}": sum(flags) / len(flags) for name, flags in by_type.items()}


def _reduce(metrics: dict[str, float], accelerator) -> dict[str, float]:
    """Mean of every metric over ranks (keys must agree; per-type keys may not, so those stay local)."""
    if accelerator.num_processes == 1:
        return metrics
    shared = sorted(k for k in metrics if not k.startswith("rollout/success/"))
    values = torch.tensor([float(metrics[k]) for k in shared], device=accelerator.device)
    reduced = accelerator.reduce(values, reduction="mean").tolist()
    return {**metrics, **dict(zip(shared, reduced))}


def _evaluate(config: TrainConfig, policy: Policy, accelerator, logger, eval_envs: list,
              iteration: int) -> dict[str, float]:
    accelerator.wait_for_everyone()
    table: dict[str, float] = {}
    if accelerator.is_main_process:
        table = evaluate_policy(policy, config, envs=eval_envs, progress=config.run.progress)
        table = {k: v for k, v in table.items() if v == v}  # NaN: a task type the eval split does not hold
        logger.log(iteration, {f"eval/success/{k}": v for k, v in table.items()} | {"eval/success": table["All"]})
        print(f"eval @ iteration {iteration}: " + "  ".join(f"{k} {v:.1f}" for k, v in table.items()), flush=True)
    accelerator.wait_for_everyone()
    return table


def _replica_checksums(model, accelerator) -> list[float]:
    """A weight checksum per rank: data-parallel replicas must stay identical."""
    checksum = sum(p.detach().double().sum() for p in model.parameters()).reshape(1).to(accelerator.device)
    return accelerator.gather(checksum).tolist()


def _dump_trajectories(run: RunDir, iteration: int, trajectories: list[Trajectory], credit) -> None:
    """Trajectories with their credit in ``metadata["credit"]`` (``stepopsd inspect`` reads them)."""
    run.trajectories.mkdir(exist_ok=True)
    with_credit = [
        dataclasses.replace(traj, metadata={**traj.metadata, "credit": {
            "outcome_advantage": round(float(outcome), 6),
            "token_advantages": [round(a, 6) for a in advantages.tolist()],
            "delta": [round(d, 6) for d in delta.tolist()],
        }})
        for traj, outcome, advantages, delta in zip(trajectories, credit.outcome_advantages, credit.advantages,
                                                    credit.deltas)
    ]
    save_trajectories(with_credit, run.trajectories_file(iteration))
