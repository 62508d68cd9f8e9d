"""Retrievers behind one interface: pyserini BM25, faiss dense, and their RRF hybrid.

Every retriever is batched: ``search(queries, top_k)`` returns one ranked hit list per
query. Index folders hold a ``meta.json`` naming their kind (see :mod:`.indexing`);
:func:`load_retriever` opens one and caches it, so all envs in a process share a searcher.
BM25 searches run in a worker process (:mod:`.search_worker`): pyserini's JVM never loads in the
caller, so a JVM fault ends the worker, which is restarted, never the training run.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

RETRIEVER_KINDS = ("bm25", "dense", "hybrid")


@dataclass(frozen=True, slots=True)
class Passage:
    """One corpus passage; ``contents`` is Search-R1's ``"title\\ntext"`` form."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, passage_id: str, contents: str) -> "Passage":
        title, _, text = contents.partition("\n")
        return cls(passage_id, title, text)


@dataclass(frozen=True, slots=True)
class Hit:
    passage: Passage
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks passages for a batch of queries."""

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        """One list of at most ``top_k`` hits, best first, per query."""
        ...


class RetrieverUnavailable(RuntimeError):
    """The retriever cannot answer now (e.g. the retrieval server is down)."""


def format_information(hits: Sequence[Hit]) -> str:
    """Search-R1's rendering of results: ``Doc 1(Title: t) text`` one per line."""
    return "".join(f"Doc {rank}(Title: {hit.passage.title}) {hit.passage.text}\n"
                   for rank, hit in enumerate(hits, start=1))


BUILD_HINT = "`stepopsd index build --corpus C.jsonl --kind bm25|dense --out DIR`"
INDEX_FILES = {"bm25": ("lucene",), "dense": ("index.faiss", "offsets.npy", "passages.jsonl")}  # beside meta.json


def read_meta(index_dir: str | Path, kind: str | None = None) -> dict:
    """The ``meta.json`` of a whole index folder (of ``kind`` when given); one clear line when it is not one:
    ``FileNotFoundError`` without meta.json, ``ValueError`` for a damaged meta.json or a missing index file."""
    meta_path = Path(index_dir) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{index_dir} is not a stepopsd search index (no meta.json); build one with {BUILD_HINT}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta_path} is not JSON ({error}); rebuild the index with {BUILD_HINT}") from None
    if not isinstance(meta, dict) or meta.get("kind") not in INDEX_FILES:
        got = (f"a {type(meta).__name__}" if not isinstance(meta, dict)
               else f"kind {meta['kind']!r}" if "kind" in meta else "no kind")
        raise ValueError(f"{meta_path} must be a JSON object whose \"kind\" is \"bm25\" or \"dense\", got {got}; "
                         f"rebuild the index with {BUILD_HINT}")
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{index_dir} holds a {meta['kind']} index, not {kind}")
    missing = [name for name in INDEX_FILES[meta["kind"]] if not (Path(index_dir) / name).exists()]
    if missing:
        raise ValueError(f"{index_dir} is a damaged {meta['kind']} index: {', '.join(missing)} is missing beside "
                         f"meta.json; rebuild the index with {BUILD_HINT}")
    return meta


class BM25Retriever:
    """Lucene BM25 (pyserini, k1=0.9 b=0.4) searched by a worker process; batches run on ``threads`` threads.

    The JVM never loads in this process: a :class:`~.search_worker.SearchWorker` owns pyserini's
    searcher and returns the same hits as searching here would. A worker that dies (a JVM fault, a
    kill) is restarted, with a one-line ``RuntimeWarning``, and the request retried once; if the new
    worker dies too, :class:`RetrieverUnavailable` says how, in one line (the env then cuts that
    episode short, and the next search starts a new worker). :meth:`close` stops the worker; it also
    stops when this object is collected or the process exits, and never outlives the process.
    """

    def __init__(self, index_dir: str | Path, threads: int = 2, k1: float = 0.9, b: float = 0.4) -> None:
        read_meta(index_dir, "bm25")
        self.index_dir, self.threads, self.k1, self.b = str(index_dir), threads, k1, b
        self.worker = None  # the SearchWorker, started here and again after it dies or close()
        self.num_passages = self._running_worker().num_passages
        self._lock = threading.Lock()  # one request at a time on the worker's pipe

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        from stepopsd_envs.searchqa.search_worker import WorkerDied

        with self._lock:
            try:
                return self._running_worker().search(queries, top_k)
            except WorkerDied as died:
                self._stop_worker()
                warnings.warn(f"{died}; restarting it", RuntimeWarning, stacklevel=2)
            try:
                return self._running_worker().search(queries, top_k)
            except WorkerDied as died:
                self._stop_worker()
                raise RetrieverUnavailable(f"BM25 search failed, its worker died twice in a row: {died}; the next "
                                           "search starts a new worker") from None

    def _running_worker(self):
        from stepopsd_envs.searchqa.search_worker import SearchWorker

        if self.worker is None:
            self.worker = SearchWorker(self.index_dir, self.threads, self.k1, self.b)
        return self.worker

    def close(self) -> None:
        """Stop the worker process (a later search starts a new one)."""
        with self._lock:
            self._stop_worker()

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


class PassageStore:
    """Passages of a dense index by row, read on demand from ``passages.jsonl`` (mmap + offsets)."""

    def __init__(self, index_dir: Path) -> None:
        self.offsets = np.load(index_dir / "offsets.npy")  # [N + 1] byte offsets
        with open(index_dir / "passages.jsonl", "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if self.offsets[-1] else b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        record = json.loads(self._map[self.offsets[row]:self.offsets[row + 1]])
        return Passage(record["id"], record["title"], record["text"])


class DenseRetriever:
    """Inner-product search over a faiss index of normalised sentence embeddings."""

    def __init__(self, index_dir: str | Path, threads: int = 2, encoder=None) -> None:
        import faiss

        from stepopsd_envs.searchqa.encoder import EncoderConfig, TextEncoder

        index_dir = Path(index_dir)
        meta = read_meta(index_dir, "dense")
        faiss.omp_set_num_threads(threads)
        self.index = faiss.read_index(str(index_dir / "index.faiss"))
        self.passages = PassageStore(index_dir)
        self.encoder = encoder or TextEncoder(EncoderConfig(**meta["encoder"]))
        self.num_passages = len(self.passages)

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        vectors = self.encoder.encode_queries(list(queries))  # [Q, D]
        scores, rows = self.index.search(vectors, top_k)  # [Q, k], [Q, k]
        return [[Hit(self.passages[int(row)], float(score)) for score, row in zip(score_row, row_ids) if row >= 0]
                for score_row, row_ids in zip(scores, rows)]


class HybridRetriever:
    """Reciprocal-rank fusion: ``score(d) = sum_r 1 / (rrf_k + rank_r(d))`` over both rankings."""

    def __init__(self, sparse: Retriever, dense: Retriever, rrf_k: int = 60, depth: int = 20) -> None:
        self.sparse, self.dense, self.rrf_k, self.depth = sparse, dense, rrf_k, depth

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        depth = max(self.depth, top_k)
        rankings = zip(self.sparse.search(queries, depth), self.dense.search(queries, depth))
        return [rrf_fuse([sparse_hits, dense_hits], self.rrf_k)[:top_k] for sparse_hits, dense_hits in rankings]


def rrf_fuse(rankings: Sequence[Sequence[Hit]], rrf_k: int = 60) -> list[Hit]:
    """Fuse ranked hit lists by reciprocal rank; ties keep first-seen order."""
    fused: dict[str, float] = {}
    passages: dict[str, Passage] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.passage.id] = fused.get(hit.passage.id, 0.0) + 1.0 / (rrf_k + rank)
            passages.setdefault(hit.passage.id, hit.passage)
    order = sorted(fused, key=lambda passage_id: -fused[passage_id])
    return [Hit(passages[passage_id], fused[passage_id]) for passage_id in order]


_LOADED: dict[tuple, Retriever] = {}


def load_retriever(kind: str, index_dir: str | Path, dense_index_dir: str | Path | None = None,
                   threads: int = 2) -> Retriever:
    """Open (once per process) the ``kind`` retriever over ``index_dir``; hybrid also needs ``dense_index_dir``."""
    if kind not in RETRIEVER_KINDS:
        raise ValueError(f"retriever must be one of {RETRIEVER_KINDS}, got {kind!r}")
    key = (kind, os.path.realpath(index_dir), dense_index_dir and os.path.realpath(dense_index_dir), threads)
    if key not in _LOADED:
        if kind == "bm25":
            _LOADED[key] = BM25Retriever(index_dir, threads)
        elif kind == "dense":
            _LOADED[key] = DenseRetriever(index_dir, threads)
        else:
            if dense_index_dir is None:
                raise ValueError("the hybrid retriever needs dense_index_dir (index_dir is the bm25 index)")
            _LOADED[key] = HybridRetriever(load_retriever("bm25", index_dir, threads=threads),
                                           load_retriever("dense", dense_index_dir, threads=threads))
    return _LOADED[key]
