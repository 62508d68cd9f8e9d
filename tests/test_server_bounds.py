"""The retrieval server's bounds, on a real loopback server: body cap, query checks, search off the event loop."""

import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

pytest.importorskip("pyserini")
pytest.importorskip("uvicorn")

from typer.testing import CliRunner  # noqa: E402

from stepopsd_cli.app import app as cli  # noqa: E402
from stepopsd_envs.searchqa.retrievers import RetrieverUnavailable  # noqa: E402
from stepopsd_envs.searchqa.server import RemoteRetriever, ServerLimits, create_app  # noqa: E402
from test_searchqa_server import running_server, sample_bm25  # noqa: E402


@pytest.fixture(scope="module")
def bm25(tmp_path_factory):
    return sample_bm25(tmp_path_factory.mktemp("server_bounds"))


def raw_request(url: str, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` bytes as they are and read the answer until the server closes or stops."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout_s) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_body_declared_over_the_cap_is_refused_before_it_is_read(bm25):
    local, count = bm25
    with running_server(create_app(local, count)) as url:
        started = time.perf_counter()
        # a 100 MB body announced, 1 KB of it sent: the answer may not wait for the rest
        answer = raw_request(url, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 100000000\r\n\r\n" + b"{" + b" " * 1023)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request body over 8388608 bytes" in answer and time.perf_counter() - started < 5
        remote = RemoteRetriever(url)
        assert remote.health() == {"status": "ok", "num_passages": count}
        # the client sends a whole 10 MB body before it reads: it meets the closed connection, said plainly
        with pytest.raises(RetrieverUnavailable, match="HTTP 413|closed the connection during a 10400025-byte"):
            remote.search(["x" * 100] * 100_000, 3)


def test_a_chunked_body_over_the_cap_is_refused_and_one_under_it_served(bm25):
    local, count = bm25
    with running_server(create_app(local, count, ServerLimits(max_body_bytes=2000))) as url:
        connection = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=10)
        chunks = [b'{"queries": ["' + b"tab " * 250, b"nanny" * 200, b'"], "top_k": 3}']  # 2,021 bytes, no length
        connection.request("POST", "/search", body=iter(chunks), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        refused = connection.getresponse()
        assert refused.status == 413 and b"request body over 2000 bytes" in refused.read()
        connection.close()
        assert RemoteRetriever(url).search(["tab nanny"], 3) == local.search(["tab nanny"], 3)


def test_queries_that_cannot_be_searched_get_422_with_the_reason(bm25):
    local, count = bm25
    pairs = [a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    with running_server(create_app(local, count)) as url:
        remote = RemoteRetriever(url)
        for queries, reason in [
            (["tab nanny", "nanny \ud800 tab"], "query 1: not valid Unicode (surrogates not allowed at character 6)"),
            ([" ".join(f"w{i}" for i in range(2000))], "query 0: 10889 characters; at most 2000"),
            ([" ".join(pairs[:600])], "query 0: 600 terms; at most 512"),
        ]:
            with pytest.raises(RetrieverUnavailable, match="HTTP 422") as refused:
                remote.search(queries, 3)
            assert reason in str(refused.value)
        # at the limits: 512 distinct terms in 1,535 characters are searched (Lucene's cap is 1024 clauses)
        assert remote.search([" ".join(pairs[:512])], 3) == local.search([" ".join(pairs[:512])], 3)


class HeldRetriever:
    """The real retriever, whose searches wait until the test releases them."""

    def __init__(self, retriever) -> None:
        self.retriever, self.searching, self.release = retriever, threading.Event(), threading.Event()

    def search(self, queries, top_k):
        self.searching.set()
        self.release.wait(timeout=30)
        return self.retriever.search(queries, top_k)


def test_health_answers_while_a_search_runs_and_a_stuck_search_times_out(bm25):
    local, count = bm25
    held = HeldRetriever(local)
    with running_server(create_app(held, count, ServerLimits(search_timeout_s=1.0))) as url, \
            ThreadPoolExecutor(1) as client:
        remote = RemoteRetriever(url, timeout_s=10)
        stuck = client.submit(remote.search, ["tab nanny"], 3)
        assert held.searching.wait(timeout=10)
        started = time.perf_counter()
        assert remote.health()["num_passages"] == count  # answered while the search is held
        assert time.perf_counter() - started < 0.9
        with pytest.raises(RetrieverUnavailable, match=r"HTTP 503.*the search took over 1 s"):
            stuck.result(timeout=10)
        held.release.set()
        assert remote.search(["tab nanny"], 3) == local.search(["tab nanny"], 3)


def test_serve_retriever_passes_its_limits_to_the_server(tmp_path, monkeypatch):
    """The command's wiring only (index load and serving loop stubbed; the server itself is tested above)."""
    from stepopsd_envs.searchqa import retrievers, server

    served = {}
    monkeypatch.setattr(retrievers, "load_retriever", lambda *args: "retriever")
    monkeypatch.setattr(retrievers, "read_meta", lambda index_dir: {"num_passages": 5})
    monkeypatch.setattr(server, "serve", lambda retriever, **kwargs: served.update(kwargs))
    result = CliRunner().invoke(cli, ["serve-retriever", "--index-dir", str(tmp_path), "--port", "0",
                                      "--max-request-bytes", "100", "--search-timeout", "2.5"])
    served["listener"].close()
    assert result.exit_code == 0, result.output
    assert served["limits"] == ServerLimits(max_body_bytes=100, search_timeout_s=2.5)
