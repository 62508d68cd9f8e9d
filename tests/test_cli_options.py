"""The command groups one by one (each module's ``app`` under typer's CliRunner) and ``--set``."""

import re

import pytest
from typer.testing import CliRunner

from stepopsd.config import TrainConfig
from stepopsd.configtree import ConfigError, parse_assignments
from stepopsd_cli import (
    app as root, audit_cmd, config_cmd, data_cmd, envs_cmd, eval_cmd, index_cmd, inspect_cmd, model_cmd, plot_cmd,
    rollout_cmd, serve_cmd, sft_cmd, train_cmd,
)
from stepopsd_cli.options import config_overrides

runner = CliRunner()
GROUPS = [audit_cmd, config_cmd, data_cmd, envs_cmd, eval_cmd, index_cmd, inspect_cmd, model_cmd, plot_cmd,
          rollout_cmd, serve_cmd, sft_cmd, train_cmd]


def shown_options(help_text: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text)) - {"--help"})


@pytest.mark.parametrize("group", GROUPS, ids=lambda module: module.__name__.rsplit(".", 1)[-1])
def test_every_group_app_runs_on_its_own(group):
    result = runner.invoke(group.app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_help_is_short_and_names_the_knobs():
    result = runner.invoke(train_cmd.app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    options = shown_options(result.output)
    assert options == sorted(["--config", "--out", "--resume", "--overwrite", "--iterations", "--seed",
                              "--algorithm", "--alpha-clip", "--lambda-0", "--lr", "--set"]), options
    assert "grpo|stepopsd|rlsd|opd|oracle" in result.output  # the choices come from stepopsd.choices


def test_config_help_names_every_shipped_config():
    from stepopsd.config import builtin_config_names
    from stepopsd_cli.options import CONFIG_HELP

    assert {"quickstart", "learning-errand", "credit-lab", "quickstart-searchqa"} <= set(builtin_config_names())
    assert all(name in CONFIG_HELP for name in builtin_config_names())


def test_set_parses_values_with_the_field_types():
    values = parse_assignments(TrainConfig, [
        "algorithm.alpha_clip=0.1", "model.tiny.hidden_size=64", "run.progress=false", "algorithm.name=grpo",
        'env.train_kwargs={"split": "train"}', "rollout.sampling.stop_strings=</action>,</answer>",
        "model.path=a=b",  # only the first "=" separates
    ])
    assert values == {"algorithm.alpha_clip": 0.1, "model.tiny.hidden_size": 64, "run.progress": False,
                      "algorithm.name": "grpo", "env.train_kwargs": {"split": "train"},
                      "rollout.sampling.stop_strings": ("</action>", "</answer>"), "model.path": "a=b"}
    assert type(values["model.tiny.hidden_size"]) is int


@pytest.mark.parametrize("assignment, message", [
    ("algorithm.alpha=0.1", "unknown config key 'algorithm.alpha'.*did you mean algorithm.alpha_clip"),
    ("model.tiny=3", "unknown config key 'model.tiny'"),  # a section, not a field
    ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
    ("run.iterations=2.5", "run.iterations: expected int, got '2.5'"),
    ("run.progress=maybe", "run.progress: expected true or false"),
    ("env.train_kwargs={oops", "env.train_kwargs: not valid JSON"),
    ("alpha_clip", "expected KEY=VALUE"),
])
def test_set_errors_name_the_key(assignment, message):
    with pytest.raises(ConfigError, match=message):
        parse_assignments(TrainConfig, [assignment])


def test_set_reaches_the_config_and_errors_are_one_line(tmp_path):
    result = runner.invoke(root.app, ["config", "--config", "test-fetch", "--set", "algorithm.alpha_clip=0.35",
                                      "--section", "algorithm.alpha"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "algorithm.alpha_clip = 0.35" in result.output and "Eq. 3 weight clip" in result.output
    bad = runner.invoke(train_cmd.app, ["--config", "test-fetch", "--out", str(tmp_path),
                                        "--set", "optim.lr=fast"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: optim.lr: expected float, got 'fast'"
    invalid = runner.invoke(train_cmd.app, ["--set", "algorithm.name=ppo", "--out", str(tmp_path)])
    assert invalid.exit_code == 2 and "algorithm.name must be one of" in invalid.output


def test_named_options_map_to_their_fields_and_clash_with_set():
    overrides = config_overrides(["optim.kl_coef=0.01"], {"algorithm.lambda_0": 0.3, "run.seed": None})
    assert overrides == {"optim.kl_coef": 0.01, "algorithm.lambda_0": 0.3}
    both = runner.invoke(train_cmd.app, ["--lr", "1e-4", "--set", "optim.lr=1e-5"])
    assert both.exit_code == 2 and "optim.lr is given twice" in both.output


def test_root_app_holds_every_group():
    result = runner.invoke(root.app, ["--help"], env={"COLUMNS": "200"})
    for command in ("envs", "rollout", "sft", "train", "eval", "plot", "inspect", "config", "serve-retriever",
                    "model", "index"):
        assert re.search(rf"│ {command}\s", result.output), command
    assert runner.invoke(root.app, ["model", "--help"]).exit_code == 0
    assert "init-tiny" in runner.invoke(model_cmd.app, ["--help"]).output
