"""Paired learning benchmark: credit-assignment methods against GRPO, with common random numbers.

    python benchmarks/bench_learning.py --env errand --seeds 0 1 2 3 4 --jobs 2 --threads 1
    python benchmarks/bench_learning.py --env fetch --seeds 0 1 2 3 4 --iterations 16 --jobs 2
    python benchmarks/bench_learning.py --env alfworld --arms grpo stepopsd oracle --seeds 0 1 2 --jobs 2
    python benchmarks/bench_learning.py --env searchqa --seeds 0 1 2 3 4 --jobs 2 --threads 1
    python benchmarks/bench_learning.py --env errand --arms grpo stepopsd-share --seeds 0 1 --iterations 2 \\
        --jobs 1 --threads 1 --set sft.steps=20 env.eval_episodes=8 --no-docs --out /tmp/bench_smoke   # smoke

Common random numbers: the start model is built and SFT-warmed once per benchmark (or given with
--start-model), and every arm of seed s trains from it with run.seed = s, which fixes each
iteration's tasks, sampling seeds and minibatch order (stepopsd.tasks.seed_for); the greedy
evaluation plays the same episodes in every run. Arms differ only in their credit assignment, so
their per-seed differences are far less noisy than their separate means.

Per (arm, seed), these numbers (success in %):
  final   greedy evaluation success after the last iteration (summary.json)
  auc     area under the sampled-success curve divided by the iterations: its mean over them
  early, late  mean sampled success over a window of iterations (WINDOWS: 1-8, 9-last), the
          metric an env can pre-register as its primary one (EnvSetup.primary)
  iters   first iteration whose sampled success, smoothed over the last 3 iterations, reaches
          the threshold (lower is better); never reached -> iterations + 1. The threshold is
          --threshold, or the midpoint between the start (mean sampled success of iteration 1)
          and the plateau (mean of the last 3 iterations) of the best arm other than the oracle
          (the oracle is the upper bound; a plateau only it reaches would leave every other arm
          "not reached").
Each arm: mean and bootstrap 95% CI over seeds; each arm against the control (grpo): the mean
per-seed difference and its bootstrap 95% CI (stepopsd.lab.stats.paired_difference).

Runs go to OUT/<env>/<arm>/seed-<s>/ (the trainer's output to seed-<s>.log beside it), each an
independent train() in its own process (--jobs at once, --threads torch threads each). A run
holding summary.json is skipped; a killed run resumes from its last checkpoint (every 5
iterations; --set run.checkpoint_every=N). The start model lives in
OUT/<env>/start/ (delete it to rebuild after changing the SFT settings). Writes OUT/results.json,
the plot docs/figures/learning-<env>.png and the section between the markers
<!-- learning-<env> --> of docs/benchmarks.md; with --no-docs the plot goes to
OUT/learning-<env>.png and the docs are left alone (use it for smoke runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from docs_section import write_docs_section
from run_pool import PlannedRun, reuse_from, run_all
from stepopsd.config import TrainConfig, load_train_config
from stepopsd.configtree import parse_assignments
from stepopsd.plot import moving_average
from stepopsd.run_dir import RunDir, check_model_source
from stepopsd.lab.stats import GapShare, PairedDifference, bootstrap_ci, gap_share, paired_difference

CONTROL = "grpo"
BOUND = "oracle-full"  # the upper bound: every other arm's gain over the control is read as a share of its gain
# arms whose Delta comes from the env's labels: not judged by the threshold's plateau, named in the tables
# for what they are (only oracle-full and oracle-signed bound anything: docs/algorithm.md)
ORACLE_ARMS = {"oracle": "oracle (paper knobs)", "oracle-full": "oracle-full (upper bound)",
               "oracle-signed": "oracle-signed (ceiling)"}
# full strength: lambda 1, alpha_clip up to 0.95, no decay, through the budget that keeps Delta's ranking
FULL_STRENGTH = {"algorithm.lambda_0": 1.0, "algorithm.alpha_clip": 0.95, "algorithm.lambda_decay_steps": 0,
                 "algorithm.step_budget": "conserved_step_share"}
ARMS: dict[str, dict[str, object]] = {  # arm -> config overrides (nothing else differs between arms)
    "grpo": {"algorithm.name": "grpo"},
    "stepopsd": {"algorithm.name": "stepopsd", "algorithm.step_budget": "equal_step_mean_abs"},  # the paper's budget
    "stepopsd-share": {"algorithm.name": "stepopsd", "algorithm.step_budget": "conserved_step_share"},
    # the upper bound: Delta from the env's labels (ENVS), through the budget that keeps it (the paper's
    # equal_step_mean_abs gives every step the same mean |credit|, flattening a perfect Delta: docs/benchmarks.md)
    "oracle": {"algorithm.name": "oracle", "algorithm.step_budget": "conserved_step_share"},
    "rlsd": {"algorithm.name": "rlsd"},
    "gigpo": {"algorithm.name": "gigpo"},
    # the ceiling of sign-preserving step credit: a perfect two-sided Delta at full strength (ALGORITHM's bound)
    "oracle-full": {"algorithm.name": "oracle", "algorithm.oracle_sides": "two_sided", **FULL_STRENGTH},
    # the ceiling of any step credit: a per-step reward from the labels (may flip signs)
    "oracle-signed": {"algorithm.name": "oracle_signed"},
    # the teacher and its model-free baseline with oracle-full's knobs, a win's peer included (as the two-sided
    # bound reaches into wins): the share of the bound's gain a real Delta captures
    "stepopsd-full": {"algorithm.name": "stepopsd", "algorithm.hindsight_for": "failed_and_won", **FULL_STRENGTH},
    "peer-diff-full": {"algorithm.name": "peer_diff", "algorithm.hindsight_for": "failed_and_won", **FULL_STRENGTH},
}
HEAT_COOL = {"task_types": ["Heat", "Cool"]}
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class EnvSetup:
    title: str
    config: str  # a shipped config name
    oracle_labels: str  # what the oracle's Delta comes from
    overrides: dict[str, object]
    primary: str = ""  # the pre-registered primary metric (a METRICS key), written into the docs before the run


ENVS = {
    "errand": EnvSetup("ForkedErrand (observable)", "learning-errand", "the env's exact mistake labels", {}),
    "fetch": EnvSetup("FetchItem (the quickstart)", "quickstart", "the env's labels: a wrong object taken", {}),
    "alfworld": EnvSetup("generated ALFWorld Heat/Cool", "quickstart-alfworld",
                         "steps that differ from ALFWorld's expert: a noisy label", {
        "env.train_kwargs": HEAT_COOL, "env.eval_kwargs": HEAT_COOL,  # merged into the config's kwargs
        "algorithm.oracle_label": "expert_action",  # ALFWorld has no exact mistake labels
    }),
    "searchqa": EnvSetup("generated Search-QA (single-hop and bridge questions)", "quickstart-searchqa",
                         "the env's labels: a search that finds no needed passage, or a wrong answer", {}),
    "errandchain": EnvSetup("ErrandChain (8 sub-errands, 7 clue formats, recoverable mistakes)",
                            "learning-errandchain", "the env's exact mistake labels (two-sided for oracle-full)", {},
                            primary="early"),
    "errandchain-pointer": EnvSetup("ErrandChain, pointer clues (4 sub-errands, a start that reads)",
                                    "learning-errandchain-pointer",
                                    "the env's exact mistake labels (two-sided for oracle-full)", {}, primary="early"),
    "errandchain-independent": EnvSetup("ErrandChain, independent mistakes (4 sub-errands, pointer clues)",
                                        "learning-errandchain-independent",
                                        "the env's exact mistake labels (two-sided for oracle-full)", {},
                                        primary="early"),
    "errandchain-eight": EnvSetup("ErrandChain, eight errands (independent mistakes, pointer clues, budget 3)",
                                  "learning-errandchain-eight",
                                  "the env's exact mistake labels (two-sided for oracle-full)", {}, primary="early"),
    # the same recipe and start on fresh seeds, judged on the window in which seeds 0-7 learned (docs/benchmarks.md)
    "errandchain-eight-late": EnvSetup("ErrandChain, eight errands, fresh seeds judged on iterations 9-20",
                                       "learning-errandchain-eight",
                                       "the env's exact mistake labels (two-sided for oracle-full)", {}, primary="late"),
}
# every run starts from one model and plays the same evaluation episodes: its before-RL evaluation is done
# once for the benchmark (evaluate_start), not once per run
BENCH_OVERRIDES = {"run.progress": False, "run.eval_every": 0, "run.eval_before": False,
                   "run.save_trajectories_every": 0, "run.checkpoint_every": 5}
# windows of the sampled-success curve a benchmark can pre-register as its primary metric:
# name -> (first, last) iteration, both counted; last None: the run's last iteration
WINDOWS = {"early": (1, 8), "late": (9, None)}
METRICS = ("final", "auc", "iters", *WINDOWS)  # per run: final greedy success, AUC, iterations to threshold, windows
SMOOTH = 3  # iterations in the trailing mean of the sample-efficiency criterion


# --------------------------------------------------------------------------- plan and run


def bench_config(env: str, assignments: dict[str, object], extra: dict[str, object] | None = None) -> TrainConfig:
    """The env's config < the benchmark's run settings < --set < ``extra`` (arm and run fields)."""
    setup = ENVS[env]
    return load_train_config(setup.config, {**BENCH_OVERRIDES, **setup.overrides, **assignments, **(extra or {})})


def build_start_model(base: TrainConfig, folder: Path) -> tuple[Path, float]:
    """Build and SFT-warm the start model once (kept in ``folder``); returns it and the seconds its
    build took (recorded in ``folder/bench_start.json``, read back when it is reused; a build that went on
    from a killed one's state records the last invocation's seconds only, and says so)."""
    from accelerate import Accelerator

    from stepopsd.lab.warm_start import prepare_start_model

    clock = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    resumed = RunDir(folder).sft_state.exists() and not RunDir(folder).sft_model.exists()
    start = prepare_start_model(base, RunDir(folder), Accelerator(cpu=True), fresh_run=True)
    record = folder / "bench_start.json"
    if not record.is_file():
        record.write_text(json.dumps({"wall_s": time.perf_counter() - clock, **({"resumed": True} if resumed else {})}))
    return start, json.loads(record.read_text())["wall_s"]


def evaluate_start(base: TrainConfig, start: Path, folder: Path) -> tuple[dict[str, float], float]:
    """The start model's greedy success table (%) on the runs' evaluation episodes and the seconds it took,
    kept in ``folder/start_eval.json`` with the settings it depends on (evaluated again when they change)."""
    from stepopsd.evaluate import evaluate_policy
    from stepopsd.policy import load_policy

    settings = json.loads(json.dumps({"start": str(start.resolve()), "env": dataclasses.asdict(base.env),
                                      "rollout": dataclasses.asdict(base.rollout)}, default=str))
    record = folder / "start_eval.json"
    if record.is_file() and json.loads(record.read_text())["settings"] == settings:
        saved = json.loads(record.read_text())
        return saved["success"], saved["wall_s"]
    clock = time.perf_counter()
    table = evaluate_policy(load_policy(start, dtype=base.model.dtype), base)
    success = {k: v for k, v in table.items() if v == v}  # NaN: a task type the evaluation does not hold
    wall_s = time.perf_counter() - clock
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"settings": settings, "success": success, "wall_s": wall_s}))
    return success, wall_s


def bench_setup(args: argparse.Namespace) -> tuple[dict[str, object], TrainConfig, Path, float]:
    """A benchmark's common start: ``--set`` parsed, the env's config with ``--iterations``, and the
    start model (``--start-model``, or built once under ``OUT/ENV/start``) with the seconds its build
    took. Bad input exits with one line, before any work."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the worker processes
    try:
        assignments = parse_assignments(TrainConfig, args.set)
        base = bench_config(args.env, assignments, {"run.iterations": args.iterations} if args.iterations else None)
        if args.start_model is not None:
            check_model_source(str(args.start_model))
    except ValueError as error:  # ConfigError included: one line, no traceback
        raise SystemExit(f"error: {error}") from None
    import torch

    torch.set_num_threads(args.threads)
    if args.start_model is not None:
        return assignments, base, args.start_model, 0.0
    start, start_s = build_start_model(base, args.out / args.env / "start")
    return assignments, base, start, start_s


def plan_runs(env: str, assignments: dict[str, object], arms: list[str], seeds: list[int], start: Path,
              out: Path) -> list[PlannedRun]:
    """One run per (arm, seed): same start model and run.seed in every arm of a seed; seed by seed, so a
    benchmark stopped early holds whole paired seeds."""
    shared = {"model.path": str(start.resolve()), "sft.steps": 0}
    return [PlannedRun(arm, seed, bench_config(env, assignments, {**ARMS[arm], **shared, "run.seed": seed}),
                       out / env / arm / f"seed-{seed}")
            for seed in seeds for arm in arms]


# --------------------------------------------------------------------------- summarise (pure)


def iterations_to_threshold(curve: list[float], threshold: float, window: int = SMOOTH) -> int:
    """First iteration (1-based) whose trailing mean over ``window`` iterations reaches ``threshold``;
    ``len(curve) + 1`` when none does.

    >>> iterations_to_threshold([10.0, 50.0, 60.0, 70.0], 40.0)
    3
    >>> iterations_to_threshold([10.0, 20.0], 40.0)
    3
    """
    smoothed = moving_average(curve, window)
    return next((i + 1 for i, value in enumerate(smoothed) if value >= threshold), len(curve) + 1)


def choose_threshold(curves: dict[str, list[list[float]]], fixed: float | None = None,
                     window: int = SMOOTH) -> dict:
    """``{"value", "rule"}`` of the sample-efficiency threshold: ``fixed`` when given, else the midpoint
    between the start (mean iteration-1 success of every run) and the best plateau (mean over seeds
    of the last ``window`` iterations) of the arms other than the oracle. The rule says so when no
    arm rose above the start (every run then "reaches" the threshold at once).

    >>> choose_threshold({"grpo": [[20.0, 40.0, 40.0]], "oracle": [[20.0, 90.0, 90.0]]}, window=2)["value"]
    30.0
    """
    if fixed is not None:
        return {"value": fixed, "rule": "fixed (--threshold)"}
    start = _mean([curve[0] for arm_curves in curves.values() for curve in arm_curves])
    judged = [arm for arm in curves if arm not in ORACLE_ARMS] or list(curves)
    plateau = max(_mean([_mean(curve[-window:]) for curve in curves[arm]]) for arm in judged)
    rule = "midpoint of start and best non-oracle plateau"
    if plateau <= start:
        rule += f"; no arm rose above the start ({start:.1f}%), so this column says nothing"
    return {"value": (start + plateau) / 2, "rule": rule}


def score_runs(records: list[dict], threshold: float) -> list[dict]:
    """Each run's record with its ``auc`` (mean sampled success) and ``iters`` (to ``threshold``) added."""
    return [{**record, "auc": _mean(record["sampled_success"]),
             "iters": float(iterations_to_threshold(record["sampled_success"], threshold)),
             **{name: _mean(record["sampled_success"][first - 1:last]) for name, (first, last) in WINDOWS.items()}}
            for record in records]


def window_label(name: str, iterations: int) -> str:
    """What the window metric ``name`` measures, for a benchmark of ``iterations`` iterations."""
    first, last = WINDOWS[name]
    return f"mean sampled success, iterations {first}-{last or iterations}"


def summarise(scored: list[dict], control: str = CONTROL) -> dict:
    """Each arm's mean and CI per metric, and each other arm's paired difference from ``control``
    (``scored``: records from :func:`score_runs`)."""
    by_arm: dict[str, list[dict]] = {}
    for record in sorted(scored, key=lambda r: r["seed"]):
        by_arm.setdefault(record["arm"], []).append(record)
    seeds = [r["seed"] for r in by_arm[control]]
    for arm, runs in by_arm.items():
        if [r["seed"] for r in runs] != seeds:
            raise ValueError(f"arm {arm} has seeds {[r['seed'] for r in runs]} and the control {control} {seeds}; "
                             "paired differences need the same seeds")
    values = {arm: {name: [r[name] for r in runs] for name in METRICS} for arm, runs in by_arm.items()}
    arms = {arm: {name: _estimate(v) for name, v in metrics.items()} for arm, metrics in values.items()}
    paired = {arm: {name: paired_difference(v, values[control][name]) for name, v in metrics.items()}
              for arm, metrics in values.items() if arm != control}
    shares = {arm: {name: gap_share(v, values[BOUND][name], values[control][name]) for name, v in metrics.items()}
              for arm, metrics in values.items() if BOUND in values and arm not in (control, BOUND)}
    return {"arms": arms, "paired": paired, "gap_shares": shares, "seeds": seeds}


def _estimate(values: list[float]) -> dict:
    low, high = bootstrap_ci(values)
    return {"mean": _mean(values), "ci_low": low, "ci_high": high, "per_seed": values}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def verdict(arm: str, control: str, final: PairedDifference, auc: PairedDifference,
            primary: PairedDifference | None = None, primary_label: str = "") -> str:
    """One plain-language line from the paired differences. "Beats" (or "is beaten by") only where the
    exact sign-flip p < 0.05 and the t-interval excludes 0; otherwise "no difference shown". Each
    difference with its bootstrap CI, t-interval and p; ``primary``, the pre-registered metric
    (``primary_label`` says what it measures, :func:`window_label`), first when given."""
    seeds = len(final.per_seed)
    metrics = {**({"the primary metric": primary} if primary is not None else {}), "final success": final, "AUC": auc}
    wins = " and ".join(name for name, diff in metrics.items() if diff.shown() > 0)
    losses = " and ".join(name for name, diff in metrics.items() if diff.shown() < 0)
    if seeds < 2:
        head = f"{arm} vs {control} cannot be told apart from {seeds} seed"
    elif wins and losses:
        head = f"{arm} beats {control} here in {wins} and is beaten in {losses}"
    elif wins:
        head = f"{arm} beats {control} here in {wins}"
    elif losses:
        head = f"{arm} is beaten by {control} here in {losses}"
    else:
        head = f"no difference shown between {arm} and {control}"
    first = f"primary metric ({primary_label}) diff {_described(primary)}; " if primary is not None else ""
    return (f"{head}: {first}final success diff {_described(final)}; AUC of sampled success diff {_described(auc)} "
            f"({seeds} seeds; beats: sign-flip p < 0.05 and the t-interval excludes 0).")


def _described(diff: PairedDifference) -> str:
    return (f"{diff.mean:+.1f} points, bootstrap CI [{diff.ci_low:+.1f}, {diff.ci_high:+.1f}], "
            f"t-interval [{diff.t_low:+.1f}, {diff.t_high:+.1f}], sign-flip p = {diff.p_sign_flip:.3g}")


# --------------------------------------------------------------------------- outputs


def paired_curves(records: list[dict], arms: list[str], control: str = CONTROL) -> dict[str, list[PairedDifference]]:
    """Per iteration, each arm's sampled success minus the control's, paired by seed."""
    curves = {arm: {r["seed"]: r["sampled_success"] for r in records if r["arm"] == arm} for arm in [control, *arms]}
    seeds = sorted(curves[control])
    return {arm: [paired_difference(list(arm_column), list(control_column)) for arm_column, control_column in
                  zip(zip(*(curves[arm][s] for s in seeds)), zip(*(curves[control][s] for s in seeds)))]
            for arm in arms if arm != control}


def plot_curves(records: list[dict], arms: list[str], threshold: float, out: Path) -> Path:
    """Left: mean sampled success per iteration per arm, with a bootstrap 95% CI band over seeds.
    Right: each arm minus the control, paired by seed (:func:`paired_curves`), with its bootstrap
    95% CI: the comparison the benchmark's claims rest on (the left bands hold the tasks' spread too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    differences = paired_curves(records, arms)
    figure, (absolute, paired) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        columns = list(zip(*(r["sampled_success"] for r in records if r["arm"] == arm)))  # [iterations][seeds]
        iterations = range(1, len(columns) + 1)
        bands = [bootstrap_ci(list(column)) for column in columns]
        line, = absolute.plot(iterations, [_mean(list(column)) for column in columns], label=_arm_label(arm))
        absolute.fill_between(iterations, [low for low, _ in bands], [high for _, high in bands], alpha=0.2)
        if arm in differences:
            paired.plot(iterations, [d.mean for d in differences[arm]], color=line.get_color(), label=_arm_label(arm))
            paired.fill_between(iterations, [d.ci_low for d in differences[arm]], [d.ci_high for d in differences[arm]],
                                color=line.get_color(), alpha=0.15)
    absolute.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    absolute.set_ylabel("sampled success (%)")
    paired.axhline(0, color="black", linewidth=1)
    paired.set_ylabel(f"arm - {CONTROL}, paired by seed (points)")
    for axis in (absolute, paired):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def _arm_label(arm: str) -> str:
    return {CONTROL: f"{arm} (control)", **ORACLE_ARMS}.get(arm, arm)


def _cell(estimate: dict, signed: bool = False) -> str:
    spec = "+.1f" if signed else ".1f"
    return f"{estimate['mean']:{spec}} [{estimate['ci_low']:{spec}}, {estimate['ci_high']:{spec}}]"


def markdown_section(results: dict, figure: str) -> str:
    """The docs section: command, wall time, verdicts and tables, between the env's markers."""
    marker, setup = docs_marker(results["env"]), ENVS[results["env"]]
    iterations, threshold, wall = results["iterations"], results["threshold"], results["wall_s"]
    primary = setup.primary
    metrics = ["final", "auc", "iters", *([primary] if primary else [])]  # the tables' columns
    seeds = ", ".join(map(str, results["seeds"]))
    lines = [
        marker, f"### Learning on {setup.title}: paired comparison against GRPO", "",
        f"Written by the script: `{results['command']}`", "",
        f"Wall time: {wall['runs_total'] / 60:.1f} min summed over the {len(results['runs'])} runs, start model "
        f"{wall['start_model'] / 60:.1f} min, its evaluation {wall.get('start_eval', 0.0) / 60:.1f} min (once for all "
        f"runs), {wall['this_invocation'] / 60:.1f} min for the last invocation (runs "
        f"finished before it are skipped); {results['machine']}. Control: **{CONTROL}**; oracle arms "
        f"(Delta from {setup.oracle_labels}): {', '.join(ORACLE_ARMS[arm] for arm in results['arms'] if arm in ORACLE_ARMS)}. Seeds {seeds}: every arm of a seed starts from the "
        f"same SFT model with the same tasks, sampling seeds and evaluation episodes; {iterations} iterations each.",
        *([f"Primary metric, written into the docs before the run: {window_label(primary, iterations)} "
           f"(`{primary}`), paired against {CONTROL}.", ""] if primary else []),
        "", *(f"- {line}" for line in results["verdicts"]), "",
        f"Per arm, mean [bootstrap 95% CI] over seeds. Final: greedy evaluation success (%) after {iterations} "
        f"iterations (before RL: {_before(results)}). AUC: mean sampled success (%) over the "
        f"iterations. Iterations to threshold: first iteration whose sampled success, smoothed over {SMOOTH}, "
        f"reaches {threshold['value']:.1f}% ({threshold['rule']}); {iterations + 1} = not reached.", "",
        *([f"{primary.capitalize()}: {window_label(primary, iterations)} (%).", ""] if primary else []),
        _table_row(["arm", *(_column(metric, "%") for metric in metrics), "s / iteration"]),
        "|" + "---|" * (len(metrics) + 2),
    ]
    for arm, estimates in results["arms_summary"].items():
        seconds = _mean([r["iteration_s"] for r in results["runs"] if r["arm"] == arm])
        lines.append(_table_row([_arm_label(arm), *(_cell(estimates[metric]) for metric in metrics), f"{seconds:.1f}"]))
    lines += ["", f"Paired per seed, arm minus {CONTROL}: mean [bootstrap 95% CI] (iterations: negative is faster).",
              "", _table_row([f"arm - {CONTROL}", *(_column(metric, "points") for metric in metrics)]),
              "|" + "---|" * (len(metrics) + 1)]
    for arm, diffs in results["paired"].items():
        lines.append(_table_row([_arm_label(arm), *(_cell(diffs[metric], True) for metric in metrics)]))
    judged = primary or "auc"
    if results.get("gap_shares"):
        lines += ["", f"Share of the {BOUND} minus {CONTROL} gap each arm captures on the "
                      f"{'primary metric' if primary else 'AUC'} (its gain over {CONTROL} over {BOUND}'s, paired by "
                      f"seed; bootstrap 95% CI over seeds; 100% = the bound's gain, 0% = none):", ""]
        lines += [f"- {_arm_label(arm)}: {_share(shares[judged])}" for arm, shares in results["gap_shares"].items()]
    return "\n".join([*lines, "", f"![learning curves, {results['env']}]({figure})", "", marker])


def _share(share: dict) -> str:
    return str(GapShare(**share))


def _column(metric: str, unit: str) -> str:
    return "iterations to threshold" if metric == "iters" else f"{'AUC' if metric == 'auc' else metric} ({unit})"


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _before(results: dict) -> str:
    by_type = {k: v for k, v in results.get("success_before_by_type", {}).items() if k != "All"}
    detail = f" ({', '.join(f'{k} {v:.1f}' for k, v in by_type.items())})" if len(by_type) > 1 else ""
    return f"{results['success_before']:.1f}%{detail}"


def docs_marker(env: str) -> str:
    return f"<!-- learning-{env} -->"


def results_json(args, records: list[dict], summary: dict, threshold: dict, wall: dict, start: Path,
                 start_success: dict[str, float]) -> dict:
    """Everything measured: per-run numbers, per-arm estimates, paired differences and verdicts."""
    paired = summary["paired"]
    primary = ENVS[args.env].primary
    verdicts = [verdict(arm, CONTROL, diffs["final"], diffs["auc"], diffs[primary] if primary else None,
                        window_label(primary, args.iterations) if primary else "") for arm, diffs in paired.items()]
    return {
        "env": args.env, "config": ENVS[args.env].config, "command": _command(), "control": CONTROL,
        "oracle_arms": [arm for arm in args.arms if arm in ORACLE_ARMS], "arms": args.arms, "seeds": summary["seeds"], "iterations": args.iterations,
        "set": args.set, "start_model": str(start), "threshold": threshold, "wall_s": wall,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, --jobs {args.jobs} x --threads {args.threads}",
        "success_before": start_success["All"], "success_before_by_type": start_success,
        "runs": records,
        "arms_summary": summary["arms"],
        "paired": {arm: {name: dataclasses.asdict(d) for name, d in diffs.items()} for arm, diffs in paired.items()},
        "gap_shares": {arm: {name: dataclasses.asdict(s) for name, s in shares.items()}
                       for arm, shares in summary["gap_shares"].items()},
        "verdicts": verdicts,
    }


def _command() -> str:
    return "python benchmarks/bench_learning.py " + shlex.join(sys.argv[1:])


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(ENVS), default="errand")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                        help=f"arms to run ({CONTROL}, the control, is always added)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--iterations", type=int, default=None, help="RL iterations per run (default: the config's)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="sampled success (%%) for iterations-to-threshold (default: midpoint rule above)")
    parser.add_argument("--start-model", type=Path, default=None, help="an SFT'd model folder (skips building and SFT)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides of every run and the start model, e.g. sft.steps=20 env.eval_episodes=8")
    parser.add_argument("--start-only", action="store_true", help="build the start model under OUT/ENV/start and stop")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learning"))
    parser.add_argument("--reuse", type=Path, nargs="+", action="extend", default=[], metavar="ARCHIVE",
                        help="an --archive (or another --out): its finished runs with the same config and start "
                             "are linked, not re-run")
    parser.add_argument("--archive", type=Path, default=None, metavar="ARCHIVE",
                        help="copy each finished run's record files (no weights) to ARCHIVE/ENV/ARM/seed-S as it ends; "
                             "commit them, and a later --reuse ARCHIVE on another machine skips those runs")
    parser.add_argument("--no-docs", action="store_true",
                        help="leave docs/benchmarks.md alone and put the plot in OUT (smoke runs)")
    args = parser.parse_args(argv)
    args.arms = [CONTROL] + [arm for arm in dict.fromkeys(args.arms) if arm != CONTROL]
    return args


def main() -> None:
    clock = time.perf_counter()
    args = parse_args()
    assignments, base, start, start_s = bench_setup(args)
    if args.start_only:
        print(f"start model {start} ({start_s / 60:.1f} min)")
        return
    args.iterations = base.run.iterations
    print(f"start model {start}; control {CONTROL}; arms {' '.join(args.arms)}; "
          f"seeds {' '.join(map(str, args.seeds))}; {args.iterations} iterations", flush=True)

    extra = {"run.iterations": args.iterations}
    runs = plan_runs(args.env, {**assignments, **extra}, args.arms, args.seeds, start, args.out)
    reuse_from(runs, args.reuse)
    start_success, start_eval_s = evaluate_start(base, start, args.out / args.env)
    print("start model greedy success: " + "  ".join(f"{k} {v:.1f}" for k, v in start_success.items()), flush=True)
    records = run_all(runs, args.jobs, args.threads, args.archive)

    curves = {arm: [r["sampled_success"] for r in records if r["arm"] == arm] for arm in args.arms}
    threshold = choose_threshold(curves, args.threshold)
    records = score_runs(records, threshold["value"])
    summary = summarise(records)
    wall = {"this_invocation": time.perf_counter() - clock, "start_model": start_s, "start_eval": start_eval_s,
            "runs_total": sum(r["wall_s"] or 0.0 for r in records)}
    results = results_json(args, records, summary, threshold, wall, start, start_success)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    figure = (args.out if args.no_docs else DOCS / "figures") / f"learning-{args.env}.png"
    plot_curves(records, args.arms, threshold["value"], figure)
    section = markdown_section(results, f"figures/{figure.name}")
    print("\n" + section)
    if not args.no_docs:
        write_docs_section(DOCS / "benchmarks.md", docs_marker(args.env), section)
    print(f"\nwrote {args.out / 'results.json'}, {figure}" + ("" if args.no_docs else " and docs/benchmarks.md"))


if __name__ == "__main__":
    main()
