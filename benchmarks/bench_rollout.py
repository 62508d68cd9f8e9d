"""Rollout throughput: the batched engine vs a naive loop that rolls out one env at a time.

Same model (the tiny local Qwen3, built fresh), same tasks, same sampling settings, one run:

    python benchmarks/bench_rollout.py --envs 32 --threads 1
    python benchmarks/bench_rollout.py --envs 32 --threads 1 --no-turn-cache   # the generate() path, before #39

Prints generated tokens/s, env steps/s, the batched/naive ratio (goal >= 4x at 32 envs) and
the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from record import write_record


def measure(label: str, run) -> dict[str, float]:
    """Run ``run()`` -> trajectories; return its throughput figures."""
    start = time.perf_counter()
    trajectories = run()
    seconds = time.perf_counter() - start
    tokens = sum(sum(t.trainable_mask) for t in trajectories)
    steps = sum(t.num_steps for t in trajectories)
    figures = {"seconds": seconds, "tokens_per_s": tokens / seconds, "steps_per_s": steps / seconds,
               "tokens": tokens, "steps": steps}
    print(f"{label:>8}: {seconds:7.1f} s  {tokens:6d} tokens  {figures['tokens_per_s']:8.0f} tok/s  "
          f"{steps:4d} env steps  {figures['steps_per_s']:6.1f} steps/s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=32, help="concurrent envs (tasks) of the batched engine")
    parser.add_argument("--turns", type=int, default=8, help="turns per episode")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--model", default=None, help="model folder (default: build the tiny model)")
    parser.add_argument("--context-mode", choices=["full", "window"], default="full",
                        help="full conversation (prompts grow every turn) or a window of the last step")
    parser.add_argument("--no-turn-cache", action="store_true",
                        help="sample every turn with generate(), re-reading each prompt (rollout.turn_cache = false)")
    parser.add_argument("--record", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from stepopsd.policy import SamplingConfig, load_policy
    from stepopsd.rollout import RolloutConfig, Task, make_envs, rollout
    from stepopsd.lab.tiny import build_tiny_model

    model_dir = args.model or build_tiny_model(tempfile.mkdtemp(prefix="bench-tiny-"))
    policy = load_policy(model_dir)
    config = RolloutConfig(max_turns=args.turns, context_mode=args.context_mode, history_steps=1,
                           turn_cache=not args.no_turn_cache,
                           sampling=SamplingConfig(max_new_tokens=args.max_new_tokens))
    tasks = [Task(seed=1000 + i) for i in range(args.envs)]
    envs = make_envs("stepopsd/FetchItem-v0", args.envs)
    print(f"FetchItem, {args.context_mode} mode, turn cache {'off' if args.no_turn_cache else 'on'}, "
          f"{args.envs} tasks x {args.turns} turns, "
          f"max {args.max_new_tokens} new tokens, "
          f"{args.threads} thread(s), {sum(p.numel() for p in policy.model.parameters()) / 1e6:.2f}M params")

    naive = measure("naive", lambda: [traj for task, env in zip(tasks, envs)
                                      for traj in rollout(policy, [env], [task], config)])
    batched = measure("batched", lambda: rollout(policy, envs, tasks, config))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ratio: {batched['tokens_per_s'] / naive['tokens_per_s']:.1f}x tokens/s, "
          f"{batched['steps_per_s'] / naive['steps_per_s']:.1f}x env steps/s (goal >= 4x)")
    load = os.getloadavg()[0]
    print(f"peak memory (max RSS of this process): {peak_mib:.0f} MiB; load average {load:.2f}")
    if args.record:
        write_record(args.record, {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": args.threads,
                        "load_after": load},
            "context_mode": args.context_mode, "turn_cache": not args.no_turn_cache, "naive": naive,
            "batched": batched, "ratio_tokens_per_s": batched["tokens_per_s"] / naive["tokens_per_s"],
            "peak_rss_mib": peak_mib})


if __name__ == "__main__":
    main()
