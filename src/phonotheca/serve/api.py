"""The JSON API under ``/api/v1``: what the web pages show, for scripts and apps.

Responses are typed (:mod:`phonotheca.serve.models`), so ``/openapi.json`` describes
them. Reads are public when ``[serve] public_catalog`` is true; otherwise the session
cookie of a signed-in user, or ``Authorization: Bearer <API key>`` (the key ``phonotheca
user token`` prints) is needed. A wrong key is ``401`` and counts as a failed sign-in of
the caller's address; past the limit the API answers ``429`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from phonotheca.catalog.search import MAX_KEY, MAX_LIMIT
from phonotheca.serve.browse import MAX_ARTIST_ALBUMS, Browser
from phonotheca.serve.context import ServeContext
from phonotheca.serve.listing import MAX_POSITION
from phonotheca.serve.models import (
    Album,
    Artist,
    ErrorMessage,
    Playlist,
    PlaylistList,
    SearchResults,
    ShuffleResults,
    Stats,
    TorrentList,
    Track,
)
from phonotheca.serve.overview import Overview
from phonotheca.serve.playlist_views import PlaylistViews
from phonotheca.serve.playlists import ENTRIES_PER_PAGE, MAX_PAGE, PLAYLISTS_PER_PAGE
from phonotheca.serve.search_results import search_json
from phonotheca.serve.security import (
    Sessions,
    SessionUser,
    SignInThrottle,
    Throttled,
    client_address,
    retry_text,
)
from phonotheca.serve.state import StateStore

MAX_QUERY_CHARS = 1000
"""Search text beyond this is cut: no title is that long, and it bounds the work."""
MAX_SHUFFLE = 100
MAX_ID_CHARS = 512

PublicId = Annotated[str, Path(max_length=MAX_ID_CHARS, description="public id")]
PlaylistKey = Annotated[str | None, Query(max_length=MAX_ID_CHARS, description="public id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "no such id"}
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "sign in first, or a wrong API key"},
    429: {"model": ErrorMessage, "description": "too many failed sign-ins from this address"},
}


def _json(model: BaseModel) -> Response:
    """The model as JSON, serialised once by pydantic's core (FastAPI would validate the
    returned model again against ``response_model`` first: the same bytes, twice the work)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _found(model: BaseModel | None, what: str) -> Response:
    """:func:`_json` of what a lookup found, else 404 naming what was not."""
    if model is None:
        raise HTTPException(404, f"no {what} with this id")
    return _json(model)


def create_router(
    ctx: ServeContext, sessions: Sessions, browser: Browser, overview: Overview
) -> APIRouter:

    throttle: SignInThrottle = ctx.throttle

    def bearer_user(api_key: str, address: str) -> SessionUser:
        state: StateStore | None = ctx.state
        try:
            user = throttle.attempt(
                address,
                lambda: state.user_by_api_key(api_key) if state is not None else None,
                expensive=False,
            )
        except Throttled as exc:
            raise HTTPException(
                429,
                f"too many failed sign-ins from your address: {retry_text(exc.retry_after)}",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        if user is None:
            raise HTTPException(
                401,
                "wrong API key: make one with 'phonotheca user token NAME'",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return SessionUser(user.id, user.name, user.session_epoch)

    async def catalog_access(request: Request) -> None:
        # async: a sync dependency would cost a thread hop on every request. Checking an API
        # key or a session reads state.sqlite3, so those go to a thread.
        scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and api_key.strip():
            user = await run_in_threadpool(bearer_user, api_key.strip(), client_address(request))
            request.scope["phonotheca_user"] = user
        elif not ctx.settings.serve.public_catalog and (
            await run_in_threadpool(sessions.current_user, request) is None
        ):
            raise HTTPException(401, "sign in to use the catalog")

    router = APIRouter(
        prefix="/api/v1",
        tags=["catalog"],
        dependencies=[Depends(catalog_access)],
        responses=UNAUTHORIZED,
    )

    @router.get("/search", response_model=SearchResults)
    async def search(
        q: Annotated[str, Query(description="words to find; the last one as a prefix")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
        after: Annotated[
            int | None,
            Query(ge=0, le=MAX_KEY, description="a page's `next_after`: the page after it"),
        ] = None,
    ) -> Response:
        """Tracks whose title, artists or album contain every word, most popular first;
        on the first page (``offset`` 0, no ``after``), playlists whose title or creator
        does too. ``offset`` skips matches one by one (so it is capped); ``after`` starts
        at the matches after a rank key, at the cost of a first page whatever the depth."""
        # The hot path: encoded straight from catalog rows (search_results), not through
        # the pydantic models, which stay the documented shape (response_model).
        # On a worker thread, however small the page: the event loop never waits for
        # SQLite (a slow query would stall every connection of this process).
        body = await run_in_threadpool(search_json, ctx, q[:MAX_QUERY_CHARS], limit, offset, after)
        return Response(body, media_type="application/json")

    @router.get("/tracks/{track_id:path}", response_model=Track, responses=NOT_FOUND)
    def track(track_id: PublicId) -> Response:
        return _found(browser.track(track_id), "track")

    @router.get("/albums/{album_id:path}", response_model=Album, responses=NOT_FOUND)
    def album(album_id: PublicId) -> Response:
        return _found(browser.album(album_id), "album")

    @router.get("/artists/{artist_id:path}", response_model=Artist, responses=NOT_FOUND)
    def artist(
        artist_id: PublicId,
        offset: Annotated[
            int, Query(ge=0, le=MAX_POSITION, description="first album's position")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_ARTIST_ALBUMS)] = MAX_ARTIST_ALBUMS,
    ) -> Response:
        """The artist, ``limit`` of its albums from ``offset`` (any depth costs the same)
        and, with the first albums, its most popular tracks."""
        return _found(browser.artist(artist_id, offset, limit), "artist")

    views = PlaylistViews(browser)

    @router.get("/playlists", response_model=PlaylistList)
    def playlists(
        after: PlaylistKey = None,
        before: PlaylistKey = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PLAYLISTS_PER_PAGE,
    ) -> Response:
        """The catalog's public playlists in public-id order: ``limit`` of them after the
        id ``after`` (or before ``before``); the answer names where the pages next to it
        begin. Any page costs the same."""
        return _json(views.page(after, before, limit))

    @router.get("/playlists/{playlist_id:path}", response_model=Playlist, responses=NOT_FOUND)
    def playlist(
        playlist_id: PublicId,
        offset: Annotated[
            int, Query(ge=0, le=MAX_POSITION, description="first entry's position")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = ENTRIES_PER_PAGE,
    ) -> Response:
        """The playlist with ``limit`` of its entries from ``offset`` (any depth costs
        the same); a matched entry carries its track, with whether this server plays it."""
        return _found(views.playlist(playlist_id, offset, limit), "playlist")

    @router.get("/shuffle", response_model=ShuffleResults)
    def shuffle(
        n: Annotated[int, Query(ge=1, le=MAX_SHUFFLE)] = 20,
        playable: Annotated[bool, Query()] = False,
    ) -> Response:
        """True shuffle: each track drawn uniformly over the whole catalog, or with
        ``playable=true`` over the tracks this server can play (then fewer than ``n``
        when this mirror holds few of them)."""
        return _json(ShuffleResults(tracks=browser.shuffle(n, playable=playable)))

    @router.get("/stats", response_model=Stats)
    def stats() -> Response:
        return _json(overview.stats())

    @router.get("/torrents", response_model=TorrentList)
    def torrents() -> Response:
        """The archive's torrents (from ``torrents.json``) with their health."""
        return _json(overview.torrents())

    return router
