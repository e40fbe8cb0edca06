"""The query time budget: no request holds a worker thread on the catalog for long.

Every request gets a :class:`QueryBudget` of ``[serve] query_budget_ms`` (an ASGI
middleware, :class:`QueryBudgets`, puts it in a context variable, which the worker threads
that run the request see too). Its clock starts when the request first takes a catalog
connection (:meth:`ServeContext.catalog`), so time spent waiting for a thread does not
count. SQLite calls a progress handler on the server's read-only catalog connections every
:data:`PROGRESS_OPS` virtual machine instructions; once the request's catalog work has
taken longer than its budget, the handler interrupts the statement, which raises
``sqlite3.OperationalError`` in the handler's thread: the request ends there and the
thread is free for the next one. The connection stays usable. A request whose answer
grows with what it returns, made in bounded batches, gets a fresh window per batch
(:func:`renew`).

:func:`budget_exceeded` tells that interruption from other SQLite errors. The web pages
and the JSON API answer it ``503`` with ``Retry-After`` (:func:`budget_response`), the
Subsonic API with error 0 and a message.
"""

from __future__ import annotations

import contextvars
import html
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

PROGRESS_OPS = 10_000
"""Virtual machine instructions between two looks at the clock: a few hundred
microseconds of SQLite work at most, and a negligible cost (one Python call per ten
thousand instructions)."""
RETRY_AFTER = 5
"""Seconds a client is asked to wait before it tries again."""


class QueryBudget:
    """How long one request's catalog queries may take together."""

    __slots__ = ("expired", "limit", "started")

    def __init__(self, limit_ms: int) -> None:
        self.limit = limit_ms / 1000
        self.started: float | None = None
        self.expired = False

    def start(self) -> None:
        """Start the clock (the first call of the request counts)."""
        if self.started is None:
            self.started = time.monotonic()

    def over(self) -> bool:
        """Whether the budget is spent (then it stays spent)."""
        if not self.expired and self.started is not None:
            self.expired = time.monotonic() - self.started > self.limit
        return self.expired

    def message(self) -> str:
        return (
            f"the catalog took longer than this server's {round(self.limit * 1000)} ms budget"
            f" for one request: try again in {RETRY_AFTER} s, or ask for less (a smaller page,"
            " more precise words)"
        )


_current: contextvars.ContextVar[QueryBudget | None] = contextvars.ContextVar(
    "phonotheca_query_budget", default=None
)


@contextmanager
def request_budget(limit_ms: int) -> Iterator[QueryBudget]:
    """Run the block as one request with a budget of ``limit_ms`` (its clock not started)."""
    budget = QueryBudget(limit_ms)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def current() -> QueryBudget | None:
    """The budget of the request being served here, if any."""
    return _current.get()


def start_clock() -> None:
    """Start the current request's clock (see :meth:`ServeContext.catalog`)."""
    budget = _current.get()
    if budget is not None:
        budget.start()


def renew() -> None:
    """Give the current request a fresh budget for its next piece of work.

    For an answer the API leaves unbounded (``getArtist`` of an artist with a hundred
    thousand albums), made in batches of a bounded size: the answer's cost is in
    proportion to what it returns, each batch under the budget. A runaway statement is
    still stopped (it has one window), and a budget once spent stays spent.
    """
    budget = _current.get()
    if budget is not None and budget.started is not None and not budget.over():
        budget.started = time.monotonic()


def _progress() -> int:
    budget = _current.get()
    return 1 if budget is not None and budget.over() else 0


def install(conn: sqlite3.Connection) -> None:
    """Make ``conn``'s statements stop once the current request's budget is spent."""
    conn.set_progress_handler(_progress, PROGRESS_OPS)


def budget_exceeded(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement that the current request's budget interrupted."""
    budget = _current.get()
    return (
        isinstance(exc, sqlite3.OperationalError)
        and budget is not None
        and budget.expired
        and "interrupt" in str(exc)
    )


def budget_response(request: Request, exc: Exception) -> Response:
    """``503`` with ``Retry-After`` for a request whose budget ran out; other SQLite
    errors are raised again (a ``500``, as before)."""
    budget = _current.get()
    if not budget_exceeded(exc) or budget is None:
        raise exc
    headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Busy</title><h1>Busy</h1>"
            f"<p>{html.escape(budget.message())}</p>",
            status_code=503,
            headers=headers,
        )
    return JSONResponse({"error": budget.message()}, status_code=503, headers=headers)


class QueryBudgets:
    """Gives every HTTP request its own :class:`QueryBudget` of ``limit_ms``."""

    def __init__(self, app: ASGIApp, limit_ms: int) -> None:
        self.app = app
        self.limit_ms = limit_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_budget(self.limit_ms):
            await self.app(scope, receive, send)
