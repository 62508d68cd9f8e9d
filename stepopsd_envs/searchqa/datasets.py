"""Local Search-R1 data: QA files (JSONL / Parquet) and the passage corpus (JSONL).

QA rows follow Search-R1 / FlashRAG: ``question``, ``golden_answers`` (or Search-R1's
processed ``reward_model.ground_truth.target``), ``data_source`` (nq, triviaqa, popqa,
hotpotqa, 2wikimultihopqa, musique, bamboogle) and an optional ``extra_info.split``.
An optional ``metadata`` object carries a scripted expert's plan (the generated world of
:mod:`.world` writes it): ``expert_queries`` (one search query per hop) and ``supporting_ids``
(per hop, the ids of the passages that state its fact).
Corpus rows are ``{"id", "contents"}`` (``contents`` = ``"title\\ntext"``, as in
Search-R1's ``wiki-18.jsonl``) or ``{"id", "title", "text"}``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stepopsd_envs.searchqa.retrievers import Passage

DATA_SOURCES = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")

QA_DOWNLOAD_HINT = (
    "Search-R1's QA files are on the Hugging Face hub (dataset PeterJinGo/nq_hotpotqa_train: train.parquet, "
    "test.parquet; or FlashRAG's RUC-NLPIR/FlashRAG_datasets JSONL files); download them yourself and pass "
    "their local paths"
)
CORPUS_DOWNLOAD_HINT = (
    "Search-R1's 2018 Wikipedia corpus is wiki-18.jsonl.gz in the hub dataset PeterJinGo/wiki-18-corpus; "
    "download and gunzip it yourself and pass its local path"
)


@dataclass(frozen=True, slots=True)
class QAExample:
    """One question with its gold answers and, where known, the expert's query and supporting passages per hop."""

    id: str
    question: str
    answers: tuple[str, ...]
    data_source: str = ""
    split: str = ""
    expert_queries: tuple[str, ...] = ()
    supporting_ids: tuple[tuple[str, ...], ...] = ()  # per hop, as expert_queries


def _require_file(path: Path, hint: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {hint}.")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def iter_corpus(path: str | Path) -> Iterator[Passage]:
    """Passages of a JSONL (or .jsonl.gz) corpus in file order."""
    path = Path(path)
    _require_file(path, CORPUS_DOWNLOAD_HINT)
    with _open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                yield _passage(json.loads(line), path, line_number)


def _passage(record: dict, path: Path, line_number: int) -> Passage:
    if "id" not in record or not ("contents" in record or "text" in record):
        raise ValueError(f"{path}:{line_number}: a corpus row needs 'id' and 'contents' (or 'title' and 'text')")
    if "contents" in record:
        return Passage.from_contents(str(record["id"]), record["contents"])
    return Passage(str(record["id"]), record.get("title", ""), record["text"])


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as parquet
        except ImportError as error:
            raise ImportError("reading Parquet needs pyarrow: pip install 'stepopsd[search]'") from error
        return parquet.read_table(path).to_pylist()
    with _open_text(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _example(row: dict, path: Path, row_number: int) -> QAExample:
    answers = row.get("golden_answers")
    if answers is None:
        answers = ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
    if "question" not in row or answers is None:
        raise ValueError(f"{path} row {row_number}: a QA row needs 'question' and 'golden_answers'")
    answers = [answers] if isinstance(answers, str) else list(answers)
    split = str((row.get("extra_info") or {}).get("split", "") or row.get("split", ""))
    metadata = row.get("metadata") or {}
    expert_queries = tuple(str(query) for query in metadata.get("expert_queries") or ())
    supporting_ids = tuple(tuple(str(i) for i in ids) for ids in metadata.get("supporting_ids") or ())
    if len(expert_queries) != len(supporting_ids):
        raise ValueError(f"{path} row {row_number}: metadata.expert_queries ({len(expert_queries)}) and "
                         f"metadata.supporting_ids ({len(supporting_ids)}) need one entry per hop")
    return QAExample(
        id=str(row.get("id", f"{path.stem}-{row_number}")),
        question=str(row["question"]).strip(),
        answers=tuple(str(answer) for answer in answers),
        data_source=str(row.get("data_source", "")),
        split=split or path.stem,
        expert_queries=expert_queries,
        supporting_ids=supporting_ids,
    )


def load_qa_examples(paths: str | Path | Sequence[str | Path], split: str | None = None,
                     data_sources: Sequence[str] | None = None) -> list[QAExample]:
    """QA examples from JSONL/Parquet files in file then row order, filtered by split and source.

    A row's split is its ``extra_info.split``, else its file's stem (``train.parquet`` -> train).
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in paths:
        _require_file(path, QA_DOWNLOAD_HINT)
    examples = [_example(row, path, number) for path in paths for number, row in enumerate(_read_rows(path))]
    if split is not None:
        examples = [e for e in examples if e.split == split]
    if data_sources is not None:
        examples = [e for e in examples if e.data_source in set(data_sources)]
    return examples
