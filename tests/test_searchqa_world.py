"""The generated QA world: deterministic, every answer stated in a supporting passage, and answerable by the
scripted expert over a real BM25 index of its corpus; the step labels; ``stepopsd data searchqa-world``."""

import json

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import stepopsd_envs  # noqa: F401  (registers the envs)
from stepopsd.episodes import expert_output_fn
from stepopsd_cli.app import app
from stepopsd_envs.searchqa.datasets import iter_corpus, load_qa_examples
from stepopsd_envs.searchqa.indexing import check_corpus
from stepopsd_envs.searchqa.world import generate_world, write_world

SEED, ENTITIES, QUESTIONS = 7, 150, 200  # 40 test questions
runner = CliRunner()


@pytest.fixture(scope="module")
def world():
    return generate_world(SEED, ENTITIES, QUESTIONS)


@pytest.fixture(scope="module")
def files(world, tmp_path_factory):
    """``(corpus, train, test)`` paths of the world."""
    return write_world(world, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def bm25_dir(files):
    pytest.importorskip("pyserini")
    from stepopsd_envs.searchqa.indexing import build_bm25_index

    corpus, _, _ = files
    build_bm25_index(iter_corpus(corpus), corpus.parent / "bm25", threads=1)
    return str(corpus.parent / "bm25")


def make_env(bm25_dir, files, **kwargs):
    return gymnasium.make("stepopsd/SearchQA-v0", index_dir=bm25_dir, data_path=str(files[2]), threads=1, **kwargs)


def is_multi_hop(question) -> bool:
    return question.data_source == "world-multi"


def test_the_seed_decides_the_world(world):
    assert generate_world(SEED, ENTITIES, QUESTIONS) == world
    other = generate_world(SEED + 1, ENTITIES, QUESTIONS)
    assert not {p.title for p in world.passages} & {p.title for p in other.passages}
    assert not {q.question for q in world.test} & {q.question for q in other.test}


def test_every_answer_is_stated_in_the_passage_of_its_last_hop(world):
    text = {passage.id: passage.contents for passage in world.passages}
    title = {passage.id: passage.title for passage in world.passages}
    for question in world.train + world.test:
        hops = 2 if is_multi_hop(question) else 1
        assert len(question.expert_queries) == len(question.supporting_ids) == hops, question
        assert any(question.answer in text[i] for i in question.supporting_ids[-1]), question
        assert [title[ids[0]] for ids in question.supporting_ids] == list(question.expert_queries), question
        if is_multi_hop(question):  # the first passage names the bridge; the second query is the bridge's name
            assert question.expert_queries[1] == question.bridge
            assert any(question.bridge in text[i] for i in question.supporting_ids[0]), question
        else:
            assert question.bridge == ""


def test_splits_are_disjoint_and_hold_both_families(world):
    train, test = [q.question for q in world.train], [q.question for q in world.test]
    assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
    assert (len(train), len(test)) == (160, 40)
    for split in (world.train, world.test):
        assert sum(map(is_multi_hop, split)) == len(split) // 2
    assert {len(p.text.split()) for p in world.passages} <= set(range(60, 130))  # ~100-word articles


def test_too_many_questions_for_the_world_is_a_clear_error():
    with pytest.raises(ValueError, match="generate more entities"):
        generate_world(0, num_entities=20, num_questions=1000)
    with pytest.raises(ValueError, match="num_entities must be >= 20"):
        generate_world(0, num_entities=5)


def test_files_load_through_the_searchqa_loaders(world, files):
    corpus, train, test = files
    assert check_corpus(corpus) == len(world.passages) and list(iter_corpus(corpus)) == list(world.passages)
    examples = load_qa_examples([train, test])
    assert [e.question for e in examples] == [q.question for q in world.train + world.test]
    multi = load_qa_examples(test, split="test", data_sources=["world-multi"])
    expected = [q for q in world.test if is_multi_hop(q)]
    assert [(e.answers, e.expert_queries, e.supporting_ids) for e in multi] == [
        ((q.answer,), q.expert_queries, q.supporting_ids) for q in expected]
    row = json.loads(test.read_text().splitlines()[0])
    assert row["extra_info"] == {"split": "test", "index": 0} and row["metadata"]["bridge"] == world.test[0].bridge


def test_metadata_needs_one_query_per_hop(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "golden_answers": ["a"],
                                "metadata": {"expert_queries": ["x", "y"], "supporting_ids": [["1"]]}}) + "\n")
    with pytest.raises(ValueError, match="qa.jsonl row 0: .*one entry per hop"):
        load_qa_examples(path)


def test_expert_queries_find_the_needed_passages_in_the_bm25_top_3(world, bm25_dir):
    from stepopsd_envs.searchqa.retrievers import load_retriever

    retriever = load_retriever("bm25", bm25_dir, threads=1)
    questions = world.train + world.test

    def hit_rate(chosen, hop, query_of):
        results = retriever.search([query_of(q) for q in chosen], 3)
        return sum(bool(set(q.supporting_ids[hop]) & {hit.passage.id for hit in hits})
                   for q, hits in zip(chosen, results)) / len(chosen)

    single = [q for q in questions if not is_multi_hop(q)]
    multi = [q for q in questions if is_multi_hop(q)]
    rates = {"single": hit_rate(single, 0, lambda q: q.expert_queries[0]),
             "multi, first hop": hit_rate(multi, 0, lambda q: q.expert_queries[0]),
             "multi, second hop": hit_rate(multi, 1, lambda q: q.expert_queries[1]),
             "multi, second hop, question as query": hit_rate(multi, 1, lambda q: q.question)}
    print("BM25 top-3 hit rate of the needed passage: "
          + ", ".join(f"{name} {rate:.1%}" for name, rate in rates.items()))
    assert rates["single"] >= 0.9 and rates["multi, first hop"] >= 0.9 and rates["multi, second hop"] >= 0.9
    assert rates["multi, second hop, question as query"] < 0.5  # a bridge question needs the second search


def test_check_env_passes_on_world_questions(files, bm25_dir):
    check_env(make_env(bm25_dir, files).unwrapped)


def test_the_scripted_expert_wins_with_the_real_index_and_makes_no_mistake(world, files, bm25_dir):
    env = make_env(bm25_dir, files)
    wins = 0
    for number, question in enumerate(world.test):
        play = expert_output_fn(env)  # stepopsd's expert replay, reading info["expert_action"]
        observation, info = env.reset(options={"game_index": number})
        labels, terminated, truncated = [], False, False
        while not (terminated or truncated):
            observation, reward, terminated, truncated, info = env.step(play(observation, info))
            labels.append((info["decisive"], info["mistake"]))
        wins += reward == 1.0
        if reward == 1.0:  # a search per hop, then the answer; only the first search is decisive
            assert labels == [(True, False)] + [(False, False)] * len(question.expert_queries), question
    print(f"expert win rate {wins}/{len(world.test)}")
    assert wins >= 0.95 * len(world.test)


def test_labels_and_the_expert_follow_the_hops(world, files, bm25_dir):
    env = make_env(bm25_dir, files)
    number, question = next((n, q) for n, q in enumerate(world.test) if is_multi_hop(q))
    needed = {i for ids in question.supporting_ids for i in ids}
    retriever = env.unwrapped.retriever
    wrong_query = next(q.expert_queries[0] for q in world.train  # a query about something else
                       if not {hit.passage.id for hit in retriever.search([q.expert_queries[0]], 3)[0]} & needed)
    first, second = (f"<search> {query} </search>" for query in question.expert_queries)
    _, info = env.reset(options={"game_index": number})
    assert info["expert_action"] == first and info["expert_actions"] == [first, second,
                                                                         f"<answer> {question.answer} </answer>"]
    _, _, _, _, info = env.step("I will not use the tags.")
    assert (info["mistake"], info["decisive"], info["expert_action"]) == (False, False, first)
    _, _, _, _, info = env.step(f"<search> {wrong_query} </search>")
    assert (info["mistake"], info["decisive"], info["expert_action"]) == (True, True, first)
    _, _, _, _, info = env.step(first)
    assert (info["mistake"], info["decisive"], info["expert_action"]) == (False, True, second)
    assert question.bridge in second
    _, _, _, _, info = env.step(second)
    assert (info["mistake"], info["decisive"]) == (False, False)
    assert info["expert_action"] == f"<answer> {question.answer} </answer>"
    _, reward, terminated, _, info = env.step("<answer> Nobody </answer>")
    assert terminated and reward == 0.0 and (info["mistake"], info["decisive"]) == (True, False)
    assert "expert_action" not in info


def test_the_careless_searcher_answers_a_bridge_question_with_its_bridge(world, files, bm25_dir):
    env = make_env(bm25_dir, files)
    number, question = next((n, q) for n, q in enumerate(world.test) if is_multi_hop(q))
    first = f"<search> {question.expert_queries[0]} </search>"
    _, info = env.reset(options={"game_index": number})
    assert "careless_action" not in info
    _, info = env.reset(options={"game_index": number, "careless": True})
    assert info["careless_action"] == info["expert_action"] == first  # it does search the first hop
    _, _, _, _, info = env.step(first)
    assert info["careless_action"] == f"<answer> {question.bridge} </answer>"
    _, reward, terminated, _, info = env.step(info["careless_action"])
    assert terminated and reward == 0.0 and info["mistake"]
    number, question = next((n, q) for n, q in enumerate(world.test) if not is_multi_hop(q))
    _, info = env.reset(options={"game_index": number, "careless": True})
    _, _, _, _, info = env.step(info["careless_action"])
    assert info["careless_action"] == info["expert_action"] == f"<answer> {question.answer} </answer>"


def test_a_search_once_every_hop_is_found_is_a_mistake(world, files, bm25_dir):
    env = make_env(bm25_dir, files)
    number, question = next((n, q) for n, q in enumerate(world.test) if not is_multi_hop(q))
    env.reset(options={"game_index": number})
    _, _, _, _, info = env.step(f"<search> {question.expert_queries[0]} </search>")
    assert (info["mistake"], info["decisive"]) == (False, True)
    _, _, _, _, info = env.step(f"<search> {question.expert_queries[0]} </search>")
    assert (info["mistake"], info["decisive"]) == (True, False)
    _, reward, _, _, info = env.step(f"<answer> {question.answer} </answer>")
    assert reward == 1.0 and info["mistake"] is False


def test_a_question_without_expert_metadata_keeps_the_plain_plan(files, bm25_dir):
    env = make_env(bm25_dir, files)
    _, info = env.reset(options={"question": "Who founded the Tadra Conservatory?", "answers": ["Nobody"]})
    assert "expert_action" not in info
    assert info["expert_actions"] == ["<search> Who founded the Tadra Conservatory? </search>", "<answer> Nobody </answer>"]
    _, _, _, _, info = env.step("<search> Tadra Conservatory </search>")
    assert "mistake" not in info and "decisive" not in info and "expert_action" not in info


def test_cli_writes_the_world_and_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "world"
    args = ["data", "searchqa-world", "--out", str(out), "--seed", "3", "--entities", "40", "--questions", "20"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = write_world(generate_world(3, 40, 20), tmp_path / "expected")
    for path in expected:
        assert (out / path.name).read_bytes() == path.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "is not empty" in again.output
    too_many = runner.invoke(app, ["data", "searchqa-world", "--out", str(tmp_path / "new"), "--entities", "20",
                                   "--questions", "1000"])
    assert too_many.exit_code == 2 and "generate more entities" in too_many.output
    assert not (tmp_path / "new").exists()


def test_cli_index_option_builds_the_bm25_index(tmp_path):
    pytest.importorskip("pyserini")
    out = tmp_path / "world"
    result = runner.invoke(app, ["data", "searchqa-world", "--out", str(out), "--entities", "20", "--questions", "4",
                                 "--index", "--threads", "1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "bm25" / "meta.json").read_text())
    assert meta == {"kind": "bm25", "num_passages": check_corpus(out / "corpus.jsonl")}


def test_fillers_zero_states_only_the_facts():
    short = generate_world(SEED, 40, 20, fillers=0)
    for passage in short.passages:
        assert len(passage.text.split()) <= 30, passage.text
    text = {p.id: p.contents for p in short.passages}
    for question in short.train + short.test:
        assert question.answer in text[question.supporting_ids[-1][0]]
    with pytest.raises(ValueError, match="fillers must be in"):
        generate_world(SEED, 40, 20, fillers=7)


def test_cli_fillers_option(tmp_path):
    result = runner.invoke(app, ["data", "searchqa-world", "--out", str(tmp_path / "w"), "--seed", str(SEED),
                                 "--entities", "40", "--questions", "20", "--fillers", "0"])
    assert result.exit_code == 0, result.output
    expected = write_world(generate_world(SEED, 40, 20, fillers=0), tmp_path / "expected")[0]
    assert (tmp_path / "w" / "corpus.jsonl").read_bytes() == expected.read_bytes()


def test_world_kwarg_builds_the_world_into_the_cache_once(tmp_path, monkeypatch):
    pytest.importorskip("pyserini")
    monkeypatch.setenv("STEPOPSD_CACHE", str(tmp_path))
    sizes = {"seed": 3, "entities": 40, "questions": 20, "fillers": 0}
    env = gymnasium.make("stepopsd/SearchQA-v0", world=sizes, threads=1)
    [folder] = (tmp_path / "searchqa-world").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["bm25", "corpus.jsonl", "test.jsonl", "train.jsonl"]
    expected = generate_world(3, 40, 20, fillers=0)
    assert [e.question for e in env.unwrapped.games] == [q.question for q in expected.train]  # split "train"
    stamp = (folder / "bm25" / "meta.json").stat().st_mtime_ns
    test_env = gymnasium.make("stepopsd/SearchQA-v0", world=sizes, split="test", threads=1)
    assert (folder / "bm25" / "meta.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [e.question for e in test_env.unwrapped.games] == [q.question for q in expected.test]
    play = expert_output_fn(test_env)
    observation, info = test_env.reset(options={"game_index": 0})
    terminated = truncated = False
    while not (terminated or truncated):
        observation, reward, terminated, truncated, info = test_env.step(play(observation, info))
    assert reward == 1.0


def test_world_kwarg_refuses_unknown_sizes_and_other_data(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPOPSD_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="unknown: size"):
        gymnasium.make("stepopsd/SearchQA-v0", world={"seed": 0, "size": 3})
    with pytest.raises(ValueError, match="drop data_path"):
        gymnasium.make("stepopsd/SearchQA-v0", world={"seed": 0}, data_path="questions.jsonl")
    with pytest.raises(ValueError, match="retriever must be one of"):
        gymnasium.make("stepopsd/SearchQA-v0", world={"seed": 0}, retriever="grep")
    assert not (tmp_path / "searchqa-world").exists()
