"""Bad input gets one clear line before any work, never a traceback; nothing on disk is lost.

Library side: trajectory files, env calls, Search-QA index building (real pyserini / faiss) and
the retriever server's address (loopback only).
"""

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium
import pytest
from gymnasium.error import ResetNeeded

import stepopsd_envs  # noqa: F401  (registers the envs)
from stepopsd.episodes import expert_output_fn
from stepopsd.trajectory import SchemaError, Span, SpanKind, Step, Trajectory
from stepopsd.trajectory_io import (
    TrajectoryFileError,
    load_trajectories,
    save_trajectories,
    trajectory_from_dict,
    trajectory_to_dict,
)


# --------------------------------------------------------------------------- trajectory files


def good_record() -> dict:
    """A valid record with one step and token offsets (tokens 0-1 prompt, 2-4 response, 5-6 observation)."""
    step = Step(index=0, response="<action>look</action>", thought="", action="look", observation="You see.",
                reward=1.0, spans=(Span(SpanKind.ACTION, 8, 12, 2, 5), Span(SpanKind.OBSERVATION, 0, 8, 5, 7)),
                response_token_start=2, response_token_end=5, info={"won": True})
    traj = Trajectory(trajectory_id="t0", task_id="task", env_id="stepopsd/FetchItem-v0", group_id=3, prompt="p",
                      steps=(step,), reward=1.0, success=True, token_ids=tuple(range(7)),
                      trainable_mask=(False, False, True, True, True, False, False),
                      behaviour_logprobs=(0.0, 0.0, -0.1, -0.2, -0.3, 0.0, 0.0), terminated=True)
    return json.loads(json.dumps(trajectory_to_dict(traj)))


def edited(changes: dict) -> dict:
    """good_record() with ``{"a.b.0.c": value}`` paths set (``DELETE`` removes the key)."""
    record = good_record()
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = record
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is DELETE:
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value
    return record


DELETE = object()
NAN = float("nan")

BAD_RECORDS = [
    ({"success": "maybe"}, "trajectory 't0', success: must be true or false, got string \"maybe\""),
    ({"success": 1}, "trajectory 't0', success: must be true or false, got integer 1"),
    ({"reward": "abc"}, "trajectory 't0', reward: must be a finite number, got string \"abc\""),
    ({"reward": NAN}, "trajectory 't0', reward: must be a finite number, got number NaN"),
    ({"reward": float("inf")}, "trajectory 't0', reward: must be a finite number, got number Infinity"),
    ({"group_id": "g"}, "trajectory 't0', group_id: must be an integer, got string \"g\""),
    ({"group_id": True}, "trajectory 't0', group_id: must be an integer, got boolean true"),
    ({"group_id": 1.5}, "trajectory 't0', group_id: must be an integer, got number 1.5"),
    ({"prompt": None}, "trajectory 't0', prompt: must be a string, got null"),
    ({"metadata": []}, "trajectory 't0', metadata: must be a JSON object, got list []"),
    ({"steps": "x"}, "trajectory 't0', steps: must be a list of step objects, got string \"x\""),
    ({"steps": ["x"]}, "trajectory 't0', steps[0]: must be a JSON object, got string \"x\""),
    ({"steps": []}, "trajectory 't0', steps: is empty; only a truncated, unsuccessful trajectory may have no steps"),
    ({"token_ids": [0, 1, "2", 3, 4, 5, 6]}, "trajectory 't0', token_ids[2]: must be a non-negative integer, "
                                             "got string \"2\""),
    ({"token_ids": [0, 1, 2, 3, 4, 5, -6]}, "trajectory 't0', token_ids[6]: must be a non-negative integer, "
                                            "got integer -6"),
    ({"trainable_mask.2": 1}, "trajectory 't0', trainable_mask[2]: must be true or false, got integer 1"),
    ({"behaviour_logprobs.3": NAN}, "trajectory 't0', behaviour_logprobs[3]: must be a number (not NaN), "
                                    "got number NaN"),
    ({"trajectory_id": 7}, "trajectory_id: must be a string, got integer 7"),
    ({"task_id": DELETE}, "trajectory 't0', task_id: is missing"),
    ({"colour": "red"}, "trajectory 't0', colour: is not a field of the schema"),
    ({"schema_version": DELETE}, "trajectory 't0', schema_version: is missing (this stepopsd reads 1)"),
    ({"schema_version": 2}, "trajectory 't0', schema_version: integer 2 is not supported (this stepopsd reads 1)"),
    ({"steps.0.action": 123}, "trajectory 't0', steps[0].action: must be a string, got integer 123"),
    ({"steps.0.index": "0"}, "trajectory 't0', steps[0].index: must be an integer, got string \"0\""),
    ({"steps.0.valid_action": "yes"}, "trajectory 't0', steps[0].valid_action: must be true or false, "
                                      "got string \"yes\""),
    ({"steps.0.reward": NAN}, "trajectory 't0', steps[0].reward: must be a finite number, got number NaN"),
    ({"steps.0.info": "won"}, "trajectory 't0', steps[0].info: must be a JSON object, got string \"won\""),
    ({"steps.0.state_info": [1]}, "trajectory 't0', steps[0].state_info: must be a JSON object, got list [1]"),
    ({"steps.0.response_token_start": 2.0}, "trajectory 't0', steps[0].response_token_start: must be an integer "
                                            "or null, got number 2.0"),
    ({"steps.0.observation": DELETE}, "trajectory 't0', steps[0].observation: is missing"),
    ({"steps.0.spans": {"kind": "action"}}, "trajectory 't0', steps[0].spans: must be a list of span objects, "
                                            "got object {\"kind\": \"action\"}"),
    ({"steps.0.spans.0": "action"}, "trajectory 't0', steps[0].spans[0]: must be a JSON object, got string \"action\""),
    ({"steps.0.spans.0.kind": "verb"}, "trajectory 't0', steps[0].spans[0].kind: must be one of thought, action, "
                                       "observation, other, got string \"verb\""),
    ({"steps.0.spans.1.char_end": "8"}, "trajectory 't0', steps[0].spans[1].char_end: must be an integer, "
                                        "got string \"8\""),
    ({"steps.0.spans.1.token_end": DELETE}, "trajectory 't0', step 0, spans[1] (observation): token_start and "
                                            "token_end must both be set or both be None"),
    ({"steps.0.spans.0.start": 0}, "trajectory 't0', steps[0].spans[0].start: is not a field of the schema"),
    ({"steps": [good_record()["steps"][0], {**good_record()["steps"][0], "index": 1, "spans": [],
                                            "response_token_start": 4, "response_token_end": 6}]},
     "trajectory 't0', step 1, response_token_start/end: [4, 6) overlaps step 0's response [2, 5); "
     "each step's response must follow the one before it"),
]


@pytest.mark.parametrize("changes, message", BAD_RECORDS)
def test_bad_record_is_one_schema_error_naming_the_field(changes, message):
    with pytest.raises(SchemaError) as error:
        trajectory_from_dict(edited(changes))
    assert str(error.value) == message


def test_record_that_is_not_an_object():
    with pytest.raises(SchemaError) as error:
        trajectory_from_dict([1, 2])
    assert str(error.value) == "a trajectory record must be a JSON object, got list [1, 2]"


@pytest.mark.parametrize("changes, message", [BAD_RECORDS[0], BAD_RECORDS[10], BAD_RECORDS[12], BAD_RECORDS[22]])
def test_bad_record_in_a_file_names_file_and_line_strict_raises_lenient_skips(tmp_path, changes, message):
    path = tmp_path / "trajs.jsonl"
    good = json.dumps(good_record())
    path.write_text(f"{good}\n{json.dumps(edited(changes))}\n\n{good}\n")
    before = path.read_bytes()
    with pytest.raises(TrajectoryFileError) as error:
        load_trajectories(path)
    assert str(error.value) == f"{path}: 1 unreadable line(s): line 2: {message}"
    assert error.value.bad_lines == [(2, message)] and len(error.value.valid) == 2
    with pytest.warns(UserWarning) as caught:
        assert [t.trajectory_id for t in load_trajectories(path, strict=False)] == ["t0", "t0"]
    assert [str(w.message) for w in caught] == [str(error.value)]
    assert path.read_bytes() == before  # reading never rewrites


def test_json_and_encoding_errors_name_the_line(tmp_path):
    path = tmp_path / "trajs.jsonl"
    good = json.dumps(good_record()).encode()
    path.write_bytes(good + b"\n" + b'{"a": 1 "b"}\n' + b'{"a": "\xff"}\n' + b"[[" * 100_000 + b"\n")
    with pytest.raises(TrajectoryFileError) as error:
        load_trajectories(path)
    assert str(error.value) == (f"{path}: 3 unreadable line(s): line 2: invalid JSON: Expecting ',' delimiter "
                                "(column 9); line 3: not UTF-8 text: byte 0xff at column 8; "
                                "line 4: invalid JSON: nested too deeply")


def test_old_files_and_zero_step_rollout_failures_still_load(tmp_path):
    old = edited({"steps.0.state_info": DELETE, "steps.0.info": DELETE, "metadata": DELETE, "task_type": DELETE,
                  "reward": 1, "steps.0.reward": 0, "behaviour_logprobs": [0, 0, -1, -1, -1, 0, 0]})
    # what the rollout writes when an env's reset fails: no steps, truncated, the error in metadata
    failed = edited({"trajectory_id": "t1", "steps": [], "success": False, "reward": 0.0, "terminated": False,
                     "truncated": True, "token_ids": [], "trainable_mask": [], "behaviour_logprobs": [],
                     "metadata": {"error": "ValueError: no question"}})
    path = tmp_path / "trajs.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(failed) + "\n")
    first, second = load_trajectories(path)
    assert first.reward == 1.0 and isinstance(first.reward, float) and first.steps[0].state_info == {}
    assert first.behaviour_logprobs[2] == -1.0 and isinstance(first.behaviour_logprobs[2], float)
    assert second.num_steps == 0 and second.truncated
    save_trajectories([first, second], tmp_path / "again.jsonl")
    assert load_trajectories(tmp_path / "again.jsonl") == [first, second]


@pytest.mark.parametrize("strict", [True, False])
def test_empty_or_unreadable_file_raises_one_line(tmp_path, strict):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(TrajectoryFileError) as error:
        load_trajectories(empty, strict=strict)
    assert str(error.value) == f"no trajectories in {empty} (the file is empty)"
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text("{not json\n")
    with pytest.raises(TrajectoryFileError) as error:
        load_trajectories(corrupt, strict=strict)
    assert str(error.value) == (f"{corrupt}: no readable trajectory, 1 unreadable line(s): "
                                "line 1: invalid JSON: Expecting property name enclosed in double quotes (column 2)")
    with pytest.raises(IsADirectoryError, match="is a folder, expected a trajectories JSONL file"):
        load_trajectories(tmp_path, strict=strict)
    with pytest.raises(FileNotFoundError, match="no trajectory file at"):
        load_trajectories(tmp_path / "missing.jsonl", strict=strict)


@pytest.mark.parametrize("entry", ["audit_credit", "compute_advantages"])
def test_token_ids_the_teacher_cannot_embed_are_refused_before_any_work(entry):
    import torch

    from stepopsd.algo.advantage import compute_advantages
    from stepopsd.config import AlgorithmConfig
    from stepopsd.lab.credit_audit import audit_credit

    teacher = torch.nn.Module()  # no forward: the check must come first
    teacher.get_input_embeddings = lambda: torch.nn.Embedding(5, 2)  # ids 0..4; the record holds 0..6
    call = {"audit_credit": audit_credit, "compute_advantages": compute_advantages}[entry]
    with pytest.raises(SchemaError) as error:
        call([trajectory_from_dict(good_record())], AlgorithmConfig(name="stepopsd"), teacher=teacher, tokenize=list)
    assert str(error.value) == "trajectory 't0', token_ids[5]: id 5 is outside the vocabulary (ids 0..4)"


# --------------------------------------------------------------------------- env input


def raw_env(env_id: str):
    return gymnasium.make(env_id).unwrapped  # no wrappers: the env's own checks


@pytest.mark.parametrize("env_id", ["stepopsd/FetchItem-v0", "stepopsd/ForkedErrand-v0"])
def test_step_input_and_call_order(env_id):
    env = raw_env(env_id)
    with pytest.raises(RuntimeError) as error:
        env.step("<action>look</action>")
    assert str(error.value) == "no episode is running: call reset() before step()"
    observation, info = env.reset(seed=0)
    for action, name in ((None, "NoneType"), (42, "int"), (b"<action>look</action>", "bytes")):
        with pytest.raises(TypeError) as error:
            env.step(action)
        assert str(error.value) == f"action must be str (the model's raw output), got {name}"
    expert = expert_output_fn(env)
    terminated = False
    while not terminated:  # the refused calls above changed nothing: the expert still wins
        observation, reward, terminated, truncated, info = env.step(expert(observation, info))
    assert info["won"] and reward == 1.0
    with pytest.raises(RuntimeError) as error:
        env.step(expert(observation, info))
    assert str(error.value) == "the episode has ended (terminated): call reset() before step()"
    with pytest.raises(TypeError) as error:
        env.reset(options="notadict")
    assert str(error.value) == ("reset options must be a dict of env-specific settings or None, "
                                "got str 'notadict'")
    with pytest.raises(RuntimeError, match="the episode has ended"):  # a refused reset starts nothing
        env.step("<action>look</action>")
    env.reset(seed=1)
    assert env.step("<action>look</action>")[4]["action"] == "look"


def test_through_gymnasium_make_the_wrappers_and_the_env_agree():
    env = gymnasium.make("stepopsd/FetchItem-v0")
    with pytest.raises(ResetNeeded):  # Gymnasium's OrderEnforcing answers first
        env.step("<action>look</action>")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="action must be str"):
        env.step(7)
    with pytest.raises(TypeError, match="reset options must be a dict"):
        env.reset(options=["scene_seed", 3])


def test_searchqa_refuses_a_step_after_its_answer():
    class NoHits:
        def search(self, queries, top_k):
            return [[] for _ in queries]

    env = gymnasium.make("stepopsd/SearchQA-v0", retriever=NoHits()).unwrapped
    env.reset(options={"question": "q", "answers": ["a"]})
    with pytest.raises(TypeError, match="got NoneType"):
        env.step(None)
    assert env.step("<answer> a </answer>")[1:3] == (1.0, True)
    with pytest.raises(RuntimeError, match=r"the episode has ended \(terminated\)"):
        env.step("<answer> a </answer>")


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("stepopsd/SearchQA-v0", {"top_k": "3"}, "top_k must be an integer, got str '3'"),
    ("stepopsd/SearchQA-v0", {"data_sources": "nq"}, "data_sources must be a list of strings or None, got str 'nq'"),
    ("stepopsd/SearchQA-v0", {"max_turns": 2.5}, "max_turns must be an integer, got float 2.5"),
    ("stepopsd/ALFWorld-v0", {"games": "path"}, "games must be a list of paths or None, got str 'path'"),
    ("stepopsd/ALFWorld-v0", {"task_types": "Heat"}, "task_types must be a list of strings or None, got str 'Heat'"),
    ("stepopsd/ALFWorld-v0", {"expert_actions": "yes"}, "expert_actions must be true or false, got str 'yes'"),
])
def test_make_kwargs_of_the_wrong_type_are_named_before_anything_loads(env_id, kwargs, message):
    with pytest.raises(TypeError) as error:
        gymnasium.make(env_id, **kwargs)  # checked first: no index, retriever or game needed
    assert str(error.value).startswith(message)  # then gymnasium's "was raised from the environment creator ..."


def test_alfworld_inherits_the_checks(tmp_path):
    pytest.importorskip("alfworld")
    from stepopsd_envs.alfworld.generate import SceneConfig, generated_games

    games = generated_games(1, seed=3, cache_dir=tmp_path, task_types=["Pick"],
                            config=SceneConfig(num_receptacles=5, num_distractors=3))
    env = gymnasium.make("stepopsd/ALFWorld-v0", games=games).unwrapped
    with pytest.raises(RuntimeError, match="no episode is running"):
        env.step("<think>t</think><action>look</action>")
    _, info = env.reset(options={"game_index": 0, "expert": True})
    with pytest.raises(TypeError, match="got int"):
        env.step(3)
    assert env.history == []  # the refused step left no trace
    terminated = False
    for command in info["expert_actions"]:
        _, _, terminated, _, _ = env.step(f"<think>plan</think><action>{command}</action>")
    assert terminated
    with pytest.raises(RuntimeError, match="the episode has ended"):
        env.step("<think>t</think><action>look</action>")
    env.close()


# --------------------------------------------------------------------------- Search-QA index building


@pytest.fixture(scope="module")
def search_extra():
    pytest.importorskip("pyserini")
    pytest.importorskip("faiss")


def write_corpus(path, rows: list) -> str:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


ROWS = [{"id": "a", "contents": "heapq\nHeap queue algorithm, also known as the priority queue."},
        {"id": "b", "title": "bisect", "text": "Bisection algorithms for sorted lists."},
        {"id": 3, "contents": "json\nJSON encoder and decoder."}]


def test_check_corpus_accepts_a_good_corpus_and_counts_it(tmp_path, search_extra):
    from stepopsd_envs.searchqa.indexing import check_corpus

    assert check_corpus(write_corpus(tmp_path / "c.jsonl", ROWS[:2] + [""] + ROWS[2:])) == 3


@pytest.mark.parametrize("rows, message", [
    ([], "{path} holds no passages; expected one {{\"id\", \"contents\"}} JSON row per line"),
    (["", "  "], "{path} holds no passages; expected one {{\"id\", \"contents\"}} JSON row per line"),
    ([ROWS[0], '{"id": "x", "contents": "t" "u"}'], "{path}:2: invalid JSON: Expecting ',' delimiter (column 29)"),
    ([ROWS[0], ROWS[1], {"id": "a", "contents": "again"}],
     "{path}:3: passage id 'a' repeats line 1; ids must be unique (a repeated id makes search return duplicate hits)"),
    ([{"id": "3", "contents": "x"}, ROWS[2]],
     "{path}:2: passage id '3' repeats line 1; ids must be unique (a repeated id makes search return duplicate hits)"),
    ([["a", "text"]], "{path}:1: a corpus row must be a JSON object, got list"),
    ([{"contents": "no id"}], "{path}:1: 'id' must be a non-empty string (or an integer), got None"),
    ([{"id": "", "contents": "empty id"}], "{path}:1: 'id' must be a non-empty string (or an integer), got ''"),
    ([{"id": "a", "contents": 5}], "{path}:1: 'contents' must be a string, got int"),
    ([{"id": "a", "title": "t"}], "{path}:1: a corpus row needs 'id' and 'contents' (or 'title' and 'text')"),
])
def test_check_corpus_refuses_bad_corpora_in_one_line(tmp_path, search_extra, rows, message):
    from stepopsd_envs.searchqa.indexing import CorpusError, check_corpus

    path = write_corpus(tmp_path / "c.jsonl", rows)
    with pytest.raises(CorpusError) as error:
        check_corpus(path)
    assert str(error.value) == message.format(path=path)


def test_check_corpus_names_a_folder_a_missing_file_and_bad_bytes(tmp_path, search_extra):
    from stepopsd_envs.searchqa.indexing import CorpusError, check_corpus

    with pytest.raises(CorpusError) as error:
        check_corpus(tmp_path)
    assert str(error.value) == f'{tmp_path} is a folder, expected a JSONL file (one {{"id", "contents"}} row per line)'
    with pytest.raises(CorpusError, match=f"^corpus file {tmp_path / 'no.jsonl'} does not exist. "):
        check_corpus(tmp_path / "no.jsonl")
    binary = tmp_path / "c.jsonl"
    binary.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"id": "b", "contents": "caf\xe9"}\n')
    with pytest.raises(CorpusError) as error:
        check_corpus(binary)
    assert str(error.value) == f"{binary}:2: not UTF-8 text (invalid continuation byte at byte 29)"
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError, match=rf"^{gz}: cannot be read after line 0 \(Not a gzipped file"):
        check_corpus(gz)


def passages_of(rows):
    from stepopsd_envs.searchqa.datasets import _passage

    return [_passage(row, "rows", n) for n, row in enumerate(rows, start=1)]


def sample_passages(tmp_path):
    from stepopsd_envs.searchqa.datasets import iter_corpus
    from stepopsd_envs.searchqa.sample_corpus import write_sample_data

    corpus_path, _ = write_sample_data(tmp_path / "data")
    return list(iter_corpus(corpus_path))


def failing_after(passages, count, error):
    yield from passages[:count]
    raise error


def assert_nothing_left(parent, out):
    assert not out.exists() or not any(out.iterdir())
    assert [p.name for p in parent.iterdir() if ".partial-" in p.name] == []


@pytest.mark.parametrize("kind", ["bm25", "dense"])
def test_empty_passages_refused_before_any_work(tmp_path, search_extra, kind):
    from stepopsd_envs.searchqa import indexing

    build = indexing.build_bm25_index if kind == "bm25" else indexing.build_dense_index
    with pytest.raises(indexing.CorpusError) as error:
        build(iter([]), tmp_path / "index")
    assert str(error.value) == "no passages to index: the corpus is empty"
    assert list(tmp_path.iterdir()) == []


def test_failed_bm25_build_leaves_nothing_and_the_retry_succeeds(tmp_path, search_extra):
    from stepopsd_envs.searchqa.indexing import CorpusError, build_bm25_index
    from stepopsd_envs.searchqa.retrievers import load_retriever

    passages = sample_passages(tmp_path)
    out = tmp_path / "indexes" / "bm25"
    with pytest.raises(ValueError, match="corpus line 40 is broken"):  # after one batch reached Lucene
        build_bm25_index(failing_after(passages, 30, ValueError("corpus line 40 is broken")), out, threads=1,
                         batch_size=10)
    assert_nothing_left(out.parent, out)
    repeated = passages[:25] + [passages[3]] + passages[25:]
    with pytest.raises(CorpusError) as error:
        build_bm25_index(repeated, out, threads=1, batch_size=10)
    assert str(error.value) == (f"passage 26 repeats the id {passages[3].id!r} of an earlier passage; "
                                "ids must be unique (check the corpus with check_corpus)")
    assert_nothing_left(out.parent, out)
    out.mkdir()  # an empty folder is a fine target
    assert build_bm25_index(passages, out, threads=1, batch_size=10) == len(passages)
    assert sorted(p.name for p in out.iterdir()) == ["lucene", "meta.json"]
    hits = load_retriever("bm25", out, threads=1).search(["Tab Nanny"], 3)[0]
    assert hits and "tabnanny" in [hit.passage.title for hit in hits]
    with pytest.raises(FileExistsError, match="is not empty"):  # an existing index is never touched
        build_bm25_index(passages[:3], out, threads=1)
    assert (out / "meta.json").read_text() == json.dumps({"kind": "bm25", "num_passages": len(passages)},
                                                        indent=2) + "\n"


def test_failed_dense_build_leaves_nothing(tmp_path, search_extra):
    from stepopsd_envs.searchqa.indexing import CorpusError, build_dense_index

    passages = passages_of(ROWS)
    out = tmp_path / "dense"
    with pytest.raises(CorpusError, match="passage 4 repeats the id 'a'"):
        build_dense_index(passages + passages_of(ROWS[:1]), out, batch_size=2, threads=1)
    assert_nothing_left(tmp_path, out)
    assert build_dense_index(passages, out, batch_size=2, threads=1) == 3
    assert sorted(p.name for p in out.iterdir()) == ["index.faiss", "meta.json", "offsets.npy", "passages.jsonl"]


def test_out_that_is_a_file_is_refused_and_kept(tmp_path, search_extra):
    from stepopsd_envs.searchqa.indexing import build_bm25_index

    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="is a file; --out must be a new or empty folder"):
        build_bm25_index(passages_of(ROWS), out, threads=1)
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("meta, problem", [
    ('{"num_passages": 3}', '{folder}/meta.json must be a JSON object whose "kind" is "bm25" or "dense", got no kind'),
    ('["bm25"]', '{folder}/meta.json must be a JSON object whose "kind" is "bm25" or "dense", got a list'),
    ('{"kind": "bm2', "{folder}/meta.json is not JSON (Unterminated string starting at: line 1 column 10 (char 9))"),
    ('{"kind": "bm25", "num_passages": 3}', "{folder} is a damaged bm25 index: lucene is missing beside meta.json"),
    ('{"kind": "dense", "num_passages": 3}', "{folder} holds a dense index, not bm25"),
])
def test_a_damaged_index_folder_is_named_before_any_search_starts(tmp_path, meta, problem):
    from stepopsd_envs.searchqa.retrievers import load_retriever

    (tmp_path / "meta.json").write_text(meta)
    with pytest.raises(ValueError) as error:
        load_retriever("bm25", tmp_path, threads=1)
    rebuild = "" if "not bm25" in problem else \
        "; rebuild the index with `stepopsd index build --corpus C.jsonl --kind bm25|dense --out DIR`"
    assert str(error.value) == problem.format(folder=tmp_path) + rebuild


@pytest.mark.parametrize("damage", [lambda text: text[:len(text) // 2], lambda text: b"{oops" + text])
def test_a_damaged_alfworld_game_file_is_named(tmp_path, damage):
    pytest.importorskip("alfworld")
    from stepopsd_envs.alfworld.games import official_games

    shared_games = Path(__file__).resolve().parents[2] / "shared" / "data" / "alfworld"
    if not (shared_games / "json_2.1.1").is_dir():
        pytest.skip(f"no ALFWorld games at {shared_games}")
    source = official_games("valid_seen")[0]  # the real games in ../shared/data/alfworld (read only)
    split = tmp_path / "json_2.1.1" / "valid_seen"
    copy = split / source.relative_to(source.parents[2])
    copy.parent.mkdir(parents=True)
    copy.write_bytes(damage(source.read_bytes()))
    for make in (lambda: gymnasium.make("stepopsd/ALFWorld-v0", games=[str(copy)]).reset(seed=0),  # at reset
                 lambda: gymnasium.make("stepopsd/ALFWorld-v0", split="valid_seen", data_dir=tmp_path)):  # listing
        with pytest.raises(ValueError, match=f"^{copy} is a damaged ALFWorld game file \\(.+\\); download or "
                                             "generate it again"):
            make()
    assert source.is_file()


# --------------------------------------------------------------------------- a full disk


DISK_FULL = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


class FullDiskWriter:
    """Stands in for a model, tokenizer or accelerator: writes one file, then the disk is full."""

    is_main_process = True

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def save_pretrained(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text("{}")
        raise self.error

    def save_state(self, folder, **kwargs) -> None:
        self.save_pretrained(folder)

    def wait_for_everyone(self) -> None:
        pass


def test_a_full_disk_while_saving_a_model_keeps_the_previous_one_and_says_so(tmp_path):
    from safetensors import SafetensorError

    from stepopsd.policy import Policy, save_policy
    from stepopsd.run_dir import WriteFailedError

    out = tmp_path / "final_model"
    out.mkdir()
    (out / "model.safetensors").write_text("the previous model")
    full = FullDiskWriter(SafetensorError(DISK_FULL))
    with pytest.raises(WriteFailedError) as error:
        save_policy(Policy(model=full, tokenizer=full), out)
    assert str(error.value) == (f"could not write {out} ({DISK_FULL}; disk full or not writable?); "
                                "the previous one is kept")
    assert [p.name for p in tmp_path.iterdir()] == ["final_model"]  # no partial folder left
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]


def test_a_full_disk_while_saving_trajectories_leaves_no_half_file(tmp_path, monkeypatch):
    import errno

    from stepopsd import trajectory_io
    from stepopsd.run_dir import WriteFailedError

    def full_after_one_line(trajectories, path, mode):
        Path(path).write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trajectory_io, "_write_lines", full_after_one_line)
    out = tmp_path / "t.jsonl"
    with pytest.raises(WriteFailedError) as error:
        save_trajectories([trajectory_from_dict(good_record())], out)
    assert str(error.value) == (f"could not write {out} (No space left on device; disk full or not writable?); "
                                "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_earlier_ones(tmp_path):
    import errno

    from stepopsd.checkpoint import list_checkpoints, save_checkpoint
    from stepopsd.run_dir import RunDir, WriteFailedError
    from stepopsd.update import TrainState

    run = RunDir(tmp_path)
    earlier = run.checkpoint(1)
    earlier.mkdir(parents=True)
    (earlier / "train_state.json").write_text("{}")
    full = FullDiskWriter(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(WriteFailedError) as error:
        save_checkpoint(full, run, 2, TrainState())
    assert str(error.value) == (f"could not write {run.checkpoint(2)} (No space left on device; disk full or not "
                                "writable?); the earlier checkpoints are kept")
    assert list_checkpoints(run) == [earlier] and [p.name for p in run.checkpoints.iterdir()] == ["iter-000001"]


def test_a_full_disk_while_logging_metrics_leaves_the_earlier_records_whole(tmp_path, monkeypatch):
    import builtins
    import errno
    import json

    from stepopsd.metrics import MetricsLogger
    from stepopsd.run_dir import RunDir, WriteFailedError

    logger = MetricsLogger(RunDir(tmp_path))
    logger.log(1, {"loss": 0.5})
    real_open = builtins.open

    class HalfLine:  # writes part of the line, then the disk is full
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[:7])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda path, mode="r", *a, **k: HalfLine(real_open(path, mode, *a, **k))
                        if mode == "a" else real_open(path, mode, *a, **k))
    with pytest.raises(WriteFailedError, match="the earlier iterations' records are kept"):
        logger.log(2, {"loss": 0.4})
    monkeypatch.undo()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1]


# --------------------------------------------------------------------------- retriever server address


@pytest.mark.parametrize("port", [-1, 65536, 70000, "8765", True])
def test_port_outside_range_is_refused_before_serving(port, capfd):
    from stepopsd_envs.searchqa.server import ServeAddressError, listen, serve

    with pytest.raises(ServeAddressError) as error:
        listen("127.0.0.1", port)
    assert isinstance(error.value, ValueError)
    assert str(error.value) == f"port must be an integer in 0..65535 (0 picks a free port), got {port!r}"
    with pytest.raises(ServeAddressError):
        serve(object(), "127.0.0.1", port)
    assert capfd.readouterr() == ("", "")


def test_port_in_use_is_refused_before_serving(capfd):
    from stepopsd_envs.searchqa.server import ServeAddressError, listen, serve

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ServeAddressError) as error:
            listen("127.0.0.1", port)
        assert str(error.value) == (f"cannot serve on 127.0.0.1:{port}: the port is already in use; "
                                    "pick another port, or 0 for a free one")
        with pytest.raises(ServeAddressError, match="already in use"):
            serve(object(), "127.0.0.1", port)
    assert capfd.readouterr() == ("", "")


def test_unknown_host_is_refused():
    from stepopsd_envs.searchqa.server import ServeAddressError, listen

    with pytest.raises(ServeAddressError, match=r"^cannot serve on no-such-host\.invalid:0: unknown host"):
        listen("no-such-host.invalid", 0)


@pytest.mark.integration
def test_port_zero_announces_the_real_port_and_serves_there():
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    script = textwrap.dedent("""
        from stepopsd_envs.searchqa.retrievers import Hit, Passage
        from stepopsd_envs.searchqa.server import listen, listener_url, serve

        class One:
            def search(self, queries, top_k):
                return [[Hit(Passage("1", "t", query), 1.0)] for query in queries]

        listener = listen("127.0.0.1", 0)
        print("serving on", listener_url(listener), flush=True)
        serve(One(), num_passages=1, listener=listener)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        announced = server.stdout.readline().split()
        assert announced[:2] == ["serving", "on"] and announced[2].startswith("http://127.0.0.1:")
        port = int(announced[2].rsplit(":", 1)[1])
        assert 0 < port <= 65535
        from stepopsd_envs.searchqa.retrievers import RetrieverUnavailable
        from stepopsd_envs.searchqa.server import RemoteRetriever

        remote = RemoteRetriever(announced[2], timeout_s=10)
        for _ in range(100):  # the socket accepts at once; uvicorn answers once started
            try:
                assert remote.health() == {"status": "ok", "num_passages": 1}
                break
            except RetrieverUnavailable:
                assert server.poll() is None, "the server exited"
                time.sleep(0.1)
        assert remote.search(["hello"], 1)[0][0].passage.text == "hello"
    finally:
        server.terminate()
        server.wait(timeout=10)
