"""``stepopsd data searchqa-world``: write a generated multi-hop QA world for stepopsd/SearchQA-v0."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepopsd_cli.errors import check_new_folder, fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def data() -> None:
    """Generate datasets."""


@app.command("searchqa-world")
def searchqa_world(
    out: Annotated[Path, typer.Option(help="New or empty folder for corpus.jsonl, train.jsonl and test.jsonl.")],
    seed: Annotated[int, typer.Option(help="World seed: the same seed writes the same files.")] = 0,
    entities: Annotated[int, typer.Option(min=20, help="Entities (a namesake distractor is added for about "
                                                       "half of them).")] = 1000,
    questions: Annotated[int, typer.Option(min=2, help="Questions, half single-hop, half multi-hop; "
                                                       "a fifth of each go to test.jsonl.")] = 2000,
    fillers: Annotated[int, typer.Option(min=0, max=6, help="Filler sentences after each article's facts "
                                                             "(0: ~20-word passages for tiny models).")] = 5,
    index: Annotated[bool, typer.Option(help="Also build the BM25 index into OUT/bm25.")] = False,
    threads: Annotated[int, typer.Option(min=1, help="Indexing threads (with --index).")] = 2,
) -> None:
    """Write an invented world's passages and single-hop / multi-hop questions with exact answers to OUT."""
    from stepopsd_envs.searchqa.world import generate_world, write_world

    check_new_folder(out)
    try:
        world = generate_world(seed, entities, questions, fillers=fillers)
    except ValueError as error:
        fail(str(error))
    corpus_path, _, _ = write_world(world, out)
    typer.echo(f"wrote {len(world.passages)} passages, {len(world.train)} train and {len(world.test)} test "
               f"questions into {out}")
    if index:
        from stepopsd_envs.searchqa.datasets import iter_corpus
        from stepopsd_envs.searchqa.indexing import build_bm25_index

        try:
            count = build_bm25_index(iter_corpus(corpus_path), out / "bm25", threads=threads)
        except (ImportError, ValueError) as error:
            fail(str(error), exit_code=1)
        typer.echo(f"indexed {count} passages into {out / 'bm25'} (bm25)")
