"""The web UI: server-rendered HTML pages (Jinja2, autoescaped), sign-in and sign-out.

Every page works without JavaScript (search is a GET form, tracks have plain audio
links); ``static/player.js`` adds search as you type, the in-page player with its queue
and the endless shuffle radio.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from phonotheca import __version__
from phonotheca.catalog import search as engine
from phonotheca.plan.sizes import format_size
from phonotheca.serve import listing
from phonotheca.serve.api import MAX_ID_CHARS, MAX_QUERY_CHARS
from phonotheca.serve.artwork import placeholder
from phonotheca.serve.browse import (
    Browser,
    album_url,
    artist_url,
    audio_url,
    genre_url,
    track_url,
)
from phonotheca.serve.context import ServeContext
from phonotheca.serve.media_routes import NOT_FOUND_REASONS
from phonotheca.serve.overview import Overview
from phonotheca.serve.playlist_views import PlaylistViews
from phonotheca.serve.playlists import ENTRIES_PER_PAGE, playlist_url
from phonotheca.serve.security import (
    CSRF_FIELD,
    Sessions,
    SessionUser,
    SignInThrottle,
    Throttled,
    client_address,
    csrf_token,
    csrf_valid,
    retry_text,
    safe_next,
    set_csrf_cookie,
)
from phonotheca.serve.seeding import SeedAdvice, seed_advice
from phonotheca.serve.showcase import ShowcaseBuilder

TEMPLATES_DIR = FsPath(__file__).parent / "templates"
PAGE_SIZE = 50
SHUFFLE_PAGE = 20
MAX_USERNAME = 64
MAX_PASSWORD = 1024


def duration(ms: int | None) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration in milliseconds; empty when unknown."""
    if ms is None or ms < 0:
        return ""
    seconds = round(ms / 1000)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def percent(share: float | None, digits: int = 1) -> str:
    return "" if share is None else f"{100 * share:.{digits}f} %"


LEDGER_LABELS = {
    "packed": "Archived in a published torrent",
    "planned": "Planned, waiting for the next build",
    "skipped_budget": "Left out: beyond the storage budget",
    "skipped_duplicate": "Left out: another release of the recording is kept",
    "missing_source": "No audio file yet (metadata only)",
    "error_source_missing": "Build error: the source file is gone",
    "error_source_changed": "Build error: the source file changed since the scan",
    "error_transcode": "Build error: the file could not be re-encoded",
}
TIER_LABELS = {
    "original": "Original file, bit-exact",
    "opus": "Re-encoded to Opus",
    "metadata": "Metadata only",
}
KIND_LABELS = {
    "audio": "Audio",
    "covers": "Cover art",
    "metadata": "Catalog (metadata)",
}


def human(key: str, labels: dict[str, str]) -> str:
    """The label of a ledger status, tier or collection kind; an unknown key (a newer
    builder's) in words: ``error_disk_full`` becomes "Build error: disk full"."""
    if key in labels:
        return labels[key]
    if key.startswith("error_"):
        return "Build error: " + key[len("error_") :].replace("_", " ")
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration,
        size=format_size,
        percent=percent,
        ledger_label=lambda k: human(k, LEDGER_LABELS),
        tier_label=lambda k: human(k, TIER_LABELS),
        kind_label=lambda k: human(k, KIND_LABELS),
    )
    env.globals.update(
        track_url=track_url,
        album_url=album_url,
        artist_url=artist_url,
        genre_url=genre_url,
        playlist_url=playlist_url,
        audio_url=audio_url,
        version=__version__,
        csrf_field=CSRF_FIELD,
        reasons=NOT_FOUND_REASONS,
        placeholder=placeholder,
    )
    return env


def create_router(
    ctx: ServeContext, sessions: Sessions, browser: Browser, overview: Overview
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = make_environment()
    serve = ctx.settings.serve
    throttle: SignInThrottle = ctx.throttle
    showcase = ShowcaseBuilder(ctx)
    views = PlaylistViews(browser)

    def render(request: Request, template: str, status: int = 200, **values: Any) -> Response:
        user = sessions.current_user(request)
        html = env.get_template(template).render(
            request=request,
            user=user,
            csrf=csrf_token(request),
            can_play=serve.public_audio or user is not None,
            archive_name=ctx.settings.name,
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        set_csrf_cookie(request, response)
        return response

    def gate(request: Request) -> Response | None:
        """A redirect to the sign-in page when browsing needs an account."""
        if serve.public_catalog or sessions.current_user(request) is not None:
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)

    def not_found(request: Request, what: str) -> Response:
        return render(request, "error.html", status=404, title="Not found", message=what)

    @router.get("/", response_class=HTMLResponse)
    def home(
        request: Request,
        q: Annotated[str, Query()] = "",
        after: Annotated[int | None, Query(ge=0, le=engine.MAX_KEY)] = None,
        before: Annotated[int | None, Query(ge=0, le=engine.MAX_KEY)] = None,
        page: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
    ) -> Response:
        """The home page, or search results a keyset page at a time: the next and
        previous links carry the rank key the page ends at, so any page costs the same.
        A link of the old numbered pages (``page=``) leads to the first page."""
        if (redirect := gate(request)) is not None:
            return redirect
        text = q[:MAX_QUERY_CHARS]
        if page is not None:
            return RedirectResponse(f"/?q={quote(text, safe='')}" if text else "/", 303)
        if not text:
            return render(request, "home.html", q="", show=showcase.get())
        found = browser.search_page(text, PAGE_SIZE, after, before)
        first = after is None and before is None
        return render(
            request,
            "search.html",
            q=text,
            tracks=found.tracks,
            playlists=views.search(text) if first else [],
            before=found.before,
            after=found.after,
        )

    @router.get("/tracks/{track_id:path}", response_class=HTMLResponse)
    def track_page(
        request: Request, track_id: Annotated[str, Path(max_length=MAX_ID_CHARS)]
    ) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        track = browser.track(track_id)
        if track is None:
            return not_found(request, "No track has this id.")
        return render(request, "track.html", track=track, listing=overview.listing())

    @router.get("/albums/{album_id:path}", response_class=HTMLResponse)
    def album_page(
        request: Request, album_id: Annotated[str, Path(max_length=MAX_ID_CHARS)]
    ) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        album = browser.album(album_id)
        if album is None:
            return not_found(request, "No album has this id.")
        return render(request, "album.html", album=album)

    @router.get("/artists/{artist_id:path}", response_class=HTMLResponse)
    def artist_page(
        request: Request,
        artist_id: Annotated[str, Path(max_length=MAX_ID_CHARS)],
        at: Annotated[int, Query(ge=0, le=listing.MAX_POSITION)] = 0,
    ) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        artist = browser.artist(artist_id, at, listing.ALBUMS_PER_PAGE)
        if artist is None:
            return not_found(request, "No artist has this id.")
        pager = listing.Pager(at, listing.ALBUMS_PER_PAGE, artist.album_count)
        return render(request, "artist.html", artist=artist, pager=pager)

    @router.get("/genres/{name:path}", response_class=HTMLResponse)
    def genre_page(
        request: Request,
        name: Annotated[str, Path(max_length=MAX_ID_CHARS)],
        at: Annotated[int, Query(ge=0, le=listing.MAX_POSITION)] = 0,
    ) -> Response:
        """A genre's tracks, a page at a time (:mod:`phonotheca.serve.listing`)."""
        if (redirect := gate(request)) is not None:
            return redirect
        found = listing.genre(ctx, name)
        if found is None:
            return not_found(request, "No genre has this name.")
        span = listing.genre_span(ctx, found.id)
        size = listing.TRACKS_PER_PAGE
        tracks = browser.tracks_by_rowid(listing.genre_tracks(ctx, span, at, size))
        pager = listing.Pager(at, size, len(span))
        return render(request, "genre.html", genre=found, tracks=tracks, pager=pager)

    @router.get("/playlists", response_class=HTMLResponse)
    def playlists_page(
        request: Request,
        after: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
        before: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
    ) -> Response:
        """The catalog's playlists, a page at a time in public-id order (keyset links)."""
        if (redirect := gate(request)) is not None:
            return redirect
        return render(request, "playlists.html", listing=views.page(after, before))

    @router.get("/playlists/{playlist_id:path}", response_class=HTMLResponse)
    def playlist_page(
        request: Request,
        playlist_id: Annotated[str, Path(max_length=MAX_ID_CHARS)],
        at: Annotated[int, Query(ge=0, le=listing.MAX_POSITION)] = 0,
    ) -> Response:
        """A playlist's entries, a page of positions at a time."""
        if (redirect := gate(request)) is not None:
            return redirect
        playlist = views.playlist(playlist_id, at, ENTRIES_PER_PAGE)
        if playlist is None:
            return not_found(request, "No playlist has this id.")
        pager = listing.Pager(at, ENTRIES_PER_PAGE, playlist.entry_count)
        return render(request, "playlist.html", playlist=playlist, pager=pager)

    @router.get("/shuffle", response_class=HTMLResponse)
    def shuffle_page(request: Request) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        return render(request, "shuffle.html", tracks=browser.shuffle(SHUFFLE_PAGE))

    @router.get("/torrents", response_class=HTMLResponse)
    def torrents_page(
        request: Request,
        tb: Annotated[float | None, Query(gt=0, le=1e6)] = None,
    ) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        advice: SeedAdvice | None = None
        listing = overview.listing()
        if tb is not None and listing is not None:
            advice = seed_advice(listing, int(tb * 1e12))
        return render(
            request,
            "torrents.html",
            torrents=overview.torrents(),
            chart=overview.chart(),
            tb=tb,
            advice=advice,
        )

    @router.get("/torrents/{name}.torrent")
    def torrent_file(request: Request, name: str) -> Response:
        """A ``.torrent`` listed in ``torrents.json`` (any other name is unknown)."""
        if (redirect := gate(request)) is not None:
            return redirect
        listing = overview.listing()
        entry = listing.by_name().get(name) if listing else None
        if entry is not None:
            for root in ctx.roots:
                path = root / "torrents" / f"{entry.collection}.torrent"
                if path.is_file():
                    return FileResponse(
                        path,
                        media_type="application/x-bittorrent",
                        filename=f"{entry.collection}.torrent",
                    )
        return not_found(request, "This server has no such torrent file.")

    @router.get("/stats", response_class=HTMLResponse)
    def stats_page(request: Request) -> Response:
        if (redirect := gate(request)) is not None:
            return redirect
        return render(request, "stats.html", stats=overview.stats())

    # -- signing in and out ------------------------------------------------------------------

    @router.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request, next: Annotated[str, Query()] = "/") -> Response:
        return render(request, "signin.html", next=safe_next(next), error=None)

    @router.post("/signin", response_class=HTMLResponse)
    def signin(
        request: Request,
        username: Annotated[str, Form(max_length=MAX_USERNAME)],
        password: Annotated[str, Form(max_length=MAX_PASSWORD)],
        csrf_token_field: Annotated[str, Form(alias=CSRF_FIELD)] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        if not csrf_valid(request, csrf_token_field):
            return render(
                request,
                "signin.html",
                status=403,
                next=safe_next(next),
                error="The form expired or came from another site: please try again.",
            )
        try:
            found = throttle.attempt(
                client_address(request),
                lambda: ctx.state.verify_password(username, password) if ctx.state else None,
                expensive=True,
            )
        except Throttled as exc:
            response = render(
                request,
                "signin.html",
                status=429,
                next=safe_next(next),
                error=f"Too many failed sign-ins from your address: {retry_text(exc.retry_after)}.",
            )
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        if found is None:
            return render(
                request,
                "signin.html",
                status=401,
                next=safe_next(next),
                error="Unknown user name or wrong password.",
            )
        response = RedirectResponse(safe_next(next), status_code=303)
        sessions.sign_in(request, response, SessionUser(found.id, found.name, found.session_epoch))
        return response

    @router.post("/signout")
    def signout(
        request: Request,
        csrf_token_field: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    ) -> Response:
        if not csrf_valid(request, csrf_token_field):
            return render(
                request,
                "error.html",
                status=403,
                title="Forbidden",
                message="The form expired or came from another site: please try again.",
            )
        response = RedirectResponse("/", status_code=303)
        sessions.sign_out(request, response)
        return response

    return router
