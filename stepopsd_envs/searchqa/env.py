"""SearchQA: answer a question by searching a real corpus (the Search-R1 protocol).

``gymnasium.make("stepopsd/SearchQA-v0", index_dir=DIR, retriever="bm25", top_k=3, max_turns=4)``.
Each turn the agent writes ``<think>...</think>`` and one ``<search>query</search>`` (the
observation is ``<information>Doc 1(Title: ...) ...</information>``) or one
``<answer>...</answer>`` (the episode terminates; reward 1.0 on exact match after SQuAD
normalisation, else 0.0). After ``max_turns`` turns without an answer the episode is
truncated; so is an episode whose retriever becomes unavailable (server down).

Info keys beyond :class:`~stepopsd_envs.text_env.TextEnv`'s: ``answers`` (gold answers),
``expert_actions`` (reset: search the question, answer the first gold answer), ``turn``,
``retrieved_ids`` (after a search), ``exact_match`` and ``f1`` (after an answer),
``retrieval_error`` (when the retriever failed).

Questions whose row carries an expert plan (``QAExample.expert_queries`` and ``supporting_ids``,
e.g. the generated world of :mod:`stepopsd_envs.searchqa.world`) also get a scripted search expert
and step labels. Hop h is found once a search retrieves one of its supporting passages; the hops
still needed are those after the last one found.

==================  ==========================================================
``expert_actions``  (reset) the expert's plan: its queries as ``<search> q </search>``, then
                    ``<answer> gold </answer>``
``expert_action``   the expert's next action now: the query of the first hop still needed
                    (a bridge question's second query names the bridge entity), or the answer
                    once every hop is found; absent once the episode has terminated
``decisive``        (step) a search made while the first hop is still needed: the search that
                    finds (or misses) a bridge question's bridge entity, or a single-hop
                    question's answer passage
``mistake``         (step) a search that retrieves none of the passages still needed (so also
                    any search once every hop is found), or a wrong answer; invalid outputs and
                    failed retrievals are never mistakes
``careless_action`` (reset with ``options={"careless": True}``) a careless searcher's next action:
                    once the first hop is found with hops still needed, it answers with the next
                    query's entity (a bridge question's bridge) instead of searching it; elsewhere
                    the expert's action
==================  ==========================================================

Window-mode prompt (:meth:`SearchQAEnv.window_prompt`): Search-R1's single user message, its
instructions then ``Question: ...``, followed by the last H turns as they read in a Search-R1
transcript, each the command the agent wrote (``<search> q </search>``; nothing for an invalid
output) then what it returned (``\n\n<information>...</information>\n\n`` or the corrective
message). The thoughts are left out. With H = 0 after the first turn, the latest observation is
shown alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stepopsd_envs.searchqa.datasets import QAExample, load_qa_examples
from stepopsd_envs.searchqa.metrics import exact_match, token_f1
from stepopsd_envs.searchqa.protocol import SearchR1Protocol, parse_command
from stepopsd_envs.searchqa.retrievers import (RETRIEVER_KINDS, Retriever, RetrieverUnavailable, format_information,
                                               load_retriever)
from stepopsd_envs.searchqa.world import WORLD_OPTIONS
from stepopsd_envs.text_env import TextEnv, check_option_types




class SearchQAEnv(TextEnv):
    """Answer open-domain questions with a search engine over a real corpus (Search-R1)."""

    corpus_variants = ()  # episodes need an index: the text comes from corpus_text

    @classmethod
    def corpus_text(cls, options: Mapping[str, Any]) -> Iterator[str]:
        """With ``options["searchqa_text"]`` a generated world's transcripts; with
        ``options["searchqa_world"]`` (the ``world=`` keys) that world's passages, so its names are
        whole tokens."""
        from stepopsd_envs.searchqa.corpus import searchqa_world_corpus, searchqa_world_passages

        if options.get("searchqa_text"):
            yield from searchqa_world_corpus()
        if options.get("searchqa_world"):
            yield from searchqa_world_passages(options["searchqa_world"])

    @classmethod
    def corpus_tags(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """Search-R1's tags, when this env's text is read."""
        from stepopsd_envs.searchqa.corpus import SEARCH_TAGS

        return SEARCH_TAGS if options.get("searchqa_text") or options.get("searchqa_world") else ()

    def __init__(
        self,
        index_dir: str | None = None,
        retriever: str | Retriever = "bm25",
        dense_index_dir: str | None = None,
        retriever_url: str | None = None,
        top_k: int = 3,
        max_turns: int = 4,
        data_path: str | Sequence[str] | None = None,
        split: str | None = None,
        data_sources: Sequence[str] | None = None,
        threads: int = 2,
        world: Mapping[str, int] | None = None,
        protocol: SearchR1Protocol | None = None,
        render_mode: str | None = None,
    ) -> None:
        check_option_types(index_dir=(index_dir, "a path or None"), dense_index_dir=(dense_index_dir, "a path or None"),
                           retriever_url=(retriever_url, "a string or None"), top_k=(top_k, "an integer"),
                           max_turns=(max_turns, "an integer"), split=(split, "a string or None"),
                           data_sources=(data_sources, "a list of strings or None"), threads=(threads, "an integer"))
        super().__init__(protocol or SearchR1Protocol(), render_mode=render_mode)
        if top_k < 1 or max_turns < 1:
            raise ValueError(f"top_k and max_turns must be >= 1, got top_k={top_k}, max_turns={max_turns}")
        if world is not None:
            if data_path is not None or index_dir is not None or dense_index_dir is not None:
                raise ValueError("world= brings its own questions and index: drop data_path, index_dir and "
                                 "dense_index_dir (or drop world)")
            index_dir, dense_index_dir, data_path = _world_files(world, retriever, retriever_url)
            split = split or "train"
        self.retriever = _resolve_retriever(retriever, index_dir, dense_index_dir, retriever_url, threads)
        self.top_k = top_k
        self.max_turns = max_turns
        self.examples: list[QAExample] = (
            load_qa_examples(data_path, split, data_sources) if data_path is not None else [])
        self.example: QAExample | None = None
        self.history: list[tuple[str, str]] = []  # (action element, observation) per turn of this episode
        self._turn = 0
        self._retrieval_failed = False
        self._hops_found = 0  # hops of the expert plan whose passages have been retrieved, in order
        self._careless = False  # info["careless_action"] asked for on reset

    @property
    def games(self) -> list[QAExample]:
        """The dataset rows, for ``reset(options={"game_index": i})`` (the game-list convention of
        the trainer's SFT and evaluation, which then play rows in order instead of random draws)."""
        return self.examples

    def _start_episode(self, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.example = self._pick_example(options)
        self.history = []
        self._turn = 0
        self._retrieval_failed = False
        self._hops_found = 0
        self._careless = bool(options.get("careless"))
        plan_queries = self.example.expert_queries or (self.example.question,)
        info = {
            "task": self.example.question,
            "task_id": self.example.id,
            "task_type": self.example.data_source,
            "answers": list(self.example.answers),
            "expert_actions": [f"<search> {query} </search>" for query in plan_queries]
                              + [f"<answer> {self.example.answers[0]} </answer>"],
        }
        if self.example.expert_queries:
            info.update(self._demonstrator_actions())
        return _question_observation(self.example), info

    def _pick_example(self, options: dict[str, Any]) -> QAExample:
        if "question" in options:
            answers = options.get("answers") or []
            answers = [answers] if isinstance(answers, str) else list(answers)
            if not answers:
                raise ValueError("options['answers'] must hold at least one gold answer")
            return QAExample(str(options.get("id", "user-question")), str(options["question"]), tuple(answers),
                             str(options.get("data_source", "")))
        if not self.examples:
            raise ValueError("no question: pass reset(options={'question': ..., 'answers': [...]}) "
                             "or make the env with data_path=<Search-R1 JSONL/Parquet file>")
        index = options.get("game_index")
        if index is None:
            index = int(self.np_random.integers(len(self.examples)))
        return self.examples[int(index)]

    def _apply_action(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self.example is not None, "call reset() before step()"
        command, argument = parse_command(action)
        if command == "answer":
            score = exact_match(argument, self.example.answers)
            info = {"won": score == 1.0, "exact_match": score, "f1": token_f1(argument, self.example.answers)}
            return "", score, True, info
        try:
            hits = self.retriever.search([argument], self.top_k)[0]
        except RetrieverUnavailable as error:
            self._retrieval_failed = True
            return f"\n\n<information>Search failed: {error}</information>\n\n", 0.0, False, {
                "won": False, "retrieval_error": str(error)}
        observation = f"\n\n<information>{format_information(hits).strip()}</information>\n\n"
        return observation, 0.0, False, {"won": False, "retrieved_ids": [hit.passage.id for hit in hits]}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """One turn; truncated after ``max_turns`` turns or when the retriever is unavailable."""
        observation, reward, terminated, _, info = super().step(action)
        self.history.append((info["action"], observation))
        self._turn += 1
        truncated = not terminated and (self._retrieval_failed or self._turn >= self.max_turns)
        info["turn"] = self._turn
        if self.example.expert_queries:
            info.update(self._step_labels(info))
            if not terminated:
                info.update(self._demonstrator_actions())
        return observation, reward, terminated, truncated, info

    def _step_labels(self, info: dict[str, Any]) -> dict[str, bool]:
        """``decisive`` and ``mistake`` for the step just taken; advances the hops found."""
        if "exact_match" in info:
            return {"decisive": False, "mistake": info["exact_match"] != 1.0}
        if "retrieved_ids" not in info:  # an invalid output or a failed retrieval
            return {"decisive": False, "mistake": False}
        hops = self.example.supporting_ids
        retrieved = set(info["retrieved_ids"])
        found = [hop for hop in range(self._hops_found, len(hops)) if retrieved & set(hops[hop])]
        decisive = self._hops_found == 0
        if found:
            self._hops_found = found[-1] + 1
        return {"decisive": decisive, "mistake": not found}

    def _demonstrator_actions(self) -> dict[str, str]:
        """``expert_action`` and, when asked for on reset, ``careless_action``."""
        queries, found = self.example.expert_queries, self._hops_found
        if found == len(queries):
            expert = careless = f"<answer> {self.example.answers[0]} </answer>"
        else:
            expert = f"<search> {queries[found]} </search>"
            careless = f"<answer> {queries[found]} </answer>" if found else expert
        return {"expert_action": expert, "careless_action": careless} if self._careless else {"expert_action": expert}

    def window_prompt(self, history_steps: int) -> str:
        """Search-R1's user message (instructions + question) with the last ``history_steps`` turns."""
        assert self.example is not None, "call reset() before window_prompt()"
        turns = self.history[-history_steps:] if history_steps > 0 else []
        shown = "".join(action + observation for action, observation in turns)
        if self.history and not turns:  # no room for past turns: still the observation to act on
            shown = self.history[-1][1]
        return f"{self.system_prompt()} {_question_observation(self.example)}{shown}"


def _question_observation(example: QAExample) -> str:
    """The first observation (Search-R1 appends it to its instructions)."""
    return f"Question: {example.question}\n"


def _world_files(world: Mapping[str, int], retriever: str | Retriever,
                 retriever_url: str | None) -> tuple[str | None, str | None, list[str]]:
    """``(index_dir, dense_index_dir, data_path)`` of a generated world, built into the cache on first use."""
    from stepopsd_envs.searchqa.world import world_folder

    unknown = set(world) - set(WORLD_OPTIONS)
    if unknown:
        raise ValueError(f"world= takes {', '.join(WORLD_OPTIONS)}; unknown: {', '.join(sorted(unknown))}")
    if isinstance(retriever, str) and retriever not in RETRIEVER_KINDS:
        raise ValueError(f"retriever must be one of {RETRIEVER_KINDS}, got {retriever!r}")
    searched_here = retriever_url is None and isinstance(retriever, str)
    indexes = {"hybrid": ("bm25", "dense")}.get(retriever, (retriever,)) if searched_here else ()
    sizes = {key: int(value) for key, value in world.items()}
    folder = world_folder(**sizes, indexes=())
    if "bm25" in indexes and not (folder / "bm25" / "meta.json").is_file():
        _build_world_bm25_elsewhere(sizes, folder)
    folder = world_folder(**sizes, indexes=indexes)
    data_path = [str(folder / "train.jsonl"), str(folder / "test.jsonl")]
    if not indexes:
        return None, None, data_path
    return str(folder / indexes[0]), str(folder / "dense") if retriever == "hybrid" else None, data_path


def _build_world_bm25_elsewhere(sizes: dict[str, int], folder: Path) -> None:
    """Build a world's BM25 index in a fresh Python process: Lucene indexing starts a JVM, and none may
    run in this (training) process, where a JVM fault would end the run (search runs in a worker too)."""
    code = ("import json, sys; from stepopsd_envs.searchqa.world import world_folder; "
            "world_folder(**json.loads(sys.argv[1]), indexes=('bm25',))")
    built = subprocess.run([sys.executable, "-c", code, json.dumps(sizes)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    if built.returncode != 0:
        last_line = (built.stderr.strip().splitlines() or [f"exit status {built.returncode}"])[-1]
        raise RuntimeError(f"building the BM25 index of {folder} failed: {last_line}")


def _resolve_retriever(retriever: str | Retriever, index_dir: str | None, dense_index_dir: str | None,
                       retriever_url: str | None, threads: int) -> Retriever:
    if not isinstance(retriever, str):
        return retriever
    if retriever_url is not None:
        from stepopsd_envs.searchqa.server import RemoteRetriever

        return RemoteRetriever(retriever_url)
    if index_dir is None:
        raise ValueError("SearchQA needs index_dir=<folder from `stepopsd index build`>, retriever_url=<server> "
                         "or a Retriever object")
    return load_retriever(retriever, index_dir, dense_index_dir, threads)
