"""pyserini's Lucene searcher in a process of its own, so a JVM fault cannot take the caller down.

pyserini runs Lucene in a JVM inside the Python process, and a JVM sharing a process with torch's
native code can die of a fault in either (seen: SIGSEGV in ``libtorch_cpu.so`` during SFT, with the
JVM's ``hs_err_pid*.log``). :class:`SearchWorker` starts ``python -m
stepopsd_envs.searchqa.search_worker``, a fresh interpreter that inherits no torch or OpenMP state
from the caller (pyserini imports torch there, but only Lucene runs), opens the index with
:class:`LuceneBM25` and answers one JSON line per request on its stdout (whatever else it prints
goes to stderr)::

    -> {"queries": ["q1", "q2"], "top_k": 3}
    <- {"results": [[[id, title, text, score], ...], ...]}   or   {"error": "JavaException", "message": "..."}

The first line it writes is ``{"ready": num_passages}`` (or the error that stopped it opening the
index). It exits when its stdin closes (:meth:`SearchWorker.stop`, or the caller's death) and when
its parent process is gone, so it never outlives the caller. :class:`~.retrievers.BM25Retriever`
is the client: it restarts a worker that died and retries the request once.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from stepopsd_envs.searchqa.retrievers import Hit, Passage, RetrieverUnavailable

PARENT_POLL_S = 1.0  # how often a worker checks that its parent is still alive


class WorkerDied(RuntimeError):
    """The worker process ended; the message says how (signal or exit status, JVM crash report)."""


class LuceneBM25:
    """Lucene BM25 through pyserini's ``LuceneSearcher``, in this process (the worker's side)."""

    def __init__(self, index_dir: str | Path, threads: int = 2, k1: float = 0.9, b: float = 0.4) -> None:
        from stepopsd_envs.searchqa.jvm import start_jvm

        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(Path(index_dir) / "lucene"))
        self.searcher.set_bm25(k1, b)
        self.threads = threads
        self.num_passages = int(self.searcher.num_docs)

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        if len(queries) == 1:
            return [self._hits(self.searcher.search(queries[0], k=top_k))]
        qids = [str(i) for i in range(len(queries))]
        by_qid = self.searcher.batch_search(list(queries), qids, k=top_k, threads=self.threads)
        return [self._hits(by_qid[qid]) for qid in qids]

    @staticmethod
    def _hits(scored_docs) -> list[Hit]:
        hits = []
        for doc in scored_docs:
            record = json.loads(doc.lucene_document.get("raw"))
            hits.append(Hit(Passage.from_contents(record["id"], record["contents"]), float(doc.score)))
        return hits


class SearchWorker:
    """One worker process serving ``index_dir``; :meth:`search` raises :class:`WorkerDied` when it ends.

    Starting it waits for the index to open and re-raises, as the same built-in exception type where
    there is one (``ImportError``, ``ValueError``...), the error that stopped it.
    """

    def __init__(self, index_dir: str | Path, threads: int, k1: float, b: float) -> None:
        self.index_dir = str(index_dir)
        self.cwd = os.getcwd()  # where the JVM writes hs_err_pid<PID>.log
        # one OpenMP thread: pyserini imports torch and faiss, which the worker's searches never use
        command = [sys.executable, "-m", __name__, self.index_dir, str(threads), repr(k1), repr(b), str(os.getpid())]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        encoding="utf-8", env={**os.environ, "OMP_NUM_THREADS": "1"})
        self._stop = weakref.finalize(self, _stop_process, self.process)
        first = self._read()
        if "error" in first:
            self.stop()
            raise _rebuilt_error(first)
        self.num_passages = int(first["ready"])

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        try:
            self.process.stdin.write(json.dumps({"queries": list(queries), "top_k": top_k}) + "\n")
            self.process.stdin.flush()
        except OSError:  # BrokenPipeError: it died before reading the request
            raise WorkerDied(self.death()) from None
        reply = self._read()
        if "error" in reply:  # the worker is fine, this batch is not (e.g. a query Lucene refuses)
            raise RetrieverUnavailable(f"BM25 search over {self.index_dir} failed: {reply['error']}: "
                                       f"{reply['message']}")
        return [[Hit(Passage(passage_id, title, text), score) for passage_id, title, text, score in hits]
                for hits in reply["results"]]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise WorkerDied(self.death())
        return json.loads(line)

    def death(self) -> str:
        """How the worker ended, in words (waits for it): ``the BM25 search worker for DIR (pid 12) was
        killed by SIGABRT; JVM crash report: /x/hs_err_pid12.log``."""
        code = _wait_or_kill(self.process)  # its stdout closed; one that lingers is finished
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        report_name = f"hs_err_pid{self.process.pid}.log"
        reports = [folder / report_name for folder in (Path(self.cwd), Path(tempfile.gettempdir()))]
        report = next((str(path) for path in reports if path.is_file()), None)
        return (f"the BM25 search worker for {self.index_dir} (pid {self.process.pid}) {how}"
                + (f"; JVM crash report: {report}" if report else ""))

    def stop(self) -> None:
        """End the worker (idempotent): close its stdin, then kill it if it has not exited in 10 s."""
        self._stop()


def _stop_process(process: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):  # a dead worker's pipe: nothing left to tell it
        process.stdin.close()
    _wait_or_kill(process)
    process.stdout.close()


def _wait_or_kill(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """``process``'s exit code, killing it if it has not exited within ``timeout_s``."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal
        return f"signal {number}"


def _rebuilt_error(reply: dict) -> Exception:
    """The worker's exception as the built-in type of that name (``RuntimeError`` for others, e.g. Java's)."""
    error_type = getattr(builtins, reply["error"], None)
    if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
        return RuntimeError(f"{reply['error']}: {reply['message']}")
    return error_type(reply["message"])


def _exit_with_parent(parent_pid: int) -> None:
    """Exit as soon as the parent is gone (reparented), even while a search runs."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def serve_requests(index_dir: str, threads: int, k1: float, b: float, parent_pid: int) -> None:
    """The worker's life: open the index, then answer each stdin line until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, which stops the worker itself
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the JVM and pyserini print to stdout; keep the reply stream to replies alone
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        searcher = LuceneBM25(index_dir, threads, k1, b)
    except Exception as error:  # reported to the caller, who raises it
        reply({"error": type(error).__name__, "message": str(error)})
        return
    reply({"ready": searcher.num_passages})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            results = searcher.search(request["queries"], request["top_k"])
        except Exception as error:  # a query Lucene refuses: this batch fails, the worker goes on
            reply({"error": type(error).__name__, "message": str(error)})
            continue
        reply({"results": [[[hit.passage.id, hit.passage.title, hit.passage.text, hit.score] for hit in hits]
                           for hits in results]})


if __name__ == "__main__":
    index_arg, threads_arg, k1_arg, b_arg, parent_arg = sys.argv[1:]
    serve_requests(index_arg, int(threads_arg), float(k1_arg), float(b_arg), int(parent_arg))
