"""Where each arm's credit lands on one batch, before any RL: mean advantage per step kind and outcome.

    python benchmarks/credit_size.py --env errandchain-independent --start-model OUT/errandchain-independent/start/sft_model
    python benchmarks/credit_size.py --env errandchain-pointer --start-model M --record benchmarks/results/credit-size/pointer.json

One rollout batch of the env's benchmark config (bench_learning.py's ENVS) from the start model,
then each arm's advantages on that same batch (ARMS: its config overrides). Per arm: mean |A| per
generated token, and the mean advantage of a step's response tokens by (episode won or lost, step
kind): ``mistake`` (``info["mistake"]``: a wrong take), ``decisive`` (a right take), ``other``. An
upper bound is only an upper bound when it separates right takes from wrong ones where GRPO does not;
this says whether it does, before CPU goes into learning runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

from bench_learning import ARMS, ENVS, bench_config
from record import write_record


def step_kind(info: dict) -> str:
    return "mistake" if info.get("mistake") else "decisive" if info.get("decisive") else "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=sorted(ENVS), required=True)
    parser.add_argument("--start-model", type=Path, required=True)
    parser.add_argument("--arms", nargs="+", default=["grpo", "oracle-full", "oracle-signed"], choices=sorted(ARMS))
    parser.add_argument("--tasks", type=int, default=8, help="tasks of the batch (x the config's group size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from stepopsd.algo.advantage import compute_advantages
    from stepopsd.policy import encode, load_policy
    from stepopsd.rollout import Task, make_envs, rollout

    base = bench_config(args.env, {})
    policy = load_policy(args.start_model, dtype=base.model.dtype)
    envs = make_envs(base.env.env_id, args.tasks * base.rollout.group_size, **base.env.train_kwargs)
    batch = rollout(policy, envs, [Task(seed=1000 + t) for t in range(args.tasks)],
                    dataclasses.replace(base.rollout, seed=7))
    mistakes = statistics.mean(sum(step_kind(s.info) == "mistake" for s in t.steps) for t in batch)
    success = sum(t.success for t in batch) / len(batch)
    print(f"{args.env}: {len(batch)} episodes, sampled success {100 * success:.1f}%, {mistakes:.2f} wrong takes each")
    figures: dict[str, dict] = {}
    for arm in args.arms:
        config = bench_config(args.env, {}, ARMS[arm]).algorithm
        credit = compute_advantages(batch, config, teacher=policy.model, tokenize=lambda text: encode(policy, text),
                                    optimizer_step=0, iteration=1, temperature=base.rollout.sampling.temperature)
        cells: dict[str, list[float]] = {}
        generated: list[float] = []
        for advantages, traj in zip(credit.advantages, batch):  # advantages: [T] per trajectory
            mask = torch.tensor(traj.trainable_mask, dtype=torch.bool)
            generated += advantages[mask].abs().tolist()
            for step in traj.steps:
                key = f"{'won' if traj.success else 'lost'} {step_kind(step.info)}"
                cells.setdefault(key, []).append(advantages[step.response_token_start:step.response_token_end].mean().item())
        figures[arm] = {"mean_abs_per_token": statistics.mean(generated),
                        "cells": {key: {"mean": statistics.mean(v), "steps": len(v)} for key, v in sorted(cells.items())}}
        print(f"{arm:>14}: mean |A| per generated token {figures[arm]['mean_abs_per_token']:.3f}; " +
              "; ".join(f"{key} {cell['mean']:+.3f} (n={cell['steps']})" for key, cell in figures[arm]["cells"].items()))
    if args.record:
        write_record(args.record, {"episodes": len(batch), "sampled_success": success,
                                   "wrong_takes_per_episode": mistakes, "arms": figures})


if __name__ == "__main__":
    main()
