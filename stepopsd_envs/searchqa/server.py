"""A retrieval server (FastAPI + uvicorn) so several training processes share one index.

``POST /search`` with ``{"queries": [...], "top_k": 3}`` returns ``{"results": [[{"id",
"title", "text", "score"}, ...], ...]}``; ``GET /health`` returns the passage count.
Requests are bounded (:class:`ServerLimits`): a body too large is refused with 413 before it is
read; a query too long, with too many terms or not valid Unicode with 422; a batch searching past
the timeout answers 503. Searches run on one worker thread, so ``/health`` answers meanwhile.
:class:`RemoteRetriever` is the client: the same :class:`Retriever` interface as the
in-process retrievers, raising :class:`RetrieverUnavailable` when the server cannot answer.

Bind first, then announce: :func:`listen` binds the address (or raises :class:`ServeAddressError`,
one line) and returns the listening socket, whose real port :func:`listener_url` reports (port 0
picks a free one); :func:`serve` then serves on it::

    listener = listen("127.0.0.1", 0)
    print(f"serving on {listener_url(listener)}")
    serve(retriever, listener=listener)
"""

import asyncio
import errno
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stepopsd_envs.searchqa.retrievers import Hit, Passage, Retriever, RetrieverUnavailable

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BATCH = 4096


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one request may ask of the server; over a limit it answers 413 / 422 / 503 with a message."""

    max_body_bytes: int = 8 * 2**20  # 413 above this (checked before the body is read)
    max_query_chars: int = 2000  # 422 above this, per query
    max_query_terms: int = 512  # 422 above this, per query: Lucene refuses a query of over 1024 clauses
    search_timeout_s: float = 60.0  # 503 when one batch searches longer (the search itself runs on)


def create_app(retriever: Retriever, num_passages: int | None = None, limits: ServerLimits = ServerLimits()):
    """The FastAPI app serving ``retriever`` within ``limits``."""
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field

    class SearchRequest(BaseModel):
        queries: list[str] = Field(max_length=MAX_BATCH)
        top_k: int = Field(3, ge=1, le=1000)

    app = FastAPI(title="stepopsd retrieval server")
    app.add_middleware(_BodyLimit, max_body_bytes=limits.max_body_bytes)
    # one search thread: the JVM / torch are never entered from many request threads at once, and the
    # event loop stays free to answer /health (and to refuse bad requests) while a batch runs
    searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "num_passages": num_passages}

    @app.post("/search")
    async def search(request: SearchRequest) -> dict:
        for number, query in enumerate(request.queries):
            problem = _query_problem(query, limits)
            if problem:
                raise HTTPException(422, f"query {number}: {problem}")
        if not request.queries:
            return {"results": []}
        running = asyncio.get_running_loop().run_in_executor(searcher, retriever.search, request.queries,
                                                             request.top_k)
        try:
            results = await asyncio.wait_for(running, limits.search_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(503, f"the search took over {limits.search_timeout_s:g} s; "
                                     "send fewer or shorter queries") from None
        return {"results": [[{"id": h.passage.id, "title": h.passage.title, "text": h.passage.text, "score": h.score}
                             for h in hits] for hits in results]}

    return app


def _query_problem(query: str, limits: ServerLimits) -> str:
    """Why ``query`` cannot be searched (too long, too many terms, not encodable), or "" when it can."""
    if len(query) > limits.max_query_chars:
        return f"{len(query)} characters; at most {limits.max_query_chars}"
    terms = len(re.findall(r"\w+", query))
    if terms > limits.max_query_terms:
        return f"{terms} terms; at most {limits.max_query_terms}"
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"not valid Unicode ({error.reason} at character {error.start})"
    return ""


class _BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_body_bytes``, declared or streamed, before the
    rest of it is read (the JSON of a 100 MB body took seconds of the event loop and gigabytes)."""

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes
        self.detail = f"request body over {max_body_bytes} bytes; send fewer queries per request"

    async def __call__(self, scope, receive, send) -> None:
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await JSONResponse({"detail": self.detail}, 413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # a chunked body: no length declared
                raise HTTPException(413, self.detail)
            return message

        await self.app(scope, limited_receive, send)


class ServeAddressError(ValueError):
    """The server cannot listen on the address asked for (bad port, port in use, unknown host); one line."""


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; ``port=0`` picks a free port.

    Raises :class:`ServeAddressError` (a ``ValueError``) before anything is served: a port outside
    0..65535, a host that does not resolve, an address in use or not allowed.
    """
    if type(port) is not int or not 0 <= port <= 65535:
        raise ServeAddressError(f"port must be an integer in 0..65535 (0 picks a free port), got {port!r}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as error:
        raise ServeAddressError(f"cannot serve on {host}:{port}: unknown host ({error})") from None
    try:  # SO_REUSEADDR (set by create_server): a restart right after a stop binds; a live server still refuses
        return socket.create_server((host, port), family=family, backlog=2048)
    except PermissionError as error:
        raise ServeAddressError(f"cannot serve on {host}:{port}: {error.strerror} (ports below 1024 need "
                                "privileges); pick another port, or 0 for a free one") from None
    except OSError as error:
        reason = "the port is already in use" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
        raise ServeAddressError(f"cannot serve on {host}:{port}: {reason}; pick another port, "
                                "or 0 for a free one") from None


def listener_url(listener: socket.socket) -> str:
    """``http://HOST:PORT`` of a socket from :func:`listen`, with the port it really got."""
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(retriever: Retriever, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          num_passages: int | None = None, *, listener: socket.socket | None = None,
          limits: ServerLimits = ServerLimits()) -> None:
    """Serve ``retriever`` until interrupted (blocking) on ``listener`` (from :func:`listen`), else on
    ``host:port``, bound before anything runs (:class:`ServeAddressError` on a bad address)."""
    import uvicorn

    if listener is None:
        listener = listen(host, port)
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(create_app(retriever, num_passages, limits), host=host, port=port, log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])


class RemoteRetriever:
    """Client of a retrieval server at ``url`` (e.g. ``http://127.0.0.1:8765``)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _post(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RetrieverUnavailable(f"retrieval server {self.url} answered HTTP {error.code}: "
                                       f"{error.read()[:200].decode(errors='replace')}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, (BrokenPipeError, ConnectionResetError)):  # what a 413 before the body looks like
                raise RetrieverUnavailable(f"retrieval server {self.url} closed the connection during a {len(body)}-"
                                           "byte request (over its --max-request-bytes?); send fewer queries per "
                                           "call") from error
            raise RetrieverUnavailable(f"retrieval server {self.url} is unreachable ({reason}); "
                                       "start it with `stepopsd serve-retriever`") from error

    def search(self, queries: Sequence[str], top_k: int) -> list[list[Hit]]:
        results = self._post("/search", {"queries": list(queries), "top_k": top_k})["results"]
        return [[Hit(Passage(r["id"], r["title"], r["text"]), float(r["score"])) for r in hits] for hits in results]

    def health(self) -> dict:
        """The server's ``/health`` answer (raises :class:`RetrieverUnavailable` when down)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError) as error:
            raise RetrieverUnavailable(f"retrieval server {self.url} is unreachable ({error})") from error
