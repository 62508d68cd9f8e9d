"""bench_credit_audit.py: its setups, the teacher's paired difference from the model-free peer diff,
and one seed run and reported end to end."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def audit():
    import bench_credit_audit

    return bench_credit_audit


def test_every_setup_loads_its_config_and_names_known_hindsight_arms(audit):
    from stepopsd.lab.credit_audit import CONTROLS

    for name, setup in audit.SETUPS.items():
        config = audit.lab_config(3, argparse.Namespace(setup=name, sft_steps=1))
        assert config.rollout.seed == 3 and config.sft.steps == 1
        assert "peer_trajectory" in setup.controls and set(setup.controls) <= set(CONTROLS)
    errandchain = audit.lab_config(0, argparse.Namespace(setup="errandchain-eight-hindsight", sft_steps=1))
    assert errandchain.env.env_id == "stepopsd/ErrandChain-v0" and errandchain.algorithm.peer_view == "actions"
    assert "swapped_peer" in audit.SETUPS["errandchain-eight-hindsight"].controls  # the null the issue asks for


def test_the_teacher_is_paired_with_the_peer_diff_on_the_same_trajectories(audit):
    records = [{"seed": 0, "per_trajectory": {"peer_trajectory": {"delta": [0.9, 0.8]}, "peer_diff": {"delta": [0.5, 0.6]}}},
               {"seed": 1, "per_trajectory": {"peer_trajectory": {"delta": [1.0]}, "peer_diff": {"delta": [0.7]}}}]
    difference = audit.teacher_minus_baseline(records, "peer_trajectory")
    assert difference["mean"] == pytest.approx(0.3)  # (0.4 + 0.2 + 0.3) / 3
    assert 0.2 - 1e-9 <= difference["ci_low"] <= difference["mean"] <= difference["ci_high"] <= 0.4 + 1e-9
    records[1]["per_trajectory"]["peer_diff"]["delta"].append(0.5)
    with pytest.raises(ValueError, match="seed 1: 1 AUCs of peer_trajectory and 2 of peer_diff"):
        audit.teacher_minus_baseline(records, "peer_trajectory")


@pytest.mark.integration
def test_one_seed_is_audited_then_reported_into_its_docs_section(tiny_model_dir, tmp_path):
    marker = "<!-- credit-lab -->"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "benchmarks.md").write_text(f"# Benchmarks\n\n{marker}\nold\n{marker}\n\nafter\n")
    out = tmp_path / "out"
    script = [sys.executable, str(BENCHMARKS / "bench_credit_audit.py")]
    subprocess.run([*script, "--seeds", "0", "--groups", "2", "--start-model", str(tiny_model_dir),
                    "--behaviour", "guessing-expert", "--out", str(out)], check=True, cwd=tmp_path, timeout=600,
                   capture_output=True)
    record = json.loads((out / "seed-0.json").read_text())
    assert (record["setup"], record["groups"], record["num_trajectories"]) == ("credit-lab", 2, 16)
    assert record["num_audited"] > 0  # the guessing expert fails some episodes of every mixed group
    assert set(record["per_trajectory"]) >= {"grpo", "oracle", "peer_diff", "gigpo", "peer_trajectory", "none"}
    subprocess.run([*script, "--report", "--out", str(out)], check=True, cwd=tmp_path, timeout=300, capture_output=True)
    docs = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "old" not in docs and docs.endswith(f"{marker}\n\nafter\n")
    assert f"--groups 2 --behaviour guessing-expert --out {out}" in docs
    assert "| peer_diff | " in docs and "Teacher minus the model-free peer diff" in docs
    assert (tmp_path / "docs" / "figures" / "credit_lab.png").is_file()


@pytest.mark.integration
def test_a_seed_without_a_start_model_builds_and_warms_its_own(tmp_path):
    """The credit lab's own path: build the tiny model, SFT it, save it beside the record, audit."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(BENCHMARKS / "bench_credit_audit.py"), "--seeds", "0", "--groups", "1",
                    "--sft-steps", "2", "--behaviour", "guessing-expert", "--out", str(out)],
                   check=True, cwd=tmp_path, timeout=600, capture_output=True)
    record = json.loads((out / "seed-0.json").read_text())
    assert record["sft_steps"] == 2 and record["num_trajectories"] == 8
    assert (out / "seed-0" / "sft_model" / "model.safetensors").is_file()


@pytest.mark.parametrize("setup", ["errandchain-eight-hindsight", "errandchain-eight-teacher",
                                   "errandchain-eight-teacher-draws",
                                   "errandchain-eight-teacher-longer", "errandchain-eight-teacher-outcomes",
                                   "errandchain-eight-teacher-drilled"])
def test_the_errandchain_start_audits_in_the_docs_are_what_their_archives_recompute(audit, setup):
    """docs/benchmarks.md's table and reading of each ErrandChain teacher's audit come from its archived records."""
    from stepopsd.lab.credit_audit import markdown_table, summarize_clusters

    archive = ROOT / "benchmarks" / "results" / "credit-audit" / setup
    records = [json.loads(path.read_text()) for path in sorted(archive.glob("seed-*.json"))]
    assert [r["seed"] for r in records] == list(range(8)) and {r["setup"] for r in records} == {setup}
    table = summarize_clusters([r["per_trajectory"] for r in records])
    section = (ROOT / "docs" / "benchmarks.md").read_text().split(audit.docs_marker(setup))[1]
    assert markdown_table(table) in section
    assert audit.verdict(table, records, audit.SETUPS[setup].goal) in section
    if setup == "errandchain-eight-teacher-drilled":  # README's first paragraph quotes this teacher
        import re

        verdict = audit.verdict(table, records, audit.SETUPS[setup].goal)
        teacher, diff = (re.search(rf"{arm} (0\.\d{{3}})", verdict).group(1) for arm in ("peer_trajectory", "peer_diff"))
        readme = " ".join((ROOT / "README.md").read_text().split())
        assert f"ranks the mistaken steps at AUC {teacher}, above chance but not above a model-free diff against the peer ({diff})" in readme
