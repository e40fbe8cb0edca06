"""The Subsonic API (1.16.1) with OpenSubsonic extensions, at ``/rest/<method>[.view]``.

Music apps (DSub, Symfonium, Feishin, play:Sub, ...) connect to Phonotheca through it.
Every call takes its parameters from the query string or a form body (OpenSubsonic
``formPost``), authenticates (:mod:`.auth`), runs one handler and answers in the
envelope, as XML, JSON or JSONP (:mod:`.envelope`). The calls are documented by the
Subsonic and OpenSubsonic specifications, so they stay out of ``/openapi.json``.

Modules: :mod:`.system` (ping, license, extensions, user), :mod:`.browsing` (folders,
indexes, artists, albums, songs, genres), :mod:`.searching` (search2/3), :mod:`.lists`
(album lists, random songs, songs by genre), :mod:`.similar` (similar songs),
:mod:`.media` (stream, download, cover art), :mod:`.lyrics` (lyrics from the files' tags),
:mod:`.annotation` (stars, scrobbles), :mod:`.playlists` (the users'),
:mod:`.catalog_playlists` (the catalog's, beside them), :mod:`.activity` (now playing,
scan status).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from phonotheca.serve.budget import budget_exceeded, current
from phonotheca.serve.context import ServeContext
from phonotheca.serve.subsonic import (
    activity,
    annotation,
    browsing,
    catalog_playlists,
    lists,
    lyrics,
    media,
    playlists,
    searching,
    similar,
    system,
)
from phonotheca.serve.subsonic.auth import authenticate
from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import GENERIC, SubsonicError, render

__all__ = ["ENDPOINTS", "create_router"]

ENDPOINTS: dict[str, Handler] = {
    **system.ENDPOINTS,
    **browsing.ENDPOINTS,
    **searching.ENDPOINTS,
    **lists.ENDPOINTS,
    **media.ENDPOINTS,
    **annotation.ENDPOINTS,
    **playlists.ENDPOINTS,
    **catalog_playlists.ENDPOINTS,  # after the users' own: it wraps them
    **similar.ENDPOINTS,
    **lyrics.ENDPOINTS,
    **activity.ENDPOINTS,
}
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def dispatch(
    ctx: ServeContext, method: str, request: Request, params: Sequence[tuple[str, str]]
) -> Response:
    """Authenticate and run one call (on a worker thread: handlers use SQLite)."""
    name = method.removesuffix(".view")
    call = Call(ctx, request, params)
    fmt, callback = call.get("f"), call.get("callback")
    handler = ENDPOINTS.get(name)
    try:
        if handler is None:
            raise SubsonicError(GENERIC, f"unknown or unsupported method {name!r}", http_status=404)
        if name not in system.PUBLIC:
            call.user = authenticate(call)
        result = handler(call)
    except SubsonicError as exc:
        return render(None, fmt, callback, error=exc)
    except sqlite3.OperationalError as exc:
        budget = current()
        if budget is None or not budget_exceeded(exc):
            raise
        return render(None, fmt, callback, error=SubsonicError(GENERIC, budget.message()))
    if isinstance(result, Response):
        return result
    return render(result, fmt, callback)


def create_router(ctx: ServeContext) -> APIRouter:
    """The ``/rest`` routes for ``ctx`` (whose ``state`` and ``media`` must be set).

    A plain Starlette route: the calls read their own parameters, so FastAPI's
    per-request dependency solving and validation would be work for nothing.
    """
    router = APIRouter()

    async def rest(request: Request) -> Response:
        method: str = request.path_params["method"]
        params = list(request.query_params.multi_items())
        if request.method == "POST" and request.headers.get("content-type", "").startswith(_FORMS):
            form = await request.form()
            params += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        # Every call on a worker thread, searches too: nothing blocks the event loop.
        return await run_in_threadpool(dispatch, ctx, method, request, params)

    router.add_route(
        "/rest/{method}", rest, methods=["GET", "POST", "HEAD"], include_in_schema=False
    )
    return router
