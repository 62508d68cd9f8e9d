"""stepopsd credit-audit on a labelled trajectory file."""

import dataclasses
import json

from typer.testing import CliRunner

from algo_fixtures import make_group, with_model_behaviour
from model_fixtures import small_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.trajectory_io import save_trajectories
from stepopsd_cli.audit_cmd import app


def _labelled_file(tmp_path):
    batch = make_group(0, [True, False, False], num_steps=3) + make_group(1, [False, True], num_steps=3)
    mistakes = {"g0/1": 1, "g0/2": 2, "g1/0": 0}
    labelled = [dataclasses.replace(t, steps=tuple(
        dataclasses.replace(s, info={"mistake": mistakes.get(t.trajectory_id) == s.index}) for s in t.steps))
        for t in batch]
    path = tmp_path / "labelled.jsonl"
    save_trajectories(labelled, path)
    return path


def test_audit_without_a_teacher_reports_grpo_oracle_and_gigpo(tmp_path):
    path = _labelled_file(tmp_path)
    result = CliRunner().invoke(app, [str(path), "--json", str(tmp_path / "audit.json"), "--plot", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert "no teacher model" in result.output and "oracle" in result.output
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["num_audited"] == 3
    assert report["table"]["oracle"]["conserved_step_share"]["mean"] == 1.0
    assert report["table"]["grpo"]["delta"]["mean"] == 0.5
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_audit_refuses_a_bad_plot_suffix_and_unlabelled_files(tmp_path):
    path = _labelled_file(tmp_path)
    result = CliRunner().invoke(app, [str(path), "--plot", str(tmp_path / "a.txt")])
    assert result.exit_code == 2 and "must be .png, .pdf or .svg" in result.output and "Traceback" not in result.output
    unlabelled = tmp_path / "plain.jsonl"
    save_trajectories(make_group(0, [True, False]), unlabelled)
    result = CliRunner().invoke(app, [str(unlabelled)])
    assert result.exit_code == 1 and "no failed trajectory of a mixed group" in result.output
    result = CliRunner().invoke(app, [str(unlabelled), "--label", "expert_action"])
    assert result.exit_code == 1 and '"expert_actions": true' in result.output


def test_audit_clip_grid_prints_its_table_and_refuses_a_clip_outside_0_1(tmp_path):
    path = _labelled_file(tmp_path)
    result = CliRunner().invoke(app, [str(path), "--clip-grid", "0.05", "--clip-grid", "0.5", "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    assert "A~ conserved_step_share, alpha_clip=0.05" in result.output and "| oracle | 1.000" in result.output
    assert json.loads((tmp_path / "a.json").read_text())["table"]["oracle"]["alpha_clip=0.5"]["n"] == 3
    result = CliRunner().invoke(app, [str(path), "--clip-grid", "1.0"])
    assert result.exit_code == 2 and "must lie in [0, 1)" in result.output and "Traceback" not in result.output


def test_audit_runs_the_hindsight_controls_asked_for(tmp_path, small_model_dir):
    from stepopsd.choices import AUDIT_CONTROLS
    from stepopsd.lab.credit_audit import CONTROLS
    from stepopsd.policy import load_policy
    from stepopsd.trajectory_io import load_trajectories

    assert tuple(CONTROLS) == AUDIT_CONTROLS
    model = load_policy(small_model_dir).model
    labelled = load_trajectories(_labelled_file(tmp_path))
    path = tmp_path / "scored.jsonl"
    save_trajectories([with_model_behaviour(model, t) for t in labelled], path)
    result = CliRunner().invoke(app, [str(path), "--model", str(small_model_dir), "--control", "peer_trajectory",
                                      "--control", "swapped_peer", "--json", str(tmp_path / "audit.json")])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "audit.json").read_text())["table"]
    assert set(table) == {"grpo", "oracle", "peer_diff", "gigpo", "peer_trajectory", "swapped_peer"}
    result = CliRunner().invoke(app, [str(path), "--control", "peers"])
    assert result.exit_code == 2 and "Traceback" not in result.output
