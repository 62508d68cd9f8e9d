"""Evaluation never reports a 0% for what was not evaluated: unusable model folders are refused before
work, episodes the env ended by raising are counted, and results files hold no NaN."""

import json
import shutil

import gymnasium
import pytest
from typer.testing import CliRunner

from model_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)
from stepopsd.policy import ModelFolderError, load_policy
from stepopsd_cli.app import app
from stepopsd_envs.fetch import FetchItemEnv


class FlakyFetchEnv(FetchItemEnv):
    """FetchItem whose reset raises on odd seeds, as ALFWorld does on a damaged game file."""

    table_columns = ("fetch", "Unplayed", "All")

    def reset(self, *, seed=None, options=None):
        if seed is not None and seed % 2:
            raise KeyError("pddl_domain")
        return super().reset(seed=seed, options=options)


FLAKY = "test/FlakyFetch-v0"
if FLAKY not in gymnasium.registry:
    gymnasium.register(id=FLAKY, entry_point=FlakyFetchEnv, max_episode_steps=4)


def invoke(args):
    result = CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "400"})
    assert not isinstance(result.exception, Exception), result.output  # typer.Exit only, no traceback
    return result


def last_stderr_line(result) -> str:
    """The command's own last line (transformers draws its weight-loading bar on stderr before it)."""
    return result.stderr.strip().splitlines()[-1]


def copy_model(source, target, skip=()):
    target.mkdir()
    for path in source.iterdir():
        if path.name not in skip:
            shutil.copy(path, target / path.name)
    return target


def damage_weights(folder):
    """Weights that cannot load: a refusal naming something else proves it came before the weights."""
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    return folder


def no_tokenizer(tiny, tmp_path):
    return damage_weights(copy_model(tiny, tmp_path / "no-tokenizer", skip={"tokenizer.json", "tokenizer_config.json",
                                                                         "chat_template.jinja"}))


def no_chat_template(tiny, tmp_path):
    folder = copy_model(tiny, tmp_path / "no-template", skip={"chat_template.jinja"})
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    return damage_weights(folder)


def bert_encoder(tiny, tmp_path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=2000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny / name, folder / name)
    return folder


def small_vocabulary(tiny, tmp_path):
    config = json.loads((tiny / "config.json").read_text())
    folder = damage_weights(copy_model(tiny, tmp_path / "small-vocab"))
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 64}))
    return folder


@pytest.mark.parametrize("build, problem", [
    (no_tokenizer, "has no tokenizer (its vocabulary is empty"),
    (no_chat_template, ": the tokenizer has no chat template"),
    (bert_encoder, "holds a BertModel, not a causal language model"),
    (small_vocabulary, "but the model's embedding only 64; the tokenizer belongs to another model"),
])
def test_load_policy_refuses_what_cannot_be_a_policy_before_the_weights(tmp_path, tiny_model_dir, build,  # noqa: F811
                                                                        problem):
    folder = build(tiny_model_dir, tmp_path)
    with pytest.raises(ModelFolderError) as refused:
        load_policy(folder)
    assert str(refused.value).startswith(str(folder)) and problem in str(refused.value)


def test_load_policy_names_the_folder_of_weights_that_do_not_load(tmp_path, tiny_model_dir):  # noqa: F811
    folder = damage_weights(copy_model(tiny_model_dir, tmp_path / "damaged"))
    with pytest.raises(ModelFolderError, match=f"could not load a model from {folder}: .*deserializing header"):
        load_policy(folder)


def test_eval_refuses_a_model_folder_without_a_tokenizer_in_one_line(tmp_path, tiny_model_dir):  # noqa: F811
    folder = no_tokenizer(tiny_model_dir, tmp_path)
    result = invoke(["eval", "--model", folder, "--config", "quickstart", "--episodes", "2", "--out", tmp_path / "ev"])
    assert result.exit_code == 2
    assert last_stderr_line(result) == (f"error: {folder} has no tokenizer (its vocabulary is empty: no "
                                        "tokenizer.json, vocab or tokenizer.model); copy the tokenizer files of the "
                                        "model it was trained from into it")
    assert not (tmp_path / "ev" / "results.json").exists()


def test_eval_of_damaged_alfworld_games_exits_1_and_writes_no_results(tmp_path, tiny_model_dir):  # noqa: F811
    pytest.importorskip("alfworld")
    for trial in (1, 2):
        game = tmp_path / f"alf/json_2.1.1/valid_unseen/pick_and_place_simple-Mug-None-Desk-30{trial}/trial_T1"
        game.mkdir(parents=True)
        (game / "game.tw-pddl").write_text('{"solvable": true}')  # no PDDL: the engine raises at reset
    config = tmp_path / "alf.toml"
    config.write_text(f'[env]\nenv_id = "stepopsd/ALFWorld-v0"\neval_episodes = 2\n'
                      f'eval_kwargs = {{ split = "valid_unseen", data_dir = "{tmp_path / "alf"}" }}\n')
    result = invoke(["eval", "--model", tiny_model_dir, "--config", config, "--out", tmp_path / "ev"])
    assert result.exit_code == 1, result.output
    assert last_stderr_line(result) == ("error: 2 of 2 episodes ended in an env error (first: KeyError: "
                                        "'pddl_domain'); nothing was evaluated, nothing written")
    assert not (tmp_path / "ev" / "results.json").exists()


def test_eval_counts_env_errors_and_writes_null_not_nan(tmp_path, tiny_model_dir):  # noqa: F811
    out = tmp_path / "ev"
    result = invoke(["eval", "--model", tiny_model_dir, "--config", "quickstart", "--env", FLAKY,
                     "--episodes", "4", "--out", out])
    assert result.exit_code == 0, result.output
    # evaluation seeds are 10,000,000 + 0..3: the odd two raise at reset
    assert last_stderr_line(result) == ("warning: 2 of 4 episodes ended in an env error (first: KeyError: "
                                        "'pddl_domain'); they count as failures (results.json: env_errors)")
    assert "-: no episodes of that type" in result.stdout

    def refuse_nan(name):
        raise AssertionError(f"results.json holds {name}")

    results = json.loads((out / "results.json").read_text(), parse_constant=refuse_nan)
    assert results["episodes"] == 4 and results["env_errors"] == 2
    assert results["success_mean"]["Unplayed"] is None and results["per_seed"][0]["Unplayed"] is None
    assert "" not in results["success_mean"]  # an episode that never reset has no task type: in "All" only


def test_rollout_counts_env_errors_and_fails_when_every_episode_did(tmp_path, tiny_model_dir):  # noqa: F811
    for model_args in ([], ["--model", tiny_model_dir, "--max-new-tokens", "8"]):
        out = tmp_path / f"some-{len(model_args)}.jsonl"
        some = invoke(["rollout", FLAKY, "--seed", "0", "--episodes", "2", "--out", out, *model_args])
        assert some.exit_code == 0, some.output
        assert last_stderr_line(some).startswith("warning: 1 of 2 episodes ended in an env error (first: "
                                                 "KeyError: 'pddl_domain')"), some.stderr
        every = invoke(["rollout", FLAKY, "--seed", "1", "--episodes", "1", "--out", tmp_path / "every.jsonl",
                        *model_args])
        assert every.exit_code == 1
        assert last_stderr_line(every) == ("error: 1 of 1 episodes ended in an env error (first: KeyError: "
                                           "'pddl_domain'); nothing written")
        assert not (tmp_path / "every.jsonl").exists()
