"""benchmarks/bench_grid.py: the planned cells, the table on hand-made numbers, the plot and the docs section."""

import json
import shutil
from dataclasses import replace

import pytest

from stepopsd.configtree import config_diff


@pytest.fixture(scope="module")
def grid():
    import bench_grid

    return bench_grid


def test_cells_of_a_seed_differ_from_grpo_only_in_the_method_and_its_two_knobs(grid, tmp_path):
    runs = grid.plan_grid("errand", {"run.iterations": 3}, [0.05, 0.5], [0.2], "equal_step_mean_abs", [0, 1],
                          tmp_path / "start", tmp_path / "out")
    assert [(run.arm, run.seed) for run in runs] == [
        ("grpo", 0), ("grpo", 1), ("a0.05-l0.2", 0), ("a0.05-l0.2", 1), ("a0.5-l0.2", 0), ("a0.5-l0.2", 1),
        ("a0.05-l0.2-const", 0), ("a0.05-l0.2-const", 1), ("a0.5-l0.2-const", 0), ("a0.5-l0.2-const", 1)]
    control = {run.seed: run.config for run in runs if run.arm == "grpo"}
    allowed = {"algorithm.name", "algorithm.step_budget", "algorithm.alpha_clip", "algorithm.lambda_0",
               "algorithm.lambda_decay_steps"}
    for run in runs:
        assert run.folder == tmp_path / "out" / "errand" / run.arm / f"seed-{run.seed}"
        assert run.config.run.seed == run.seed and run.config.run.iterations == 3 and run.config.sft.steps == 0
        assert set(config_diff(run.config, control[run.seed])) <= allowed
    const = next(run.config.algorithm for run in runs if run.arm == "a0.5-l0.2-const")
    decayed = next(run.config.algorithm for run in runs if run.arm == "a0.5-l0.2")
    assert (const.alpha_clip, const.lambda_0, const.lambda_decay_steps) == (0.5, 0.2, 0)
    assert decayed.lambda_decay_steps > 0 and decayed.step_budget == "equal_step_mean_abs"


def _records(finals_by_cell):
    return [{"arm": cell, "seed": seed, "final": final, "wall_s": 60.0}
            for cell, finals in finals_by_cell.items() for seed, final in enumerate(finals)]


def test_grid_table_spread_and_paired_difference(grid, tmp_path):
    records = _records({"grpo": [50.0, 60.0, 70.0], "a0.2-l0.2": [60.0, 60.0, 90.0],
                        "a0.2-l0.2-const": [40.0, 50.0, 60.0]})
    table = grid.grid_table(records, [0.2], [0.2])
    decayed, const = table[(0.2, 0.2, True)], table[(0.2, 0.2, False)]
    assert (decayed["mean"], decayed["spread"]) == (70.0, 30.0)
    assert decayed["diff"].per_seed == (10.0, 0.0, 20.0) and decayed["diff"].mean == 10.0
    assert const["diff"].per_seed == (-10.0, -10.0, -10.0) and str(const["diff"]) == "-10.0 [-10.0, -10.0]"

    figure = grid.plot_grid(table, [0.2], [0.2], tmp_path / "grid.png")
    assert figure.stat().st_size > 0
    section = grid.markdown_section("errand", table, [50.0, 60.0, 70.0], "python benchmarks/bench_grid.py", 3.0, 4,
                                    [0, 1, 2], "equal_step_mean_abs", "figures/grid-errand.png")
    assert section.startswith("<!-- grid-errand -->") and section.endswith("<!-- grid-errand -->")
    assert "| 0.2 | 0.2 | yes | 70.0 | 30.0 | +10.0 [" in section
    assert "| 0.2 | 0.2 | none | 50.0 | 20.0 | -10.0 [-10.0, -10.0] |" in section
    assert "final 60.0% (per seed 50.0, 60.0, 70.0)" in section


def test_reuse_links_only_finished_runs_whose_saved_config_is_the_same(grid, tmp_path):
    from run_pool import is_done, reuse_finished, weights_digest

    from stepopsd.config import save_train_config

    start = tmp_path / "start"
    start.mkdir()
    (start / "model.safetensors").write_bytes(b"weights")
    runs = grid.plan_grid("errand", {"run.iterations": 3}, [0.2], [0.2], "equal_step_mean_abs", [0, 1],
                          start, tmp_path / "grid")
    by_key = {(run.arm, run.seed): run for run in runs}
    bench = tmp_path / "bench" / "errand"
    for arm, seed, config in (("grpo", 0, by_key[("grpo", 0)].config),  # the same run: linked
                              ("stepopsd", 0, by_key[("a0.2-l0.2", 0)].config),  # the same run: linked
                              ("grpo", 1, by_key[("grpo", 0)].config),  # another seed's config: not linked
                              ("oracle", 1, by_key[("a0.2-l0.2-const", 1)].config)):  # unfinished: not linked
        folder = bench / arm / f"seed-{seed}"
        folder.mkdir(parents=True)
        save_train_config(config, folder / "config.toml")
        (folder / "bench_run.json").write_text(json.dumps({"wall_s": 1.0, "start_sha256": weights_digest(start)}))
        if arm != "oracle":
            (folder / "summary.json").write_text("{}")
    linked = reuse_finished(runs, tmp_path / "bench")
    assert [(run.arm, run.seed) for run in linked] == [("grpo", 0), ("a0.2-l0.2", 0)]
    assert by_key[("grpo", 0)].folder.resolve() == (bench / "grpo" / "seed-0").resolve()
    assert [(run.arm, run.seed) for run in runs if is_done(run)] == [("grpo", 0), ("a0.2-l0.2", 0)]
    assert reuse_finished(runs, tmp_path / "bench") == []  # a second call finds them done


def test_an_archived_run_is_reused_only_from_a_start_with_the_same_weights(grid, tmp_path):
    from run_pool import RECORD_FILES, archive_run, is_done, reuse_finished, weights_digest

    from stepopsd.config import save_train_config

    start = tmp_path / "start"
    start.mkdir()
    (start / "model.safetensors").write_bytes(b"weights")
    plan = lambda out: grid.plan_grid("errand", {"run.iterations": 3}, [0.2], [0.2],  # noqa: E731
                                      "equal_step_mean_abs", [0], start, out)
    finished = plan(tmp_path / "machine-1")[0]
    finished.folder.mkdir(parents=True)
    save_train_config(finished.config, finished.folder / "config.toml")
    (finished.folder / "checkpoints").mkdir()  # weights stay behind
    for name, text in (("metrics.jsonl", "{}\n"), ("summary.json", "{}"),
                       ("bench_run.json", json.dumps({"wall_s": 1.0, "start_sha256": weights_digest(start)}))):
        (finished.folder / name).write_text(text)
    archived = archive_run(finished, tmp_path / "archive")
    assert archived == tmp_path / "archive" / "errand" / "grpo" / "seed-0"
    assert sorted(path.name for path in archived.iterdir()) == sorted(RECORD_FILES)

    (start / "model.safetensors").write_bytes(b"other weights")  # the same path, another start: not the same run
    again = plan(tmp_path / "machine-2")
    assert reuse_finished(again, tmp_path / "archive") == []
    (start / "model.safetensors").write_bytes(b"weights")  # the start rebuilt the same
    assert [(run.arm, run.seed) for run in reuse_finished(again, tmp_path / "archive")] == [("grpo", 0)]
    assert is_done(again[0]) and again[0].folder.resolve() == archived.resolve()

    moved = tmp_path / "rebuilt" / "start"  # the same weights rebuilt in another folder: the same run
    shutil.copytree(start, moved)
    elsewhere = grid.plan_grid("errand", {"run.iterations": 3}, [0.2], [0.2], "equal_step_mean_abs", [0], moved,
                               tmp_path / "machine-3")
    assert [(run.arm, run.seed) for run in reuse_finished(elsewhere, tmp_path / "archive")] == [("grpo", 0)]

    def changed(name: str, lr_factor: float) -> list:  # the run with other forward-pass sizes (and lr)
        config = finished.config
        return [replace(finished, folder=tmp_path / "machine-4" / name, config=replace(
            config, algorithm=replace(config.algorithm, max_rows_per_pass=1),
            optim=replace(config.optim, micro_batch_rows=5, lr=config.optim.lr * lr_factor)))]

    assert [run.arm for run in reuse_finished(changed("rows", 1.0), tmp_path / "archive")] == ["grpo"]
    assert reuse_finished(changed("lr", 2.0), tmp_path / "archive") == []  # a knob that changes the run
