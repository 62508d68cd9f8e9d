"""BM25 search in a worker process (issue #43): a JVM fault ends the worker, never the caller."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import pytest

pytest.importorskip("pyserini")

import stepopsd_envs  # noqa: E402,F401  (registers the envs)
from stepopsd_envs.searchqa.datasets import iter_corpus  # noqa: E402
from stepopsd_envs.searchqa.indexing import build_bm25_index  # noqa: E402
from stepopsd_envs.searchqa.retrievers import BM25Retriever, RetrieverUnavailable  # noqa: E402
from stepopsd_envs.searchqa.sample_corpus import STDLIB_QUESTIONS, write_sample_data  # noqa: E402
from stepopsd_envs.searchqa.search_worker import LuceneBM25  # noqa: E402

QUERY = STDLIB_QUESTIONS[0][0]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("searchqa_worker")
    corpus_path, _ = write_sample_data(root)
    build_bm25_index(iter_corpus(corpus_path), root / "bm25", threads=1)
    return root / "bm25"


@pytest.fixture(scope="module")
def retriever(index_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(index_dir.parent)  # the worker's folder: a JVM crash report lands there, not in the repo
        retriever = BM25Retriever(index_dir, threads=1)
    yield retriever
    retriever.close()


def test_the_worker_finds_what_searching_in_process_finds_bitwise(index_dir, retriever):
    in_process = LuceneBM25(index_dir, threads=1)  # the worker's own searcher, here in the test process
    assert retriever.num_passages == in_process.num_passages == len(list(iter_corpus(index_dir.parent / "corpus.jsonl")))
    queries = [question for question, _, _ in STDLIB_QUESTIONS] + ["heap queue priority", "no such wordzzz"]
    assert retriever.search(queries, 10) == in_process.search(queries, 10)  # batched path: ids, text, float scores
    assert retriever.search([QUERY], 3) == in_process.search([QUERY], 3)  # one-query path
    assert retriever.search(queries, 10)[-1] == []


@pytest.mark.parametrize("fault, death", [(signal.SIGKILL, "was killed by SIGKILL"),
                                          # the JVM catches SIGSEGV, writes hs_err_pid<PID>.log and aborts
                                          (signal.SIGSEGV, "was killed by SIGABRT; JVM crash report: ")])
def test_a_worker_killed_mid_run_is_restarted_and_the_next_search_works(index_dir, retriever, monkeypatch,
                                                                        fault, death):
    monkeypatch.chdir(index_dir.parent)
    before = retriever.search([QUERY], 3)
    dead_pid = retriever.worker.process.pid
    os.kill(dead_pid, fault)
    with pytest.warns(RuntimeWarning) as warned:
        assert retriever.search([QUERY], 3) == before
    [warning] = warned
    message = str(warning.message)
    assert message.startswith(f"the BM25 search worker for {index_dir} (pid {dead_pid}) {death}")
    assert message.endswith("; restarting it") and "\n" not in message
    if fault == signal.SIGSEGV:
        assert f"{index_dir.parent}/hs_err_pid{dead_pid}.log" in message
    assert retriever.worker.process.pid != dead_pid


def test_a_worker_that_keeps_dying_is_one_line_and_the_run_goes_on(index_dir, retriever, tmp_path, monkeypatch):
    crashing = tmp_path / "crashing-python"  # a "worker" that crashes as it starts, with a crash report
    crashing.write_text('#!/bin/sh\necho "# A fatal error" > hs_err_pid$$.log\nkill -SEGV $$\n')
    crashing.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(crashing))
    env = gymnasium.make("stepopsd/SearchQA-v0", retriever=retriever, top_k=3)
    env.reset(options={"question": QUERY, "answers": ["Seymour Papert"]})
    os.kill(retriever.worker.process.pid, signal.SIGKILL)
    with pytest.warns(RuntimeWarning, match="was killed by SIGKILL; restarting it"):
        observation, reward, terminated, truncated, info = env.step("<search> turtle Logo </search>")
    error = info["retrieval_error"]  # the episode is cut short, the env (and the run) go on
    assert truncated and not terminated and reward == 0.0 and error in observation and "\n" not in error
    assert error.startswith(f"BM25 search failed, its worker died twice in a row: the BM25 search worker for "
                            f"{index_dir} (pid ")
    assert error.endswith(f"was killed by SIGSEGV; JVM crash report: {tmp_path}/hs_err_pid"
                          f"{error.split('(pid ')[1].split(')')[0]}.log; the next search starts a new worker")
    monkeypatch.undo()  # the next search starts a real worker again
    env.reset(options={"question": QUERY, "answers": ["Seymour Papert"]})
    _, _, _, truncated, info = env.step("<search> turtle Logo </search>")
    assert not truncated and info["retrieved_ids"][0] == "turtle#0"


@pytest.mark.integration
def test_no_jvm_in_the_training_process_and_the_worker_dies_with_it(tmp_path):
    # a fresh process plays a world env (its index built here, as training does) and then is killed
    code = """if True:
        import json, os, signal, sys
        import gymnasium, stepopsd_envs
        env = gymnasium.make("stepopsd/SearchQA-v0", world={"seed": 2, "entities": 40, "questions": 20,
                                                            "fillers": 0}, threads=1)
        _, info = env.reset(seed=0)
        _, _, _, _, info = env.step(info["expert_action"])
        maps = open("/proc/self/maps").read()
        print(json.dumps({"retrieved": info["retrieved_ids"], "jvm_modules": sorted(
            name for name in sys.modules if name.split(".")[0] in ("jnius", "jnius_config", "pyserini", "jpype")),
            "libjvm": "libjvm" in maps, "worker": env.unwrapped.retriever.worker.process.pid}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    environment = {**os.environ, "STEPOPSD_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=environment)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["retrieved"] and seen["jvm_modules"] == [] and not seen["libjvm"]
    assert any((tmp_path / "cache").rglob("bm25/meta.json"))  # the world's index was built, in another process
    deadline = time.monotonic() + 15
    while _alive(seen["worker"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(seen["worker"]), "the search worker outlived the process that started it"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent's wait is missing
