"""``stepopsd serve-retriever``: one retrieval server shared by many training processes."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from stepopsd_cli.errors import fail

app = typer.Typer(add_completion=False)


class RetrieverKind(str, Enum):
    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


@app.command("serve-retriever")
def serve_retriever(
    index_dir: Annotated[Path, typer.Option(help="Index folder from `stepopsd index build` (bm25 for hybrid).")],
    kind: Annotated[RetrieverKind, typer.Option(help="Retriever over the index.")] = RetrieverKind.bm25,
    dense_index_dir: Annotated[Path | None, typer.Option(help="Hybrid only: the dense index folder.")] = None,
    host: Annotated[str, typer.Option(help="Bind address; keep 127.0.0.1 unless you mean to expose it.")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="TCP port, 0..65535 (0: a free one, printed).")] = 8765,
    threads: Annotated[int, typer.Option(min=1, help="Search threads per batch.")] = 2,
    max_request_bytes: Annotated[int | None, typer.Option(
        min=1, help="Refuse (HTTP 413) a request body over this many bytes (default: 8 MiB).")] = None,
    search_timeout: Annotated[float | None, typer.Option(
        min=0.001, help="Answer HTTP 503 when one batch searches longer, in seconds (default: 60).")] = None,
) -> None:
    """Serve batched searches over HTTP: POST /search {"queries": [...], "top_k": 3}."""
    import dataclasses

    from stepopsd_envs.searchqa.server import ServeAddressError, ServerLimits, listen, listener_url, serve

    given = {"max_body_bytes": max_request_bytes, "search_timeout_s": search_timeout}
    limits = dataclasses.replace(ServerLimits(), **{key: value for key, value in given.items() if value is not None})

    try:
        listener = listen(host, port)  # bound before the slow index load, and before "serving" is printed
    except ServeAddressError as error:
        fail(str(error))
    from stepopsd_envs.searchqa.retrievers import load_retriever, read_meta

    try:
        retriever = load_retriever(kind.value, index_dir, dense_index_dir, threads)
        num_passages = read_meta(index_dir)["num_passages"]
    except (FileNotFoundError, ValueError, ImportError) as error:
        listener.close()
        fail(str(error))
    typer.echo(f"serving {kind.value} retrieval over {num_passages} passages on {listener_url(listener)}", err=True)
    serve(retriever, num_passages=num_passages, listener=listener, limits=limits)
