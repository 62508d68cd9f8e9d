"""Seconds per training iteration: StepOPSD against GRPO on the same seeds, one run after the other.

    python benchmarks/bench_iteration.py                         # the quickstart's settings, 4 iterations each
    python benchmarks/bench_iteration.py --without-turn-cache    # also both arms with rollout.turn_cache = false
    python benchmarks/bench_iteration.py --without-shared-prefix # also both arms with optim.shared_prefix = false
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
import re
import time
from pathlib import Path

from record import write_record

STAGES = ("rollout", "advantages", "update")
# fast paths a --without-NAME flag also runs both arms without: name -> (config field, label suffix)
FAST_PATHS = {"turn-cache": ("rollout.turn_cache", " (no turn cache)"),
              "shared-prefix": ("optim.shared_prefix", " (no shared prefix)")}


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
    for name, (field, _) in FAST_PATHS.items():
        parser.add_argument(f"--without-{name}", action="store_true",
                            help=f"also run both arms with {field} = false (the before/after in one invocation)")
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
    without = [name for name in FAST_PATHS if getattr(args, f"without_{name.replace('-', '_')}")]
    variants = [({}, "")] + [({FAST_PATHS[name][0]: False}, FAST_PATHS[name][1]) for name in without]
    figures: dict[str, dict] = {}
    for switched_off, suffix in variants:
        for arm in ("grpo", "stepopsd"):
            label = arm + suffix
            config = load_train_config(args.config, {**assignments, **timing, "model.path": str(start.resolve()),
                                                     "sft.steps": 0, "algorithm.name": arm, **switched_off})
            clock = time.perf_counter()
            figures[label] = {**run_arm(config, args.out / re.sub(r"\W+", "_", label).strip("_")),
                              "wall_s": time.perf_counter() - clock}
    load_after = os.getloadavg()

    print(f"\n{args.config}, {args.iterations} iterations per run, {args.threads} thread(s); "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'run':>28} | " + " | ".join(f"{stage:>10}" for stage in STAGES) + " | iteration | gen tok/s")
    for label, row in figures.items():
        print(f"{label:>28} | " + " | ".join(f"{row[f'{stage}_s']:9.2f}s" for stage in STAGES)
              + f" | {row['iteration_s']:8.2f}s | {row['generated_tokens_per_s']:9.0f}")
    ratios = {suffix: figures["stepopsd" + suffix]["iteration_s"] / figures["grpo" + suffix]["iteration_s"]
              for _, suffix in variants}
    for name in without:
        suffix = FAST_PATHS[name][1]
        for arm in ("grpo", "stepopsd"):
            print(f"{arm}: {name.replace('-', ' ')} speed-up "
                  f"{figures[arm + suffix]['iteration_s'] / figures[arm]['iteration_s']:.2f}x per iteration")
        print(f"stepopsd / grpo seconds per iteration without the {name.replace('-', ' ')}: {ratios[suffix]:.2f}x")
    if args.record:
        write_record(args.record, {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "threads": args.threads,
                        "load_before": load_before[0], "load_after": load_after[0]},
            "runs": figures, "stepopsd_over_grpo": ratios[""]})
    print(f"stepopsd / grpo seconds per iteration: {ratios['']:.2f}x")


if __name__ == "__main__":
    main()
