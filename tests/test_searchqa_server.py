"""The retrieval server on loopback: same results as in-process, clear failure when down."""

import contextlib
import socket
import threading
import time

import gymnasium
import pytest

pytest.importorskip("pyserini")
uvicorn = pytest.importorskip("uvicorn")

import stepopsd_envs  # noqa: E402,F401
from stepopsd_envs.searchqa.datasets import iter_corpus  # noqa: E402
from stepopsd_envs.searchqa.indexing import build_bm25_index  # noqa: E402
from stepopsd_envs.searchqa.retrievers import RetrieverUnavailable, load_retriever  # noqa: E402
from stepopsd_envs.searchqa.sample_corpus import STDLIB_QUESTIONS, write_sample_data  # noqa: E402
from stepopsd_envs.searchqa.server import RemoteRetriever, create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sample_bm25(root):
    """(BM25 retriever over the sample corpus, its passage count), indexed under ``root``."""
    corpus_path, _ = write_sample_data(root)
    count = build_bm25_index(iter_corpus(corpus_path), root / "bm25", threads=1)
    return load_retriever("bm25", root / "bm25", threads=1), count


@contextlib.contextmanager
def running_server(app):
    """``app`` served by uvicorn on a free loopback port for the ``with`` block; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A BM25 retriever in-process and the same one behind a loopback server."""
    local, count = sample_bm25(tmp_path_factory.mktemp("searchqa_server"))
    with running_server(create_app(local, count)) as url:
        yield local, RemoteRetriever(url), count


def test_round_trip_matches_in_process(served):
    local, remote, count = served
    assert remote.health() == {"status": "ok", "num_passages": count}
    queries = [question for question, _, _ in STDLIB_QUESTIONS]
    expected = local.search(queries, 3)
    received = remote.search(queries, 3)
    assert received == expected  # passages and scores (JSON round-trips floats exactly)
    assert remote.search([], 3) == []


def test_bad_request_and_server_down_raise_unavailable(served):
    _, remote, _ = served
    with pytest.raises(RetrieverUnavailable, match="HTTP 422"):
        remote.search(["q"], 0)
    with pytest.raises(RetrieverUnavailable, match="unreachable"):
        RemoteRetriever(f"http://127.0.0.1:{free_port()}", timeout_s=2).search(["q"], 3)


def test_env_through_server_and_truncation_when_down(served):
    _, remote, _ = served
    env = gymnasium.make("stepopsd/SearchQA-v0", retriever_url=remote.url)
    env.reset(options={"question": STDLIB_QUESTIONS[1][0], "answers": list(STDLIB_QUESTIONS[1][1])})
    observation, _, _, truncated, info = env.step("<search> Tab Nanny despises </search>")
    assert "(Title: tabnanny)" in observation and not truncated
    down = gymnasium.make("stepopsd/SearchQA-v0", retriever_url=f"http://127.0.0.1:{free_port()}")
    down.reset(options={"question": "q", "answers": ["a"]})
    observation, reward, terminated, truncated, info = down.step("<search> anything </search>")
    assert truncated and not terminated and reward == 0.0 and "unreachable" in info["retrieval_error"]
    assert "Search failed" in observation
