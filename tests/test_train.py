"""End-to-end training on the built-in FetchItem env with a tiny local model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_fixtures import small_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.checkpoint import latest_checkpoint, list_checkpoints
from stepopsd.config import TrainConfig, load_train_config
from stepopsd.configtree import ConfigError
from stepopsd.metrics import read_metrics
from stepopsd.run_dir import RunDir
from stepopsd.train import train
from stepopsd.trajectory_io import load_trajectories

FAST = {
    "sft.steps": 0,
    "env.train_kwargs": {"max_episode_steps": 4},
    "env.eval_kwargs": {"max_episode_steps": 4},
    "env.eval_episodes": 4,
    "rollout.sampling.max_new_tokens": 24,
}



def fast_config(model: Path, **overrides) -> TrainConfig:
    return load_train_config("test-fetch", {**FAST, "model.path": str(model), **overrides})


def fast_set_options(model: Path, **overrides) -> list[str]:
    """FAST as ``--set KEY=VALUE`` options of ``stepopsd train``."""
    values = {**FAST, "model.path": str(model), **overrides}
    return [arg for key, value in values.items()
            for arg in ("--set", f"{key}={json.dumps(value) if isinstance(value, dict) else value}")]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final_model" / "model.safetensors"))


@pytest.fixture(scope="module")
def finished_run(small_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "run"
    return out, train(fast_config(small_model_dir, **{"run.iterations": 3}), out)


@pytest.mark.integration
def test_run_directory_holds_metrics_checkpoints_model_and_trajectories(finished_run):
    out, summary = finished_run
    records = read_metrics(out)
    train_records = [r for r in records if "rollout/success" in r]
    assert [r["iteration"] for r in train_records] == [1, 2, 3]
    for key in ("adv/mixed_group_frac", "loss/total", "time/rollout_s", "rollout/tokens_per_s",
                "rollout/invalid_action_rate", "update/optimizer_step"):
        assert key in train_records[-1], key
    assert train_records[-1]["update/optimizer_step"] == 3.0
    assert [r["iteration"] for r in records if "eval/success" in r] == [0, 3]
    assert [p.name for p in list_checkpoints(RunDir(out))] == ["iter-000002", "iter-000003"]  # keep_last = 2
    assert (out / "final_model" / "config.json").is_file() and summary["final_model"]
    assert "All" in summary["success_before"] and "All" in summary["success_after"]
    dumped = load_trajectories(out / "trajectories" / "iter-000003.jsonl")
    assert len(dumped) == 2 * 4  # tasks x group size
    for traj in dumped:
        credit = traj.metadata["credit"]
        advantages = credit["token_advantages"]
        assert len(advantages) == len(credit["delta"]) == len(traj.token_ids)
        assert all(a == 0.0 for a, trainable in zip(advantages, traj.trainable_mask) if not trainable)
    saved = load_train_config(str(out / "config.toml"), {})
    assert saved == fast_config(Path(saved.model.path), **{"run.iterations": 3})


@pytest.mark.integration
def test_degenerate_groups_give_no_update(finished_run, small_model_dir):
    """An untrained model fails every episode: zero-variance groups, A = 0, no KL: weights stay."""
    out, _ = finished_run
    records = [r for r in read_metrics(out) if "rollout/success" in r]
    assert all(r["adv/mixed_group_frac"] == 0.0 and r["rollout/success"] == 0.0 for r in records)
    before = load_file(str(small_model_dir / "model.safetensors"))
    after = final_weights(out)
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.integration
def test_a_run_without_eval_before_evaluates_only_after(small_model_dir, tmp_path):
    summary = train(fast_config(small_model_dir, **{"run.iterations": 1, "run.eval_before": False}), tmp_path / "run")
    assert "success_before" not in summary and "All" in summary["success_after"]
    assert [r["iteration"] for r in read_metrics(tmp_path / "run") if "eval/success" in r] == [1]


@pytest.mark.integration
def test_killed_run_resumes_to_the_uninterrupted_result(small_model_dir, tmp_path):
    """Kill a run (SIGKILL) after its first checkpoint; --resume must end with the same weights.

    KL to the stale teacher and an entropy bonus make every step move the weights even when
    all groups fail, so the comparison covers optimizer, teacher snapshot and RNG restoration.
    """
    moving = {"optim.kl_coef": 0.05, "optim.entropy_coef": 0.01, "algorithm.teacher_refresh_steps": 2,
              "run.iterations": 3}
    reference = tmp_path / "reference"
    train(fast_config(small_model_dir, **moving), reference)
    initial = load_file(str(small_model_dir / "model.safetensors"))
    assert any(not torch.equal(initial[k], v) for k, v in final_weights(reference).items())
    out = tmp_path / "runs" / "killed"  # --out creates missing parents
    args = [sys.executable, "-m", "stepopsd_cli", "train", "--config", "test-fetch", "--out", str(out),
            "--iterations", "3", *fast_set_options(small_model_dir), "--set", "optim.kl_coef=0.05",
            "--set", "optim.entropy_coef=0.01", "--set", "algorithm.teacher_refresh_steps=2"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while latest_checkpoint(RunDir(out)) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert latest_checkpoint(RunDir(out)).name == "iter-000001"
    assert not (out / "final_model").exists(), "the run finished before it could be killed"
    (out / "checkpoints" / ".tmp-iter-000002").mkdir()  # as a kill during a save would leave it
    completed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "resumed from iter-000001" in completed.stdout
    resumed, expected = final_weights(out), final_weights(reference)
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0)
    train_iterations = [r["iteration"] for r in read_metrics(out) if "rollout/success" in r]
    assert train_iterations == [1, 2, 3]


@pytest.mark.integration
def test_two_process_data_parallel_run(small_model_dir, tmp_path):
    """accelerate launch, 2 CPU ranks over gloo: both step, replicas agree, rank 0 alone writes."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "stepopsd_cli", "train",
               "--config", "test-fetch", "--out", str(out), "--iterations", "2",
               *fast_set_options(small_model_dir, **{"env.eval_episodes": 2})]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    first, second = summary["replica_checksums"]
    assert first == second
    assert completed.stdout.count("iter    2") == 1  # only rank 0 prints and writes
    records = [r for r in read_metrics(out) if "rollout/success" in r]
    assert [r["iteration"] for r in records] == [1, 2]
    assert records[-1]["update/optimizer_step"] == 2.0
    assert len(load_trajectories(out / "trajectories" / "iter-000002.jsonl")) == 4  # rank 0's groups


@pytest.mark.integration
@pytest.mark.slow
def test_the_quickstart_raises_greedy_success_by_30_points(tmp_path):
    """The README's first command as shipped (about 13 minutes on one thread): the mixed-demonstrator
    warm start, then 20 StepOPSD iterations. Measured on a fresh clone: 59.4% -> 98.4%."""
    summary = train(load_train_config("quickstart", {"run.progress": False}), tmp_path / "quickstart")
    before, after = summary["success_before"]["All"], summary["success_after"]["All"]
    assert 30.0 <= before <= 70.0, before  # partial competence: RL has headroom
    assert after >= before + 30.0, (before, after)


def test_unknown_config_field_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown config field.*algorithm.alpha"):
        load_train_config("test-fetch", {"algorithm.alpha": 0.1})
    with pytest.raises(ConfigError, match="algorithm.name must be one of"):
        load_train_config("test-fetch", {"algorithm.name": "ppo"})


@pytest.mark.parametrize("name", ["quickstart", "quickstart-alfworld", "quickstart-searchqa", "alfworld-qwen2.5-3b", "searchqa-qwen2.5-3b",
                                  "test-fetch"])
def test_shipped_configs_resolve_and_name_real_env_options(name):
    import inspect

    from stepopsd_envs.plugins import env_class

    config = load_train_config(name, {})
    accepted = set(inspect.signature(env_class(config.env.env_id)).parameters) | {"max_episode_steps"}
    assert set(config.env.train_kwargs) <= accepted and set(config.env.eval_kwargs) <= accepted


def test_leaf_fields_give_the_defaults_of_the_whole_tree():
    from stepopsd.configtree import leaf_fields

    defaults = {path: default for path, _, _, default in leaf_fields(TrainConfig)}
    assert defaults["rollout.group_size"] == TrainConfig().rollout.group_size == 8  # RolloutConfig's own is 1
    assert defaults["sft.steps"] == 0


@pytest.mark.integration
def test_inspect_shows_step_credit_and_writes_html(finished_run, tmp_path):
    from typer.testing import CliRunner

    from stepopsd_cli import inspect_cmd

    out, _ = finished_run
    html_path = tmp_path / "credit.html"
    result = CliRunner().invoke(inspect_cmd.app, [str(RunDir(out).trajectories_file(3)), "--html", str(html_path)])
    assert result.exit_code == 0, result.output
    assert "GRPO A = +0.000" in result.output and "mean Δ" in result.output
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and page.count("<h2>") == 4  # one group of 4


@pytest.mark.integration
def test_plot_renders_a_png(finished_run, tmp_path):
    from typer.testing import CliRunner

    from stepopsd_cli import plot_cmd

    out, _ = finished_run
    png = tmp_path / "new" / "curves.png"
    result = CliRunner().invoke(plot_cmd.app, [str(out), str(out), "--label", "a", "--label", "b", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_eval_of_a_run_directory_writes_results_and_trajectories(finished_run, tmp_path):
    from typer.testing import CliRunner

    from stepopsd_cli import eval_cmd

    out, _ = finished_run
    result = CliRunner().invoke(eval_cmd.app, ["--model", str(out), "--episodes", "3", "--seeds", "2",
                                               "--temperature", "1.0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["episodes"] == 6 and len(results["per_seed"]) == 2
    assert set(results["success_mean"]) == {"fetch", "All"}
    assert len(load_trajectories(tmp_path / "trajectories.jsonl")) == 6
    assert "mean" in result.output and "std" in result.output
    missing = CliRunner().invoke(eval_cmd.app, ["--model", str(tmp_path)])
    assert missing.exit_code != 0 and "neither a model folder" in missing.output


@pytest.mark.parametrize("share_prefix", [False, True], ids=["one_forward", "shared_prefix"])
@pytest.mark.parametrize("window", [False, True], ids=["full", "window"])
def test_update_scores_logits_from_the_first_trainable_column_only(window, share_prefix):
    """The micro-batch loss asks the model for logits from the column before the first trainable token
    on (an LLM's prompt logits are most of a micro-batch's memory), without the attention mask (rows
    are right-padded; window rows differ in length): same loss, same gradients as the masked logits
    of every column. The same with the group's shared prompt forwarded once (optim.shared_prefix)."""
    import dataclasses

    from algo_fixtures import make_group, tiny_qwen3, with_model_behaviour
    from stepopsd.algo.loss import policy_loss, token_entropy, token_weights
    from stepopsd.batch import build_batch
    from stepopsd.logprobs import tempered, token_logprobs
    from stepopsd.logprobs import common_prefix_columns
    from stepopsd.logprobs import MIN_SHARED_PREFIX
    from stepopsd.update import first_scored_column as _first_scored_column, micro_loss as _micro_loss

    model, temperature = tiny_qwen3(seed=0), 0.7
    group = [with_model_behaviour(model, traj, temperature)
             for traj in make_group(0, [True, False, False, True], num_steps=4, window=window, seed=1)]
    generator = torch.Generator().manual_seed(0)
    batch = build_batch(group, [torch.randn(len(traj.token_ids), generator=generator) for traj in group])
    rows = torch.arange(batch.num_rows)
    weights = token_weights(batch.trainable_mask, batch.row_trajectory, "trajectory_mean")  # [R, L]
    ref_logprobs = batch.behaviour_logprobs - 0.1  # [R, L]
    base = TrainConfig()
    config = dataclasses.replace(base, optim=dataclasses.replace(base.optim, kl_coef=0.05, entropy_coef=0.01))
    assert _first_scored_column(batch.trainable_mask) > 10  # the prompt's logits are really skipped
    assert common_prefix_columns(batch.input_ids) >= MIN_SHARED_PREFIX  # the shared path really runs

    def every_column():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        return policy_loss(token_logprobs(logits, batch.input_ids, temperature), batch.behaviour_logprobs,
                           batch.advantages, batch.trainable_mask, clip_ratio=config.optim.clip_ratio,
                           ref_logprobs=ref_logprobs, kl_coef=0.05, entropy=token_entropy(tempered(logits, temperature)),
                           entropy_coef=0.01, num_tokens=10.0, weights=weights)[0]

    def loss_and_gradients(loss_fn):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.detach(), [parameter.grad.clone() for parameter in model.parameters()]

    reference, reference_grads = loss_and_gradients(every_column)
    loss, grads = loss_and_gradients(
        lambda: _micro_loss(config, model, batch, rows, ref_logprobs, weights, temperature, 10.0, share_prefix)[0])
    torch.testing.assert_close(loss, reference, atol=1e-6, rtol=0)
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad, atol=1e-6, rtol=1e-5)


def test_update_skips_only_rows_without_gradient():
    """Rows whose advantages are all 0 (a uniform group under GRPO) are not forwarded: the
    micro-batch's loss and gradients over the rows kept equal those over all its rows. With a KL
    or entropy term every row has a gradient and is kept; a micro-batch with no live row keeps one."""
    import dataclasses

    from algo_fixtures import make_group, tiny_qwen3, with_model_behaviour
    from stepopsd.algo.loss import token_weights
    from stepopsd.batch import build_batch
    from stepopsd.update import micro_loss as _micro_loss, rows_to_forward as _rows_to_forward, rows_with_gradient as _rows_with_gradient

    model, temperature = tiny_qwen3(seed=0), 1.0
    group = [with_model_behaviour(model, traj, temperature)
             for traj in make_group(0, [True, False, False, True], num_steps=3, window=True, seed=2)]
    generator = torch.Generator().manual_seed(0)
    advantages = [torch.randn(len(traj.token_ids), generator=generator) * (index % 2)
                  for index, traj in enumerate(group)]  # trajectories 0 and 2 carry no advantage
    batch = build_batch(group, advantages)
    rows = torch.arange(batch.num_rows)
    weights = token_weights(batch.trainable_mask, batch.row_trajectory, "trajectory_mean")  # [R, L]
    config = TrainConfig()
    live = _rows_with_gradient(batch, config.optim)
    assert live.tolist() == [bool(batch.row_trajectory[row] % 2) for row in rows]
    kept = _rows_to_forward(rows, live)
    assert 0 < len(kept) < batch.num_rows

    def loss_and_gradients(forwarded):
        model.zero_grad()
        loss = _micro_loss(config, model, batch, forwarded, None, weights, temperature, 10.0)[0]
        loss.backward()
        return loss.detach(), [parameter.grad.clone() for parameter in model.parameters()]

    reference, reference_grads = loss_and_gradients(rows)
    loss, grads = loss_and_gradients(kept)
    torch.testing.assert_close(loss, reference, atol=1e-7, rtol=0)
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad, atol=1e-7, rtol=1e-5)

    dead = rows[~live]
    assert _rows_to_forward(dead, live).tolist() == dead[:1].tolist()
    for key in ("kl_coef", "entropy_coef"):
        with_term = dataclasses.replace(config.optim, **{key: 0.01})
        assert bool(_rows_with_gradient(batch, with_term).all())


@pytest.mark.integration
def test_update_forwards_a_minibatch_in_micro_batches_of_like_lengths():
    """Window rows differ in length: the update puts a minibatch's rows into micro-batches by length,
    so each forward pads little (its width is the longest of its rows)."""
    import dataclasses

    from algo_fixtures import make_group, tiny_qwen3, with_model_behaviour
    from stepopsd.batch import build_batch

    model = tiny_qwen3(seed=0).train()
    group = [with_model_behaviour(model, traj) for traj in make_group(0, [True, False, False, True], num_steps=4,
                                                                       window=True, seed=3)]
    generator = torch.Generator().manual_seed(0)
    batch = build_batch(group, [torch.randn(len(traj.token_ids), generator=generator) for traj in group])
    lengths = batch.attention_mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 2  # rows of several lengths
    base = TrainConfig()
    config = dataclasses.replace(base, optim=dataclasses.replace(base.optim, minibatches=1, micro_batch_rows=3,
                                                                 shared_prefix=False))
    widths = [kwargs["input_ids"].shape[1] for kwargs in _forwards_of_one_update(config, model, batch)]
    expected = [int(chunk.max()) for chunk in lengths.sort().values.split(3)]
    assert widths == expected


@pytest.mark.integration
def test_with_a_shared_prefix_each_micro_batch_holds_one_groups_rows_and_forwards_its_prompt_once():
    """optim.shared_prefix: a minibatch's rows go to micro-batches by group (then length), so every
    micro-batch shares its group's prompt and forwards it once, in a forward of its own; the rows'
    ids after it run on that cache."""
    import dataclasses

    from algo_fixtures import make_group, tiny_qwen3, with_model_behaviour
    from stepopsd.batch import build_batch
    from stepopsd.logprobs import MIN_SHARED_PREFIX

    model = tiny_qwen3(seed=0).train()
    groups = [make_group(g, [True, False, False, True], num_steps=4, window=True, seed=3) for g in (0, 1)]
    trajectories = [with_model_behaviour(model, traj) for group in groups for traj in group]
    generator = torch.Generator().manual_seed(0)
    batch = build_batch(trajectories, [torch.randn(len(traj.token_ids), generator=generator) for traj in trajectories])
    assert batch.num_rows == 32  # 16 per group: micro-batches of 4 never straddle two groups
    base = TrainConfig()
    config = dataclasses.replace(base, optim=dataclasses.replace(base.optim, minibatches=1, micro_batch_rows=4))
    calls = [(kwargs["input_ids"].shape, kwargs.get("use_cache"), any(key in kwargs for key in ("cache", "past_key_values")))
             for kwargs in _forwards_of_one_update(config, model, batch)]
    prefixes = [shape for shape, use_cache, on_cache in calls if use_cache and not on_cache]
    suffixes = [shape for shape, use_cache, on_cache in calls if on_cache]
    assert len(prefixes) == len(suffixes) == 8 and len(calls) == 16  # every micro-batch: a prompt, then its rows
    assert all(shape[0] == 1 and shape[1] >= MIN_SHARED_PREFIX for shape in prefixes)
    assert sum(shape[0] for shape in suffixes) == batch.num_rows


def _forwards_of_one_update(config, model, batch) -> list[dict]:
    """The keyword arguments of every model forward one ppo_update of ``batch`` makes (a live teacher)."""
    from accelerate import Accelerator

    from stepopsd.algo.teacher import Teacher
    from stepopsd.update import TrainState, ppo_update

    calls = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    try:
        ppo_update(config, model, torch.optim.AdamW(model.parameters(), lr=1e-4), Teacher(model, mode="live"), batch,
                   Accelerator(cpu=True), TrainState(), iteration=1)
    finally:
        handle.remove()
    return calls

