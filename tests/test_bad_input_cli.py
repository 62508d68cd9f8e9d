"""Bad input on the command line: one `error:` line before any work (exit 2), never a traceback,
and nothing on disk lost or mixed: run folders, models, trajectory files, checkpoints."""

import dataclasses
import errno
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_fixtures import small_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.config import AlgorithmConfig, OptimConfig, RolloutConfig, TinyModelSpec, TrainConfig, load_train_config
from stepopsd.configtree import ConfigError
from stepopsd.metrics import read_metrics
from stepopsd.trajectory_io import save_trajectories
from stepopsd_cli.app import app
from test_trajectory import make_trajectory

runner = CliRunner()
FAST = ["--config", "test-fetch", "--set", "sft.steps=0", "--set", 'env.train_kwargs={"max_episode_steps": 4}',
        "--set", 'env.eval_kwargs={"max_episode_steps": 4}', "--set", "env.eval_episodes=2",
        "--set", "rollout.sampling.max_new_tokens=24", "--set", "run.progress=false"]



def invoke(args: list[str]):
    result = runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "400"})  # no wrapped table cells
    assert not isinstance(result.exception, Exception), result.output  # SystemExit (typer.Exit) only
    assert "Traceback" not in result.output
    return result


def refused(args: list[str], *fragments: str, exit_code: int = 2) -> str:
    """Run a command that must stop at once with exactly one `error:` line holding every fragment."""
    result = invoke(args)
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def usage_error(args: list[str], option: str) -> None:
    """typer's own range check of an option (its error panel): exit 2, the option named, no traceback."""
    result = invoke(args)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_iterations(run: Path) -> list[int]:
    return [r["iteration"] for r in read_metrics(run) if "rollout/success" in r]


# ----------------------------------------------------------------------------- config values, before any work


@pytest.mark.parametrize("options, message", [
    (["--alpha-clip", "5"], "algorithm.alpha_clip must lie in [0, 1), got 5.0"),
    (["--lr", "-1e-4"], "optim.lr must be a finite number > 0, got -0.0001"),
    (["--lr", "nan"], "optim.lr must be a finite number > 0, got nan"),
    (["--set", "optim.lr=inf"], "optim.lr must be a finite number > 0, got inf"),
    (["--set", "model.dtype=float8"], "model.dtype must be one of ('float32', 'bfloat16', 'float16'"),
    (["--set", "run.tasks_per_iteration=0"], "run.tasks_per_iteration must be at least 1, got 0"),
    (["--set", "optim.micro_batch_rows=0"], "optim.micro_batch_rows must be at least 1, got 0"),
    (["--set", "rollout.max_context_tokens=10"],
     "rollout.max_context_tokens must exceed rollout.sampling.max_new_tokens (24)"),
    (["--set", "rollout.sampling.top_p=2"], "rollout.sampling.top_p must lie in (0, 1], got 2.0"),
    (["--set", "run.keep_checkpoints=0"], "run.keep_checkpoints must be at least 1, got 0"),
    (["--set", "run.iterations=-3"], "run.iterations must be at least 1, got -3"),
    (["--set", "model.tiny.hidden_size=0"], "model.tiny.hidden_size must be at least 1, got 0"),
    (["--set", "env.env_id=stepopsd/Nope-v0"], "unknown env id 'stepopsd/Nope-v0' (env.env_id); registered envs: "),
    (["--set", 'env.train_kwargs={"bogus": 1}'], "env.train_kwargs: stepopsd/FetchItem-v0 takes no option 'bogus'"),
    (["--config", "quickstart"], "--config is given 2 times (test-fetch, quickstart)"),
    (["--set", "sft.steps=2", "--set", "rollout.max_turns=1"],
     "stepopsd/FetchItem-v0: its expert's episode (seed 0) has not ended after rollout.max_turns=1 turns; the SFT "
     "warm start (sft.steps > 0) learns from won expert episodes only and would get none"),
])
@pytest.mark.integration
def test_train_refuses_bad_values_before_any_work(tmp_path, options, message):
    out = tmp_path / "run"
    line = refused(["train", *FAST, "--out", out, *options], message)
    assert not out.exists()  # refused before the run folder was even made
    if "unknown env id" in message:
        assert "stepopsd/FetchItem-v0" in line and "`stepopsd envs`" in line


@pytest.mark.integration
def test_named_options_keep_their_parse_time_ranges(tmp_path):
    usage_error(["train", "--iterations", "-3", "--out", tmp_path / "run"], "--iterations")
    usage_error(["eval", "--model", tmp_path, "--episodes", "-2"], "--episodes")
    usage_error(["eval", "--model", tmp_path, "--episodes", "0"], "--episodes")


def test_the_python_api_is_checked_by_the_same_dataclasses():
    with pytest.raises(ConfigError, match=re.escape("algorithm.alpha_clip must lie in [0, 1), got 5.0")):
        AlgorithmConfig(alpha_clip=5.0)
    with pytest.raises(ConfigError, match="optim.lr must be a finite number > 0, got inf"):
        OptimConfig(lr=float("inf"))
    with pytest.raises(ConfigError, match="rollout.max_context_tokens must exceed"):
        TrainConfig(rollout=RolloutConfig(max_context_tokens=100))
    with pytest.raises(ConfigError, match="model.tiny.num_key_value_heads must divide num_attention_heads"):
        TinyModelSpec(num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ConfigError, match="algorithm.lambda_0 must lie in"):
        load_train_config("quickstart", {"algorithm.lambda_0": 1.5})  # a TOML file, then an override
    assert RolloutConfig(max_context_tokens=100).max_context_tokens == 100  # alone it may (the rollout truncates)


@pytest.mark.integration
def test_model_folders_are_named_when_they_hold_no_model(tmp_path, small_model_dir):
    empty = tmp_path / "emptydir"
    empty.mkdir()
    refused(["train", *FAST, "--out", tmp_path / "run", "--set", f"model.path={empty}"],
            f"model.path: {empty} is not a model folder (no config.json)")
    refused(["sft", "--model", empty, "--env", "stepopsd/FetchItem-v0", "--out", tmp_path / "sft"],
            f"--model: {empty} is not a model folder (no config.json)")
    refused(["rollout", "stepopsd/FetchItem-v0", "--model", empty, "--out", tmp_path / "t.jsonl"],
            f"--model: {empty} is not a model folder (no config.json)")
    refused(["eval", "--model", empty, "--config", "test-fetch", "--out", tmp_path / "eval"],
            f"{empty} is neither a model folder (config.json) nor a finished run directory")


def test_tiny_model_sizes_are_checked(tmp_path):
    for hidden_size in ("0", "-32", "48"):
        refused(["model", "init-tiny", "--out", tmp_path / "tiny", "--hidden-size", hidden_size],
                "--hidden-size must be a positive multiple of 32", f"got {hidden_size}")
    refused(["model", "init-tiny", "--out", tmp_path / "tiny", "--searchqa-world", "{seed: 0}"],
            "--searchqa-world is not valid JSON")
    refused(["model", "init-tiny", "--out", tmp_path / "tiny", "--searchqa-world", '{"size": 3}'],
            "model.tiny.searchqa_world must take only the keys seed, entities, questions, fillers")
    assert not (tmp_path / "tiny").exists()


@pytest.mark.integration
def test_eval_checks_split_episodes_config_and_out(tmp_path, small_model_dir):
    refused(["eval", "--model", small_model_dir, "--config", "test-fetch", "--split", "bogus", "--out", tmp_path / "e"],
            "--split: stepopsd/FetchItem-v0 takes no option 'split'; its options: ")
    refused(["eval", "--model", small_model_dir, "--config", "test-fetch", "--config", "quickstart"],
            "--config is given 2 times")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "results.json").write_text("{}")
    refused(["eval", "--model", small_model_dir, "--config", "test-fetch", "--out", kept],
            f"--out {kept} already holds results.json; pass --overwrite")
    assert (kept / "results.json").read_text() == "{}"


def test_config_command_refuses_two_configs():
    refused(["config", "--config", "quickstart", "--config", "test-fetch"], "--config is given 2 times")


# ----------------------------------------------------------------------------- run folders: nothing lost or mixed


@pytest.mark.integration
def test_a_run_folder_is_never_reused_silently(tmp_path, small_model_dir):
    """One real run, then every way of pointing another run at its folder."""
    run = tmp_path / "runR"
    model = ["--set", f"model.path={small_model_dir}"]
    args = ["train", *FAST, *model, "--out", run, "--iterations", "2", "--set", "run.checkpoint_every=1"]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    before = snapshot(run)

    other_model = tmp_path / "other"
    other_model.mkdir()
    (other_model / "config.json").write_text("{}")
    refused(["train", *FAST, "--set", f"model.path={other_model}", "--out", run],
            f"{run} already holds a run (config.toml, metrics.jsonl", "pass --resume to continue it, "
            "--overwrite to delete it")
    refused(args + ["--resume", "--lr", "1e-3"],
            f"cannot resume {run}: its saved config differs in optim.lr (0.001 here, 0.0001 saved)",
            f"--config {run / 'config.toml'}")
    refused(args + ["--resume", "--overwrite"], "--resume continues the run", "give one of them")
    assert snapshot(run) == before

    # the newest checkpoint cut short (a bad copy): --resume warns and takes the one before it
    newest = run / "checkpoints" / "iter-000002" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"iter-000002 is damaged \(model.safetensors holds 1000 of its \d+ bytes\)"):
        resumed = invoke([*args[:-2], "--iterations", "3", "--set", "run.checkpoint_every=1", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from iter-000001 (iteration 1)" in resumed.output
    assert train_iterations(run) == [1, 2, 3]  # the metrics of the lost iteration 2 were rewritten, not doubled
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["iter-000002", "iter-000003"]

    # --overwrite deletes the run (and only the run) and starts again
    (run / "notes.txt").write_text("mine")
    again = invoke(["train", *FAST, *model, "--out", run, "--iterations", "1", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert train_iterations(run) == [1] and (run / "notes.txt").read_text() == "mine"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["iter-000001"]
    assert "iterations = 1" in (run / "config.toml").read_text()


@pytest.mark.integration
def test_a_folder_holding_something_else_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    for extra in ([], ["--overwrite"], ["--resume"]):
        refused(["train", *FAST, "--out", folder, *extra], f"{folder} is not empty and holds no stepopsd run")
    assert snapshot(folder) == {"thesis.tex": b"x"}


@pytest.mark.integration
def test_env_options_the_env_itself_refuses_stop_the_run_before_it_writes(tmp_path, small_model_dir):
    out = tmp_path / "run"
    refused(["train", *FAST, "--set", f"model.path={small_model_dir}", "--out", out,
             "--set", 'env.eval_kwargs={"num_places": 300}'],
            'cannot make stepopsd/FetchItem-v0 with env.eval_kwargs={"num_places": 300}: num_places must be in')
    assert [p.name for p in out.iterdir()] == [".lock"]  # only the lock: the corrected command runs without --overwrite


@pytest.mark.integration
def test_the_api_refuses_a_run_folder_too(tmp_path):
    from stepopsd.run_dir import RunFolderError
    from stepopsd.train import train

    (tmp_path / "config.toml").write_text("")
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(load_train_config("test-fetch", {}), tmp_path)


@pytest.mark.integration
def test_a_diverging_run_stops_before_a_checkpoint_holds_it(tmp_path, small_model_dir):
    """An absurd (finite) entropy coefficient makes the loss infinite at the first update."""
    run = tmp_path / "nan"
    line = refused_after_work(["train", *FAST, "--set", f"model.path={small_model_dir}", "--out", run,
                               "--iterations", "1", "--set", "optim.entropy_coef=1e308"])
    assert "iteration 1, optimizer step 1: the gradient norm is nan" in line and "stopped before applying it" in line
    assert not (run / "checkpoints").exists() and not (run / "final_model").exists()


@pytest.mark.integration
def test_a_first_prompt_the_context_cannot_hold_stops_before_sft_or_rollout(tmp_path, small_model_dir):
    message = ("rollout.max_context_tokens=40 cannot hold stepopsd/FetchItem-v0's first prompt (", "tokens, seed 0) "
               "and rollout.sampling.max_new_tokens=24; every episode would end before its first step: raise "
               "rollout.max_context_tokens to at least ")
    run = tmp_path / "run"
    line = refused_after_work(["train", *FAST, "--set", f"model.path={small_model_dir}", "--out", run,
                               "--set", "rollout.max_context_tokens=40"], exit_code=2)
    assert all(fragment in line for fragment in message), line
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()
    assert not (run / "config.toml").exists()  # nothing kept: the corrected command runs without --overwrite
    rerun = invoke(["train", *FAST, "--set", f"model.path={small_model_dir}", "--out", run, "--iterations", "1",
                    "--set", "rollout.max_context_tokens=1024"])
    assert rerun.exit_code == 0, rerun.output
    line = refused_after_work(["sft", "--model", small_model_dir, "--env", "stepopsd/FetchItem-v0", "--out",
                               tmp_path / "sft", "--set", "rollout.max_context_tokens=40",
                               "--set", "rollout.sampling.max_new_tokens=24"], exit_code=2)
    assert all(fragment in line for fragment in message), line
    assert not (tmp_path / "sft").exists()


def refused_after_work(args: list[str], exit_code: int = 1) -> str:
    """A run that fails mid-way (after loading a model: its progress bar precedes): ``exit_code`` and a last
    line `error: ...`, no traceback."""
    result = invoke(args)
    assert result.exit_code == exit_code, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


# ----------------------------------------------------------------------------- models and output files


@pytest.mark.integration
def test_sft_never_writes_over_its_model_or_a_full_folder(tmp_path, small_model_dir):
    before = snapshot(small_model_dir)
    refused(["sft", "--model", small_model_dir, "--env", "stepopsd/FetchItem-v0", "--out", small_model_dir],
            f"--out {small_model_dir} is the input --model")
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    refused(["sft", "--model", small_model_dir, "--env", "stepopsd/FetchItem-v0", "--out", full],
            f"--out {full} is not empty")
    refused(["model", "init-tiny", "--out", full], f"--out {full} is not empty")
    assert snapshot(small_model_dir) == before and (full / "config.json").read_text() == "{}"


def test_a_full_disk_while_writing_a_model_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    from safetensors import SafetensorError
    from transformers import PreTrainedModel

    def disk_full(self, folder, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    out = tmp_path / "tiny"
    line = refused_after_work(["model", "init-tiny", "--out", out])
    assert line == (f"error: could not write {out} (Error while serializing: IoError(Os {{ code: 28, kind: "
                    "StorageFull }); disk full or not writable?); nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_rollout_checks_its_output_path_before_playing(tmp_path):
    kept = tmp_path / "keep.jsonl"
    kept.write_text("precious\n")
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", kept], f"--out {kept} exists; pass --overwrite")
    assert kept.read_text() == "precious\n"
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", tmp_path], f"--out {tmp_path} is a folder")
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", kept / "y.jsonl"], f"{kept} is a file")
    written = invoke(["rollout", "stepopsd/FetchItem-v0", "--episodes", "2", "--out", kept, "--overwrite"])
    assert written.exit_code == 0 and len(kept.read_text().splitlines()) == 2


@pytest.fixture()
def read_only_folder(tmp_path, monkeypatch):
    """A folder no file can be made in: mode 555, and (modes do not bind root) the probe refused there."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    make_temporary = tempfile.TemporaryFile

    def refused_there(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return make_temporary(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refused_there)
    yield folder
    folder.chmod(0o755)


def test_a_read_only_out_is_refused_before_the_work(tmp_path, read_only_folder):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "1", "contents": "a passage"}) + "\n")
    for args, out in ([["rollout", "stepopsd/FetchItem-v0", "--episodes", "50"], read_only_folder / "t.jsonl"],
                      [["index", "build", "--corpus", corpus, "--kind", "bm25"], read_only_folder / "bm25"],
                      [["model", "init-tiny"], read_only_folder / "new" / "tiny"]):
        refused([*args, "--out", out], f"--out {out}: cannot write in {read_only_folder} (Permission denied); "
                                       "choose a writable location")
    assert list(read_only_folder.iterdir()) == []


def test_rollout_env_kwargs_reach_gymnasium_make(tmp_path):
    out = tmp_path / "t.jsonl"
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", out, "--env-kwargs", "{bad"], "--env-kwargs: not valid JSON")
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", out, "--env-kwargs", "[1]"],
            "--env-kwargs must be a JSON object")
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", out, "--env-kwargs", '{"rooms": 3}'],
            "--env-kwargs: stepopsd/FetchItem-v0 takes no option 'rooms'; its options: ", "num_places")
    refused(["rollout", "stepopsd/FetchItem-v0", "--out", out, "--env-kwargs", '{"num_places": 300}'],
            "could not make stepopsd/FetchItem-v0: num_places")  # the env's own check: the kwargs got there
    played = invoke(["rollout", "stepopsd/FetchItem-v0", "--out", out, "--episodes", "1",
                     "--env-kwargs", '{"num_places": 3, "max_episode_steps": 1}'])
    assert played.exit_code == 0, played.output
    assert len(json.loads(out.read_text())["steps"]) == 1  # max_episode_steps = 1 truncated it


def test_plot_names_the_allowed_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 1, "rollout/success": 0.5}\n')
    refused(["plot", run, "--out", tmp_path / "p.txt"], "must end in .png, .pdf, .svg")
    refused(["plot", run, "--out", tmp_path], f"--out {tmp_path} is a folder")
    refused(["plot", run, tmp_path / "none", "--out", tmp_path / "p.png"], "has no metrics.jsonl")


def test_inspect_of_empty_corrupt_or_creditless_files(tmp_path):
    empty, corrupt, plain = tmp_path / "empty.jsonl", tmp_path / "corrupt.jsonl", tmp_path / "plain.jsonl"
    empty.write_text("")
    corrupt.write_text("{oops\nnot json\n")
    refused(["inspect", empty, "--tokenizer", tmp_path], "no trajectories in", "RUN/trajectories/iter-N.jsonl")
    refused(["inspect", corrupt, "--tokenizer", tmp_path], "unreadable line(s): line 1: invalid JSON")
    assert invoke(["rollout", "stepopsd/FetchItem-v0", "--episodes", "1", "--out", plain]).exit_code == 0
    refused(["inspect", plain, "--tokenizer", tmp_path], "carries no credit")


def with_credit(traj, **changes):
    """``traj`` with a well-formed ``metadata["credit"]``, ``changes`` replacing its fields."""
    credit = {"outcome_advantage": 1.0, "token_advantages": [0.5] * len(traj.token_ids),
              "delta": [0.1] * len(traj.token_ids)}
    return dataclasses.replace(traj, metadata={"credit": {**credit, **changes}})


@pytest.mark.parametrize("changes, message", [
    ({"token_advantages": [0.5] * 5}, "metadata.credit.token_advantages: must be a list of one number per token "
                                      "(len(token_ids) 13), got length 5"),
    ({"delta": [0.1] * 12 + ["x"]}, 'metadata.credit.delta[12]: must be a finite number, got string "x"'),
    ({"delta": [float("nan")] * 13}, "metadata.credit.delta[0]: must be a finite number, got number NaN"),
    ({"outcome_advantage": None}, "metadata.credit.outcome_advantage: must be a finite number, got null"),
])
def test_inspect_names_the_malformed_credit_field(tmp_path, small_model_dir, changes, message):
    path = tmp_path / "credit.jsonl"
    save_trajectories([with_credit(make_trajectory(), **changes)], path)
    refused(["inspect", path, "--tokenizer", small_model_dir], f"{path}: trajectory 't0', {message}")


@pytest.mark.parametrize("token_id", [5000, 2**70])
def test_token_ids_outside_the_vocabulary_are_named_before_decoding_or_embedding(tmp_path, small_model_dir, token_id):
    path = tmp_path / "foreign.jsonl"
    ids = tuple(range(100, 113))
    save_trajectories([with_credit(make_trajectory(token_ids=ids[:5] + (token_id,) + ids[6:]))], path)
    message = f"{path}: trajectory 't0', token_ids[5]: id {token_id} is outside the vocabulary (ids 0..895)"
    refused(["inspect", path, "--tokenizer", small_model_dir], message, "pass the --tokenizer of the run")
    refused(["credit-audit", path, "--model", small_model_dir], message, "pass the --model of the run")


def test_envs_all_describes_what_it_can():
    result = invoke(["envs", "--all"])
    assert result.exit_code == 0 and "stepopsd/FetchItem-v0" in result.output
    try:
        import mujoco  # noqa: F401
    except ImportError:
        assert "(cannot be described: MuJoCo is not installed" in result.output


# ----------------------------------------------------------------------------- search index and retrieval server


def test_index_build_checks_out_and_corpus_before_indexing(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("x")
    missing = tmp_path / "none.jsonl"
    refused(["index", "build", "--corpus", missing, "--kind", "bm25", "--out", full], f"--out {full} is not empty")
    refused(["index", "build", "--corpus", missing, "--kind", "bm25", "--out", tmp_path / "new"],
            f"corpus file {missing} does not exist")
    assert not (tmp_path / "new").exists()


def test_serve_retriever_binds_before_it_announces(tmp_path):
    pytest.importorskip("uvicorn")
    refused(["serve-retriever", "--index-dir", tmp_path, "--port", "70000"],
            "port must be an integer in 0..65535 (0 picks a free port), got 70000")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(["serve-retriever", "--index-dir", tmp_path, "--port", str(port)])
        assert f"127.0.0.1:{port}" in line and "already in use" in line and "serving" not in line


def test_serve_retriever_on_port_0_announces_the_port_it_serves_on(tmp_path, monkeypatch):
    """The command's order with the index load and the serving loop stubbed: bind, load, announce, serve."""
    pytest.importorskip("uvicorn")
    from stepopsd_envs.searchqa import retrievers, server

    served = {}
    monkeypatch.setattr(retrievers, "load_retriever", lambda *args: "retriever")
    monkeypatch.setattr(retrievers, "read_meta", lambda index_dir: {"num_passages": 5})
    monkeypatch.setattr(server, "serve", lambda retriever, **kwargs: served.update(kwargs))
    result = invoke(["serve-retriever", "--index-dir", tmp_path, "--port", "0"])
    assert result.exit_code == 0, result.output
    port = served["listener"].getsockname()[1]
    served["listener"].close()
    assert port > 0 and result.output.strip() == f"serving bm25 retrieval over 5 passages on http://127.0.0.1:{port}"


@pytest.mark.integration
@pytest.mark.slow
def test_serve_retriever_on_port_0_prints_the_real_port(tmp_path):
    """End to end (about 25 s: two JVM starts): index build, then a real server on a free port."""
    pytest.importorskip("pyserini")
    pytest.importorskip("uvicorn")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": f"passage number {i} about topic {i}"}) + "\n"
                              for i in range(5)))
    built = invoke(["index", "build", "--corpus", corpus, "--kind", "bm25", "--out", tmp_path / "bm25",
                    "--threads", "1"])
    assert built.exit_code == 0, built.output
    refused(["index", "build", "--corpus", corpus, "--kind", "bm25", "--out", tmp_path / "bm25"],
            "is not empty")
    server = subprocess.Popen([sys.executable, "-m", "stepopsd_cli", "serve-retriever", "--index-dir",
                               str(tmp_path / "bm25"), "--port", "0", "--threads", "1"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = ""
        while "serving" not in line and server.poll() is None:  # the JVM logs to stderr first
            line = server.stderr.readline()
        match = re.search(r"serving bm25 retrieval over 5 passages on http://127\.0\.0\.1:(\d+)$", line.strip())
        assert match and int(match.group(1)) > 0, line
        from stepopsd_envs.searchqa.server import RemoteRetriever

        remote = RemoteRetriever(f"http://127.0.0.1:{match.group(1)}", timeout_s=5)
        for _ in range(100):  # the socket listens already; uvicorn starts answering a moment later
            try:
                assert remote.health()["num_passages"] == 5
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        else:
            pytest.fail("the server never answered")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ----------------------------------------------------------------------------- the real console script


@pytest.mark.integration
def test_console_script_errors_are_one_line_on_stderr(tmp_path):
    for args, message in [
        (["train", "--config", "test-fetch", "--alpha-clip", "5", "--out", str(tmp_path / "r")],
         "algorithm.alpha_clip must lie in [0, 1), got 5.0"),
        (["serve-retriever", "--index-dir", str(tmp_path), "--port", "70000"], "port must be an integer"),
    ]:
        completed = subprocess.run([sys.executable, "-m", "stepopsd_cli", *args], capture_output=True, text=True)
        assert completed.returncode == 2
        assert completed.stderr.strip() == f"error: {message}" or (
            message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1), completed.stderr
        assert "Traceback" not in completed.stderr + completed.stdout and "serving" not in completed.stderr
