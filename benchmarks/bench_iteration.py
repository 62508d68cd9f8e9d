"""Seconds per training iteration: StepOPSD against GRPO on the same seeds, one run after the other.

    python benchmarks/bench_iteration.py                         # the quickstart's settings, 4 iterations each
    python benchmarks/bench_iteration.py --without-turn-cache    # also both arms with rollout.turn_cache = false
    python benchmarks/bench_iteration.py --config learning-errand --set sft.steps=300 --iterations 3

Both arms train from one start model (built and SFT-warmed once under OUT/start, or --start-model)
with the same run.seed, so they roll out the same tasks with the same sampling seeds; they differ
only in the credit stage (StepOPSD rescores with the hindsight teacher) and in what that changes
downstream. Per run: the mean of the trainer's own stage timers (time/rollout_s, time/advantages_s,
time/update_s) over the iterations, and generated tokens per rollout second. The load average
before and after is printed: a timing is only comparable to one made on the same machine under
the same load. The last line ends with the ratio, e.g. ``stepopsd / grpo seconds per iteration: 1.12x``.
With --record FILE the figures are written there as JSON (docs/benchmarks.md quotes such records).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from record import write_record

STAGES = ("rollout", "advantages", "update")


def run_arm(config, out: Path) -> dict:
    """Train ``config`` into ``out`` (fresh) and return its mean stage seconds per iteration."""
    from stepopsd.train import train

    train(config, out, overwrite=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [row for row in rows if "time/rollout_s" in row]
    means = {stage: sum(row[f"time/{stage}_s"] for row in rows) / len(rows) for stage in STAGES}
    tokens = sum(row["rollout/generated_tokens"] for row in rows)
    return {**{f"{stage}_s": value for stage, value in means.items()}, "iteration_s": sum(means.values()),
            "iterations": len(rows), "generated_tokens_per_s": tokens / sum(row["time/rollout_s"] for row in rows),
            "success": sum(row["rollout/success"] for row in rows) / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quickstart", help="a built-in config name or a TOML file")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--start-model", default=None, help="an SFT'd model folder (skips building and SFT)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides of both arms")
    parser.add_argument("--without-turn-cache", action="store_true",
                        help="also run both arms with rollout.turn_cache = false (the before/after in one invocation)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_iteration"))
    parser.add_argument("--record", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from accelerate import Accelerator

    from stepopsd.config import load_train_config
    from stepopsd.configtree import parse_assignments
    from stepopsd.config import TrainConfig
    from stepopsd.lab.warm_start import prepare_start_model
    from stepopsd.run_dir import RunDir

    try:
        assignments = parse_assignments(TrainConfig, args.set)
        timing = {"run.iterations": args.iterations, "run.eval_before": False, "run.eval_every": 0,
                  "run.checkpoint_every": 0, "run.save_trajectories_every": 0, "run.progress": False,
                  "env.eval_episodes": 4}
        base = load_train_config(args.config, {**assignments, **timing})
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    load_before = os.getloadavg()
    start = Path(args.start_model) if args.start_model else \
        prepare_start_model(base, RunDir(args.out / "start"), Accelerator(cpu=True), fresh_run=True)
    variants = [(True, "")] + ([(False, " (no turn cache)")] if args.without_turn_cache else [])
    figures: dict[str, dict] = {}
    for turn_cache, suffix in variants:
        for arm in ("grpo", "stepopsd"):
            label = arm + suffix
            config = load_train_config(args.config, {**assignments, **timing, "model.path": str(start.resolve()),
                                                     "sft.steps": 0, "algorithm.name": arm,
                                                     "rollout.turn_cache": turn_cache})
            clock = time.perf_counter()
            figures[label] = {**run_arm(config, args.out / label.replace(" ", "_").strip("()")),
                              "wall_s": time.perf_counter() - clock}
    load_after = os.getloadavg()

    print(f"\n{args.config}, {args.iterations} iterations per run, {args.threads} thread(s); "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'run':>28} | " + " | ".join(f"{stage:>10}" for stage in STAGES) + " | iteration | gen tok/s")
    for label, row in figures.items():
        print(f"{label:>28} | " + " | ".join(f"{row[f'{stage}_s']:9.2f}s" for stage in STAGES)
              + f" | {row['iteration_s']:8.2f}s | {row['generated_tokens_per_s']:9.0f}")
    ratios = {suffix or "turn cache": figures["stepopsd" + suffix]["iteration_s"] / figures["grpo" + suffix]["iteration_s"]
              for _, suffix in variants}
    if args.without_turn_cache:
        for arm in ("grpo", "stepopsd"):
            print(f"{arm}: turn cache speed-up {figures[arm + ' (no turn cache)']['iteration_s'] / figures[arm]['iteration_s']:.2f}x "
                  f"per iteration")
        print(f"stepopsd / grpo seconds per iteration without the turn cache: {ratios[' (no turn cache)']:.2f}x")
    if args.record:
        write_record(args.record, {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": args.threads,
                        "load_before": load_before[0], "load_after": load_after[0]},
            "runs": figures, "stepopsd_over_grpo": ratios["turn cache"]})
    print(f"stepopsd / grpo seconds per iteration: {ratios['turn cache']:.2f}x")


if __name__ == "__main__":
    main()
