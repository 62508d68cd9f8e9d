"""docs/benchmarks.md's issue-39 figures are those of the records the benchmarks wrote (benchmarks/results/performance)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results" / "performance"
SECTION_START = "## Rollout and rescoring at the limit (issue 39"


def _section() -> str:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    start = text.index(SECTION_START)
    return text[start:text.index("\n## ", start + 1)]


def _record(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


def test_the_rollout_table_is_the_bench_rollout_records():
    section = _section()
    for mode in ("full", "window"):
        for path, name in (("`generate()` (before)", f"rollout-{mode}-generate"), ("turn cache", f"rollout-{mode}")):
            record = _record(name)
            assert record["context_mode"] == mode and record["turn_cache"] == (path == "turn cache")
            naive, batched = f"{record['naive']['seconds']:.1f} s", f"{record['batched']['seconds']:.1f} s"
            ratio = f"{record['ratio_tokens_per_s']:.1f}x"
            row = next(line for line in section.splitlines() if line.startswith(f"| {mode} | {path} |"))
            assert naive in row and batched in row and ratio in row, row


def test_the_iteration_table_and_ratio_are_the_bench_iteration_record():
    section, record = _section(), _record("iteration-quickstart")
    labels = {"grpo": "grpo, turn cache", "stepopsd": "stepopsd, turn cache",
              "grpo (no turn cache)": "grpo, `generate()`", "stepopsd (no turn cache)": "stepopsd, `generate()`"}
    for run, label in labels.items():
        figures = record["runs"][run]
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        for stage in ("rollout", "advantages", "update", "iteration"):
            assert f"{figures[f'{stage}_s']:.2f} s" in row, (label, stage, row)
    assert f"stepopsd / grpo seconds per iteration: {record['stepopsd_over_grpo']:.2f}x" in section
    assert record["commit"] in section


def test_the_errandchain_iteration_table_is_its_bench_iteration_record():
    section, record = _section(), _record("iteration-errandchain-eight")
    labels = {"grpo": "grpo, shared prefix", "stepopsd": "stepopsd, shared prefix",
              "grpo (no shared prefix)": "grpo, one forward per micro-batch",
              "stepopsd (no shared prefix)": "stepopsd, one forward per micro-batch"}
    for run, label in labels.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        for stage in ("rollout", "advantages", "update", "iteration"):
            assert f"{record['runs'][run][f'{stage}_s']:.2f} s" in row, (label, stage, row)
    assert f"stepopsd / grpo seconds per iteration: {record['stepopsd_over_grpo']:.2f}x" in section
    assert record["commit"] in section and "--without-shared-prefix" in record["command"]


def test_the_quickstart_shared_prefix_figures_are_their_record():
    section, record = _section(), _record("iteration-quickstart-shared-prefix")
    runs = record["runs"]
    sentence = (f"gives a GRPO update of {runs['grpo']['update_s']:.2f} s against "
                f"{runs['grpo (no shared prefix)']['update_s']:.2f} s without it, iterations "
                f"{runs['grpo']['iteration_s']:.2f} s and {runs['grpo (no shared prefix)']['iteration_s']:.2f} s; "
                f"StepOPSD / GRPO {record['stepopsd_over_grpo']:.2f}x")
    assert sentence in " ".join(section.split()) and record["commit"] in section

