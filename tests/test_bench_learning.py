"""benchmarks/bench_learning.py: the summaries on hand-made per-seed numbers and the docs section (no RL; one
2-step start build)."""

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest

from stepopsd.lab.stats import paired_difference

from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"  # on the tests' path (pyproject: pytest's pythonpath)


@pytest.fixture(scope="module")
def bench():
    import bench_learning

    return bench_learning


@pytest.fixture(scope="module")
def pool():
    import run_pool

    return run_pool


def record(arm, seed, final, curve):
    return {"arm": arm, "seed": seed, "final": final, "sampled_success": curve,
            "iteration_s": 1.0, "wall_s": 10.0, "folder": f"runs/{arm}/seed-{seed}"}


# --------------------------------------------------------------------------- iterations to threshold


def test_iterations_to_threshold_uses_the_trailing_mean_of_three(bench):
    # trailing means: 10, 30, 40, 60  -> 40 first reached at iteration 3 (not 2, where the raw value 50 is)
    assert bench.iterations_to_threshold([10.0, 50.0, 60.0, 120.0], 40.0) == 3
    assert bench.iterations_to_threshold([10.0, 50.0, 60.0, 120.0], 60.0) == 4


def test_iterations_to_threshold_not_reached_is_iterations_plus_one(bench):
    assert bench.iterations_to_threshold([10.0, 20.0, 30.0, 30.0, 30.0], 50.0) == 6


def test_iterations_to_threshold_reached_at_the_start(bench):
    assert bench.iterations_to_threshold([70.0, 0.0, 0.0], 50.0) == 1


def test_default_threshold_is_the_midpoint_of_start_and_best_plateau_without_the_oracle(bench):
    curves = {
        "grpo": [[20.0, 30.0, 40.0, 40.0, 40.0], [20.0, 30.0, 50.0, 50.0, 50.0]],  # plateau (40 + 50) / 2 = 45
        "stepopsd": [[20.0, 40.0, 60.0, 60.0, 60.0], [20.0, 40.0, 60.0, 60.0, 60.0]],  # plateau 60: the best
        "oracle": [[20.0, 90.0, 100.0, 100.0, 100.0], [20.0, 90.0, 100.0, 100.0, 100.0]],  # left out
    }
    # start 20 (every run's iteration 1), best non-oracle plateau 60 -> (20 + 60) / 2 = 40
    threshold = bench.choose_threshold(curves)
    assert threshold["value"] == pytest.approx(40.0)
    assert threshold["rule"] == "midpoint of start and best non-oracle plateau"


def test_default_threshold_falls_back_to_the_oracle_when_it_is_the_only_arm(bench):
    assert bench.choose_threshold({"oracle": [[0.0, 100.0, 100.0, 100.0]]})["value"] == pytest.approx(50.0)


def test_default_threshold_says_when_no_arm_learnt(bench):
    threshold = bench.choose_threshold({"grpo": [[0.0, 0.0]], "stepopsd": [[0.0, 0.0]]})
    assert threshold["value"] == 0.0 and "no arm rose above the start (0.0%)" in threshold["rule"]


def test_fixed_threshold_wins(bench):
    assert bench.choose_threshold({"grpo": [[0.0, 90.0]]}, fixed=25.0) == {"value": 25.0, "rule": "fixed (--threshold)"}


# --------------------------------------------------------------------------- paired summaries


@pytest.fixture
def records():
    return [
        record("grpo", 0, 50.0, [20.0, 30.0, 40.0, 40.0]),
        record("grpo", 1, 60.0, [20.0, 40.0, 40.0, 60.0]),
        record("grpo", 2, 55.0, [30.0, 30.0, 30.0, 30.0]),
        record("stepopsd", 0, 56.0, [20.0, 50.0, 50.0, 60.0]),
        record("stepopsd", 1, 64.0, [20.0, 40.0, 60.0, 60.0]),
        record("stepopsd", 2, 60.0, [30.0, 30.0, 30.0, 50.0]),
    ]


def test_summarise_pairs_each_seed_with_the_control(bench, records):
    summary = bench.summarise(bench.score_runs(list(reversed(records)), 40.0))  # record order does not matter
    assert summary["seeds"] == [0, 1, 2]
    final = summary["paired"]["stepopsd"]["final"]
    assert final.per_seed == (6.0, 4.0, 5.0)  # 56-50, 64-60, 60-55
    assert final.mean == pytest.approx(5.0)
    assert 4.0 <= final.ci_low <= final.ci_high <= 6.0
    # AUC = mean of the curve: grpo 32.5, 40, 30; stepopsd 45, 45, 35 -> +12.5, +5, +5
    assert summary["paired"]["stepopsd"]["auc"].per_seed == pytest.approx((12.5, 5.0, 5.0))
    # trailing means of 3 vs 40: grpo seed 0 [20, 25, 30, 36.7] never (5), seed 1 [20, 30, 33.3, 46.7] -> 4,
    # seed 2 never (5); stepopsd seed 0 [20, 35, 40, ...] -> 3, seed 1 [20, 30, 40, ...] -> 3, seed 2 never (5)
    assert summary["arms"]["grpo"]["iters"]["per_seed"] == [5.0, 4.0, 5.0]
    assert summary["arms"]["stepopsd"]["iters"]["per_seed"] == [3.0, 3.0, 5.0]
    assert summary["paired"]["stepopsd"]["iters"].per_seed == (-2.0, -1.0, 0.0)
    assert "grpo" not in summary["paired"]  # the control is not compared with itself


def test_summarise_gives_each_arm_its_own_mean_and_ci(bench, records):
    grpo = bench.summarise(bench.score_runs(records, 40.0))["arms"]["grpo"]["final"]
    assert grpo["per_seed"] == [50.0, 60.0, 55.0]
    assert grpo["mean"] == pytest.approx(55.0)
    assert 50.0 <= grpo["ci_low"] <= 55.0 <= grpo["ci_high"] <= 60.0


def test_summarise_refuses_arms_with_different_seeds(bench, records):
    with pytest.raises(ValueError, match="same seeds"):
        bench.summarise(bench.score_runs(records[:-1], 40.0))


def test_paired_curves_subtract_the_control_per_iteration_on_the_same_seed(bench, records):
    curves = bench.paired_curves(list(reversed(records)), ["grpo", "stepopsd"])  # record order does not matter
    assert list(curves) == ["stepopsd"]
    # stepopsd - grpo per seed: seed 0 [0, 20, 10, 20], seed 1 [0, 0, 20, 0], seed 2 [0, 0, 0, 20]
    assert [d.per_seed for d in curves["stepopsd"]] == [(0, 0, 0), (20, 0, 0), (10, 20, 0), (20, 0, 20)]
    assert [d.mean for d in curves["stepopsd"]] == pytest.approx([0.0, 20 / 3, 10.0, 40 / 3])


def test_the_plot_has_the_curves_and_the_paired_differences(bench, records, tmp_path):
    from PIL import Image

    out = bench.plot_curves(records, ["grpo", "stepopsd"], 40.0, tmp_path / "learning.png")
    width, height = Image.open(out).size
    assert width > 2 * height  # two panels side by side


# --------------------------------------------------------------------------- verdicts


def test_verdict_says_the_arm_wins_only_when_the_sign_flip_p_and_the_t_interval_agree(bench):
    # 8 seeds all +4..+6: sign-flip p = 2/256, t-interval above 0 -> beats
    control = [50.0, 60.0, 55.0, 52.0, 58.0, 51.0, 57.0, 54.0]
    arm = [c + d for c, d in zip(control, [6.0, 4.0, 5.0, 5.0, 4.0, 6.0, 5.0, 5.0])]
    flat = [30.0] * 8
    line = bench.verdict("stepopsd", "grpo", paired_difference(arm, control), paired_difference(flat, flat))
    assert line.startswith("stepopsd beats grpo here in final success: final success diff +5.0 points, bootstrap CI")
    assert "sign-flip p = 0.00781" in line and "(8 seeds;" in line


def test_verdict_says_the_arm_is_beaten_under_the_same_rule(bench):
    control = [50.0, 60.0, 55.0, 52.0, 58.0, 51.0, 57.0, 54.0]
    arm = [c - d for c, d in zip(control, [6.0, 4.0, 5.0, 5.0, 4.0, 6.0, 5.0, 5.0])]
    flat = [30.0] * 8
    line = bench.verdict("rlsd", "grpo", paired_difference(arm, control), paired_difference(flat, flat))
    assert line.startswith("rlsd is beaten by grpo here in final success: final success diff -5.0 points")


def test_three_seeds_never_show_a_difference_however_clean(bench):
    # the bootstrap CI of +4, +6, +5 is above 0, but with 3 seeds the exact sign-flip p is at least 2/8
    line = bench.verdict("stepopsd", "grpo", paired_difference([56.0, 64.0, 60.0], [50.0, 60.0, 55.0]),
                         paired_difference([45.0, 45.0, 35.0], [32.5, 40.0, 30.0]))
    assert line.startswith("no difference shown between stepopsd and grpo: final success diff +5.0 points, "
                           "bootstrap CI [+4.0, +6.0], t-interval [+2.5, +7.5], sign-flip p = 0.25")


def test_verdict_claims_nothing_from_one_seed(bench):
    line = bench.verdict("stepopsd", "grpo", paired_difference([70.0], [50.0]), paired_difference([1.0], [0.0]))
    assert line.startswith("stepopsd vs grpo cannot be told apart from 1 seed")


# --------------------------------------------------------------------------- docs section


def test_docs_section_is_written_once_then_replaced(bench, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    marker = bench.docs_marker("errand")
    bench.write_docs_section(doc, marker, f"{marker}\n## Learning\n\nfirst\n{marker}")
    first = doc.read_text()
    assert first.count(marker) == 2 and "first" in first and "kept" in first
    bench.write_docs_section(doc, marker, f"{marker}\n## Learning\n\nsecond\n{marker}")
    second = doc.read_text()
    assert second.count(marker) == 2 and "second" in second and "first" not in second
    assert second.startswith("# Benchmarks\n\n## Other\n\nkept\n")


def test_docs_section_replaces_only_its_own_env(bench, tmp_path):
    doc = tmp_path / "benchmarks.md"
    errand, alfworld = bench.docs_marker("errand"), bench.docs_marker("alfworld")
    doc.write_text(f"intro\n{errand}\nold errand\n{errand}\nmiddle\n{alfworld}\nold alfworld\n{alfworld}\nend\n")
    bench.write_docs_section(doc, errand, f"{errand}\nnew errand\n{errand}")
    expected = f"intro\n{errand}\nnew errand\n{errand}\nmiddle\n{alfworld}\nold alfworld\n{alfworld}\nend\n"
    assert doc.read_text() == expected


def test_markdown_section_names_the_control_and_holds_the_verdict(bench, records, tmp_path):
    scored = bench.score_runs(records, 40.0)
    args = bench.parse_args(["--env", "errand", "--arms", "stepopsd", "--seeds", "0", "1", "2", "--iterations", "4"])
    results = bench.results_json(args, scored, bench.summarise(scored), {"value": 40.0, "rule": "fixed (--threshold)"},
                                 {"this_invocation": 600.0, "start_model": 60.0, "start_eval": 30.0, "runs_total": 1200.0},
                                 tmp_path, {"Heat": 50.0, "Cool": 30.0, "All": 40.0})
    json.dumps(results)  # results.json holds plain data
    section = bench.markdown_section(results, "figures/learning-errand.png")
    marker = bench.docs_marker("errand")
    assert section.startswith(marker) and section.endswith(marker)
    assert "Control: **grpo**" in section and "grpo (control)" in section
    assert "- no difference shown between stepopsd and grpo" in section  # 3 seeds cannot show one
    assert "| stepopsd | +5.0 [+4.0, +6.0] |" in section
    assert results["arms"] == ["grpo", "stepopsd"]  # the control is always run
    assert [r["iters"] for r in results["runs"]] == [5.0, 4.0, 5.0, 3.0, 3.0, 5.0]
    assert math.isclose(results["success_before"], 40.0)
    assert "(before RL: 40.0% (Heat 50.0, Cool 30.0))" in section and "its evaluation 0.5 min" in section


# --------------------------------------------------------------------------- planned runs


@pytest.mark.parametrize("env", ["errand", "alfworld"])
def test_arms_of_a_seed_differ_only_in_their_credit_assignment(bench, env, tmp_path):
    from stepopsd.configtree import config_diff

    runs = bench.plan_runs(env, {"sft.steps": 5}, list(bench.ARMS), [3, 4], tmp_path / "start", tmp_path / "out")
    control = {run.seed: run.config for run in runs if run.arm == "grpo"}
    for run in runs:
        assert run.folder == tmp_path / "out" / env / run.arm / f"seed-{run.seed}"
        assert run.config.run.seed == run.seed and run.config.sft.steps == 0  # the shared start is already warm
        assert run.config.model.path == str((tmp_path / "start").resolve())
        assert run.config.run.checkpoint_every > 0  # a killed run can resume
        assert not run.config.run.eval_before  # the shared start is evaluated once (evaluate_start)
        differs = set(config_diff(run.config, control[run.seed]))  # credit-assignment knobs only
        assert all(key.startswith("algorithm.") for key in differs), (run.arm, differs)
        if run.arm not in ("oracle-full", "stepopsd-full", "peer-diff-full"):  # full strength: lambda, clip, decay too
            assert differs <= {"algorithm.name", "algorithm.step_budget"}
    full = {run.arm: run.config.algorithm for run in runs if run.seed == 3 and run.arm.endswith("-full")}
    knobs = {arm: (a.lambda_0, a.alpha_clip, a.lambda_decay_steps, a.step_budget) for arm, a in full.items()}
    assert set(knobs.values()) == {(1.0, 0.95, 0, "conserved_step_share")} and len(knobs) == 3  # the bound's knobs
    assert {arm: a.name for arm, a in full.items()} == {"oracle-full": "oracle", "stepopsd-full": "stepopsd",
                                                          "peer-diff-full": "peer_diff"}
    assert full["stepopsd-full"].hindsight_for == full["peer-diff-full"].hindsight_for == "failed_and_won"
    budgets = {run.arm: run.config.algorithm.step_budget for run in runs if run.arm in ("stepopsd", "stepopsd-share")}
    assert budgets == {"stepopsd": "equal_step_mean_abs", "stepopsd-share": "conserved_step_share"}
    assert [run.seed for run in runs] == [3] * len(bench.ARMS) + [4] * len(bench.ARMS)  # whole seeds first


@pytest.mark.integration
def test_start_only_builds_the_start_model_and_runs_nothing(tmp_path):
    import subprocess

    command = [sys.executable, str(BENCHMARKS / "bench_learning.py"), "--env", "errand", "--start-only",
               "--out", str(tmp_path), "--set", "sft.steps=2", "run.sft_expert_episodes=8"]
    printed = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    start = tmp_path / "errand" / "start"
    assert f"start model {start / 'sft_model'}" in printed
    assert (start / "sft_model" / "config.json").is_file() and (start / "bench_start.json").is_file()
    assert sorted(path.name for path in (tmp_path / "errand").iterdir()) == ["start"]  # no arm ran


def test_the_start_is_evaluated_once_and_again_only_when_its_settings_change(bench, tiny_model_dir, tmp_path):
    from stepopsd.evaluate import evaluate_policy
    from stepopsd.policy import load_policy

    config = bench.bench_config("fetch", {"env.eval_episodes": 3, "env.eval_kwargs": {"max_episode_steps": 2},
                                          "rollout.sampling.max_new_tokens": 8})
    success, _ = bench.evaluate_start(config, tiny_model_dir, tmp_path)
    assert success == evaluate_policy(load_policy(tiny_model_dir), config)  # what a run's own evaluation gives
    record = tmp_path / "start_eval.json"
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "success": {"All": 12.5}}))
    assert bench.evaluate_start(config, tiny_model_dir, tmp_path)[0] == {"All": 12.5}  # read back, not replayed
    more = bench.bench_config("fetch", {"env.eval_episodes": 4, "env.eval_kwargs": {"max_episode_steps": 2},
                                        "rollout.sampling.max_new_tokens": 8})
    assert bench.evaluate_start(more, tiny_model_dir, tmp_path)[0] == evaluate_policy(load_policy(tiny_model_dir), more)


def test_errand_config_names_real_env_options(bench):
    import inspect

    from stepopsd_envs.plugins import env_class

    config = bench.bench_config("errand", {})
    accepted = set(inspect.signature(env_class(config.env.env_id)).parameters)
    assert config.env.env_id == "stepopsd/ForkedErrand-v0"
    assert config.env.train_kwargs == config.env.eval_kwargs == {"mode": "observable", "invalid_action_reward": -0.1,
                                                                  "max_episode_steps": 12}
    assert set(config.env.train_kwargs) <= accepted | {"max_episode_steps"}  # gymnasium.make's own option
    assert config.sft.steps > 0 and config.sft.hindsight_rows and config.rollout.group_size == 8


def test_read_run_takes_the_curve_from_metrics_and_the_final_success_from_the_summary(bench, pool, tmp_path):
    folder = tmp_path / "errand" / "stepopsd" / "seed-0"
    folder.mkdir(parents=True)
    timing = {"time/rollout_s": 3.0, "time/advantages_s": 0.5, "time/update_s": 0.5}
    lines = [{"iteration": 0, "eval/success": 25.0},
             {"iteration": 1, "rollout/success": 0.25, **timing},
             {"iteration": 2, "rollout/success": 0.5, **timing},
             {"iteration": 2, "eval/success": 37.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "summary.json").write_text(json.dumps({"success_after": {"observable": 37.5, "All": 37.5}}))
    (folder / "bench_run.json").write_text(json.dumps({"wall_s": 12.0, "resumed": False}))
    run = pool.PlannedRun("stepopsd", 0, bench.bench_config("errand", {"run.iterations": 2}), folder)
    assert pool.is_done(run)
    record = pool.read_run(run)
    assert record["sampled_success"] == [25.0, 50.0]  # fractions -> %
    assert (record["final"], record["wall_s"], record["iteration_s"]) == (37.5, 12.0, 4.0)
    longer = pool.PlannedRun("stepopsd", 0, bench.bench_config("errand", {"run.iterations": 3}), folder)
    with pytest.raises(ValueError, match="holds 2 iterations, not 3"):
        pool.read_run(longer)


@pytest.mark.integration
def test_a_worker_ends_when_the_benchmark_that_started_it_is_killed(tmp_path):
    """A killed benchmark must leave no run going on (a restart would resume a folder another process writes)."""
    import os
    import subprocess
    import time

    pid_file, alive_file = tmp_path / "worker.pid", tmp_path / "alive"
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", '''
        import os
        import run_pool
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        run_pool._exit_with_parent(os.getppid(), every_s=0.1)
        '''], env={{**os.environ, "PYTHONPATH": {str(BENCHMARKS)!r}}})
        while not os.path.exists({str(pid_file)!r}): pass
        time.sleep(1.0)
        if worker.poll() is None:  # it keeps going while its benchmark lives
            open({str(alive_file)!r}, "w").write("alive")
        os._exit(0)  # killed: no join, no cleanup
    """)
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=60)
    assert alive_file.is_file()
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, 9)
    pytest.fail("the worker outlived its benchmark")


def test_repeated_set_flags_all_apply(bench):
    """``--set a=1 --set b=2`` keeps both (argparse's default would keep only the last)."""
    args = bench.parse_args(["--set", "sft.steps=20", "sft.lr=0.01", "--set", "sft.careless_rate=0.5"])
    assert args.set == ["sft.steps=20", "sft.lr=0.01", "sft.careless_rate=0.5"]


def test_the_errandchain_benchmark_has_real_upper_bounds_and_a_preregistered_primary_metric(bench, tmp_path):
    runs = {run.arm: run.config for run in bench.plan_runs("errandchain", {}, ["oracle-full", "oracle-signed"], [0],
                                                             tmp_path / "start", tmp_path / "out")}
    full = runs["oracle-full"].algorithm
    assert (full.name, full.oracle_sides, full.lambda_0, full.alpha_clip, full.lambda_decay_steps) == (
        "oracle", "two_sided", 1.0, 0.95, 0)
    assert runs["oracle-signed"].algorithm.name == "oracle_signed"
    assert runs["oracle-full"].env.env_id == "stepopsd/ErrandChain-v0" and runs["oracle-full"].run.tasks_per_iteration == 2
    assert bench.ENVS["errandchain"].primary == "early"
    scored = bench.score_runs([{"arm": "grpo", "seed": 0, "final": 0.0, "sampled_success": [10.0] * 8 + [90.0] * 12}], 50.0)
    assert scored[0]["early"] == 10.0  # iterations 1-8 only


def test_the_late_window_is_the_iterations_after_the_first_eight(bench):
    """Seeds 8-15 of the eight-errand recipe are judged on iterations 9 to the last (pre-registered)."""
    assert bench.ENVS["errandchain-eight-late"].primary == "late"
    assert bench.ENVS["errandchain-eight-late"].config == bench.ENVS["errandchain-eight"].config
    curve = [10.0] * 8 + [40.0] * 6 + [70.0] * 6
    scored = bench.score_runs([{"arm": "grpo", "seed": 8, "final": 0.0, "sampled_success": curve}], 50.0)[0]
    assert (scored["early"], scored["late"], scored["auc"]) == (10.0, 55.0, 37.0)
    assert bench.window_label("late", 20) == "mean sampled success, iterations 9-20"
    assert bench.window_label("early", 20) == "mean sampled success, iterations 1-8"


def test_with_the_upper_bound_run_each_other_arm_gets_its_share_of_the_bounds_gap(bench, records, tmp_path):
    # oracle-full: final 60, 70, 65 -> +10 each over grpo; stepopsd +6, +4, +5 -> 15 / 30 = 50%
    bound = [record("oracle-full", seed, final, [20.0, 60.0, 60.0, 60.0])
             for seed, final in ((0, 60.0), (1, 70.0), (2, 65.0))]
    scored = bench.score_runs(records + bound, 40.0)
    summary = bench.summarise(scored)
    assert set(summary["gap_shares"]) == {"stepopsd"}  # neither the control nor the bound itself
    assert summary["gap_shares"]["stepopsd"]["final"].share == pytest.approx(0.5)
    args = bench.parse_args(["--env", "errand", "--arms", "stepopsd", "oracle-full", "--seeds", "0", "1", "2",
                             "--iterations", "4"])
    results = bench.results_json(args, scored, summary, {"value": 40.0, "rule": "fixed (--threshold)"},
                                 {"this_invocation": 1.0, "start_model": 1.0, "start_eval": 1.0, "runs_total": 1.0},
                                 tmp_path, {"All": 40.0})
    section = bench.markdown_section(json.loads(json.dumps(results)), "figures/learning-errand.png")
    auc = summary["gap_shares"]["stepopsd"]["auc"]
    assert f"- stepopsd: {auc.share:.0%} [{auc.ci_low:.0%}, {auc.ci_high:.0%}]" in section  # errand: no primary, the AUC
    no_bound = bench.summarise(bench.score_runs(records, 40.0))
    assert no_bound["gap_shares"] == {}
