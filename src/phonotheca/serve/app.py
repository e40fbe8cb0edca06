"""The server's ASGI application, built by a factory from a :class:`ServeContext`.

``create_app`` attaches the users store and the media library to the context, then
mounts the web pages, the JSON API (``/api/v1``, described at ``/openapi.json``), the
audio and cover streams, the static files and the Subsonic API (``/rest``), under
middlewares that add security headers, compress text answers (zstd, gzip), add validators
to the catalog's answers (``304``) and give each request its query time budget; and in
front of them ``torrents.json`` and ``torrents/`` as ``serve-files`` serves them (a web
seed).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phonotheca import __version__
from phonotheca.config import load_settings
from phonotheca.serve import api, media_routes, pages
from phonotheca.serve.browse import Browser
from phonotheca.serve.budget import QueryBudgets, budget_response
from phonotheca.serve.compression import Compression
from phonotheca.serve.conditional import CatalogValidators
from phonotheca.serve.context import ServeContext
from phonotheca.serve.library import ServerLibrary
from phonotheca.serve.media import MediaLibrary
from phonotheca.serve.overview import Overview
from phonotheca.serve.security import Sessions, SignInThrottle, load_key
from phonotheca.serve.state import StateStore
from phonotheca.serve.subsonic import create_router as create_subsonic_router
from phonotheca.serve.torrent_files import TorrentFiles

STATIC_DIR = Path(__file__).parent / "static"

# No inline scripts or styles anywhere: the strictest policy that the pages need.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self';"
    " script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none';"
    " form-action 'self'"
)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response that lacks them.

    Plain ASGI rather than ``@app.middleware("http")``: the latter copies every body
    chunk through a memory stream, which would halve the audio streams' throughput.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """Answers ``HEAD`` wherever ``GET`` is answered (RFC 9110 §9.3.2): the same status
    and headers, no body. Link checkers, monitors and ``curl -I`` ask pages with HEAD,
    and FastAPI's routes would say 405.

    A route that declares HEAD itself (the audio and cover streams, which then skip
    reading the file) and the static files keep their own answer.
    """

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    def _answers_head(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._answers_head(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


HANDLER_THREADS = 4
"""Threads that run request handlers (catalog queries, file reads) per process. Fewer than
anyio's default 40 keep the GIL from being passed around a long queue of runnable
threads: requests wait their turn in order instead, which shortens the latency tail."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
    yield
    media: MediaLibrary = app.state.ctx.media
    if media.on_demand is not None:
        media.on_demand.close()


def create_app(ctx: ServeContext) -> FastAPI:
    """The whole server for ``ctx``'s roots and settings."""
    ctx.state = StateStore(ctx.state_path, password_cost=ctx.settings.serve.password_cost)
    ctx.media = MediaLibrary(ctx)
    serve = ctx.settings.serve
    ctx.throttle = SignInThrottle(serve.signin_failures, serve.signin_window, store=ctx.state)
    ctx.library = ServerLibrary(ctx)
    sessions = Sessions(load_key(ctx.root), ctx.state)
    app = FastAPI(
        lifespan=_lifespan,
        title="Phonotheca",
        version=__version__,
        description="Search, browse and stream a Phonotheca music preservation archive.",
        openapi_url="/openapi.json",
        docs_url=None,  # the interactive docs page loads scripts from a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.sessions = sessions
    browser = Browser(ctx)
    overview = Overview(ctx)
    # Routes are matched in order: the busiest (search, Subsonic) first. No path of the
    # later routers starts with /api/v1/ or /rest/, so the order changes no answer.
    app.include_router(api.create_router(ctx, sessions, browser, overview))
    app.include_router(create_subsonic_router(ctx))
    app.include_router(media_routes.create_router(ctx, sessions))
    app.include_router(pages.create_router(ctx, sessions, browser, overview))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.add_exception_handler(sqlite3.OperationalError, budget_response)

    # Innermost first. Compression under HeadAsGet: a HEAD gets the headers of the GET.
    app.add_middleware(Compression)
    app.add_middleware(HeadAsGet, routes=app.router.routes)
    # torrents.json and torrents/ as serve-files answers them (a BEP 19 web seed), before
    # HeadAsGet: a HEAD of a volume must not read it. A site that is not public
    # (public_catalog = false) keeps them behind its sign-in, as its other pages.
    app.add_middleware(TorrentFiles, roots=ctx.roots if ctx.settings.serve.public_catalog else [])
    app.add_middleware(QueryBudgets, limit_ms=ctx.settings.serve.query_budget_ms)
    app.add_middleware(CatalogValidators, ctx=ctx)
    app.add_middleware(SecurityHeaders)
    return app


ROOTS_VARIABLE = "PHONOTHECA_SERVE_ROOTS"
"""How ``phonotheca serve --workers N`` hands its roots to each worker process."""


SERVE_VARIABLE = "PHONOTHECA_SERVE_OPTIONS"
"""``[serve]`` values given on the command line (JSON), for each worker process."""


def create_app_from_environment() -> FastAPI:
    """The app for the roots in ``$PHONOTHECA_SERVE_ROOTS`` (``os.pathsep``-separated):
    the factory each uvicorn worker process calls."""
    roots = [Path(p) for p in os.environ[ROOTS_VARIABLE].split(os.pathsep) if p]
    settings = load_settings(roots[0])
    options = json.loads(os.environ.get(SERVE_VARIABLE) or "{}")
    if options:
        settings = replace(settings, serve=replace(settings.serve, **options))
    return create_app(ServeContext(settings=settings, roots=roots))
