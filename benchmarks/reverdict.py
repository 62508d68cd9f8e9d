"""Verdicts of the archived learning benchmarks under the rule for "beats": the exact sign-flip p < 0.05
and a t-interval that excludes 0 (the earlier verdicts read only a percentile bootstrap CI).

    python benchmarks/reverdict.py            # every archive in benchmarks/results with a learning layout

Reads each archived run's metrics.jsonl and summary.json (BENCH/ENV/ARM/seed-S/), recomputes final
success and AUC per run as bench_learning.py does, pairs every arm with grpo by seed, and writes
benchmarks/results/verdicts.json (the record) and the section between <!-- verdicts --> markers of
docs/benchmarks.md. tests/test_reverdict.py checks that section, and every row of the archived
benchmarks' tables in docs/benchmarks.md, against what the archived runs recompute.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import bench_learning as learning
from docs_section import write_docs_section

ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = ROOT / "benchmarks" / "results"
RECORD = ARCHIVES / "verdicts.json"
MARKER = "<!-- verdicts -->"


def archived_records(env_folder: Path) -> list[dict]:
    """One record per archived run of a learning benchmark: arm, seed, final greedy success, sampled curve."""
    records = []
    for run in sorted(env_folder.glob("*/seed-*")):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        sampled = [100.0 * r["rollout/success"] for r in sorted(rows, key=lambda r: r["iteration"])
                   if "rollout/success" in r]
        summary = json.loads((run / "summary.json").read_text())
        records.append({"arm": run.parent.name, "seed": int(run.name.removeprefix("seed-")),
                        "final": summary["success_after"]["All"], "sampled_success": sampled})
    return records


def archive_verdicts(env_folder: Path) -> dict:
    """The paired differences from grpo and the verdict line of every arm of one archive."""
    records = archived_records(env_folder)
    summary = learning.summarise(learning.score_runs(records, threshold=0.0))
    setup = learning.ENVS.get(env_folder.name)
    primary = setup.primary if setup is not None else ""  # the pre-registered metric, where there is one
    metrics = [name for name in (primary, "final", "auc") if name]
    label = learning.window_label(primary, len(records[0]["sampled_success"])) if primary else ""
    arms = {}
    for arm, paired in sorted(summary["paired"].items()):
        arms[arm] = {"verdict": learning.verdict(arm, learning.CONTROL, paired["final"], paired["auc"],
                                                 paired[primary] if primary else None, label),
                     **{metric: {"mean": d.mean, "bootstrap": [d.ci_low, d.ci_high], "t_interval": [d.t_low, d.t_high],
                                 "p_sign_flip": d.p_sign_flip, "per_seed": list(d.per_seed)}
                        for metric, d in ((name, paired[name]) for name in metrics)}}
    return {"archive": env_folder.relative_to(ROOT).as_posix(), "seeds": summary["seeds"], "arms": arms}


def archive_table_rows(env_folder: Path) -> list[str]:
    """The rows of the docs tables of an archived learning benchmark, recomputed from its runs: each
    arm's final, AUC and iterations to threshold, then each arm's paired differences from grpo
    (the columns the archived sections hold; the threshold by the script's own midpoint rule)."""
    records = archived_records(env_folder)
    curves: dict[str, list[list[float]]] = {}
    for record in records:
        curves.setdefault(record["arm"], []).append(record["sampled_success"])
    threshold = learning.choose_threshold(curves)["value"]
    summary = learning.summarise(learning.score_runs(records, threshold))
    label, cell = learning._arm_label, learning._cell
    rows = [f"| {label(arm)} | {cell(e['final'])} | {cell(e['auc'])} | {cell(e['iters'])} |"
            for arm, e in summary["arms"].items()]
    rows += [f"| {label(arm)} | {cell(asdict(d['final']), True)} | {cell(asdict(d['auc']), True)} | "
             f"{cell(asdict(d['iters']), True)} |" for arm, d in summary["paired"].items()]
    return rows


def learning_archives() -> list[Path]:
    """benchmarks/results/NAME/ENV folders laid out as bench_learning.py archives them (a grpo arm)."""
    return sorted(env for env in ARCHIVES.glob("*/*") if (env / learning.CONTROL).is_dir() and
                  any((env / learning.CONTROL).glob("seed-*/summary.json")) and not env.parent.name.startswith("grid"))


def markdown_section(record: dict) -> str:
    lines = [MARKER, "### Verdicts of the archived benchmarks under the sign-flip and t rule", "",
             "Written by `python benchmarks/reverdict.py` from the archived runs (record: "
             "`benchmarks/results/verdicts.json`). The verdicts in the sections above were written with a "
             "percentile bootstrap CI alone; under the project's rule (\"beats\" only when the exact sign-flip "
             "p < 0.05 and the t-interval excludes 0) they read:", ""]
    for archive in record["archives"]:
        lines.append(f"`{archive['archive']}` ({len(archive['seeds'])} seeds):")
        lines.append("")
        lines += [f"- {arm['verdict']}" for arm in archive["arms"].values()]
        lines.append("")
    return "\n".join([*lines, MARKER])


def main() -> None:
    record = {"rule": "beats: exact sign-flip p < 0.05 and the t 95% interval excludes 0",
              "archives": [archive_verdicts(env) for env in learning_archives()]}
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    section = markdown_section(record)
    write_docs_section(ROOT / "docs" / "benchmarks.md", MARKER, section)
    print(section)


if __name__ == "__main__":
    main()
