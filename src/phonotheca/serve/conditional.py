"""``ETag`` and ``Last-Modified`` on the answers that change only with the catalog.

Track, album, artist and playlist pages, search results and statistics (web pages and JSON API)
change when the catalog does, or when this server gets or verifies more audio (a track
becomes playable), or when a new ``torrents.json`` is published: never between two
requests otherwise. So their validator is taken from those files' metadata, not from the
body: :func:`archive_version` stats the catalog (``catalog.sqlite3`` and its write-ahead
log, which every commit changes), ``torrents.json`` and, for each root, ``torrents/`` and
``.mirror/verified/`` (a collection added, a verified-pieces file rewritten). A handful of
``stat`` calls, whatever the size of the catalog, made on a worker thread (never on the
event loop) and reused for :data:`VERSION_TTL` seconds: the version is read before the
answer is made, so an answer is never older than its validator says.

The ``ETag`` is weak (``W/"…"``): the same for the identity and the compressed forms of an
answer (:mod:`phonotheca.serve.compression`). It also covers the request's URL and its
cookies, since pages show who is signed in and carry their CSRF token. A repeated request
whose ``If-None-Match`` (or, without one, ``If-Modified-Since``) still holds is answered
``304`` with no body; when the catalog is public it is answered before the handler runs.
Answers that set a cookie, and any status but ``200``, get no validator.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phonotheca.serve.context import ServeContext

VERSION_TTL = 1.0
"""Seconds an :func:`archive_version` is reused."""
CACHE_CONTROL = "private, no-cache"
"""Caches keep the answer but ask again each time (a ``304`` when nothing changed);
private, because pages show the signed-in user."""

_PATHS = re.compile(
    r"/api/v1/(?:tracks|albums|artists|playlists)/.+|/api/v1/(?:search|stats|playlists)"
    r"|/(?:tracks|albums|artists|genres|playlists)/.+|/stats|/playlists|/"
)
"""Paths whose answers change only with the archive. The home page is one only as a
search (``/?q=…``): without words it shows a rotating selection."""
_NOT = re.compile(r".*/(?:audio|cover)")
"""Byte streams under the same prefixes: they have their own strong ``ETag``."""


@dataclass(frozen=True, slots=True)
class Version:
    """What the archive's answers depend on, as of now."""

    digest: str
    last_modified: float
    """The newest modification time among the files looked at (Unix seconds)."""


def archive_version(ctx: ServeContext) -> Version:
    """A digest of the metadata of every file the validated answers depend on."""
    paths: list[Path] = [
        ctx.catalog_path,
        ctx.catalog_path.with_name(ctx.catalog_path.name + "-wal"),
        ctx.root / "torrents.json",
    ]
    for root in ctx.roots:
        paths += [root / "torrents", root / ".mirror" / "verified"]
    h = hashlib.sha256()
    newest = 0.0
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            h.update(b"-;")
            continue
        h.update(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns};".encode())
        newest = max(newest, st.st_mtime)
    return Version(h.hexdigest(), newest)


def validated(path: str, query: str) -> bool:
    """Whether answers to ``path`` get a validator."""
    if not _PATHS.fullmatch(path) or _NOT.fullmatch(path):
        return False
    return path != "/" or any(part.startswith("q=") and len(part) > 2 for part in query.split("&"))


def etag_for(version: Version, scope: Scope) -> str:
    headers = Headers(scope=scope)
    h = hashlib.sha256()
    for part in (
        version.digest,
        scope["path"],
        scope.get("query_string", b"").decode("latin-1"),
        headers.get("cookie", ""),
    ):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return f'W/"{h.hexdigest()[:32]}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def not_modified(headers: Headers, etag: str, last_modified: float) -> bool:
    """RFC 9110 §13.2.2: ``If-None-Match`` (weak comparison) when given, else
    ``If-Modified-Since``, which counts only once ``last_modified`` is a whole second in
    the past (an HTTP date has no finer grain: a change later in the same second would
    go unseen)."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        return any(_opaque(t) == _opaque(etag) for t in if_none_match.split(","))
    since = headers.get("if-modified-since")
    if since is None or time.time() - last_modified < 1:
        return False
    try:
        asked = email.utils.parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return int(last_modified) <= asked


class CatalogValidators:
    """Adds validators to the answers of :func:`validated` paths and answers ``304``."""

    def __init__(self, app: ASGIApp, ctx: ServeContext) -> None:
        self.app = app
        self.ctx = ctx
        self._version: tuple[float, Version] | None = None

    async def version(self) -> Version:
        """:func:`archive_version`, at most :data:`VERSION_TTL` seconds old."""
        now = time.monotonic()
        if self._version is None or now - self._version[0] > VERSION_TTL:
            self._version = (now, await run_in_threadpool(archive_version, self.ctx))
        return self._version[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not validated(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        ):
            await self.app(scope, receive, send)
            return
        version = await self.version()
        etag = etag_for(version, scope)
        last_modified = email.utils.formatdate(version.last_modified, usegmt=True)
        request_headers = Headers(scope=scope)
        validators = {
            "ETag": etag,
            "Last-Modified": last_modified,
            "Cache-Control": CACHE_CONTROL,
        }
        if self.ctx.settings.serve.public_catalog and not_modified(
            request_headers, etag, version.last_modified
        ):
            await _send_304(send, validators)  # without running the handler
            return
        dropping = False

        async def send_validated(message: Message) -> None:
            nonlocal dropping
            if dropping:
                return  # the body of an answer that went out as 304
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = MutableHeaders(scope=message)
                if "set-cookie" in headers or "etag" in headers:
                    await send(message)
                    return
                for name, value in validators.items():
                    headers[name] = value
                if not_modified(request_headers, etag, version.last_modified):
                    dropping = True
                    await _send_304(send, validators)
                    return
            await send(message)

        await self.app(scope, receive, send_validated)


async def _send_304(send: Send, headers: dict[str, str]) -> None:
    # Vary as the 200 has it (the compressed and plain forms share the weak ETag).
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"vary", b"Accept-Encoding"))
    await send({"type": "http.response.start", "status": 304, "headers": raw})
    await send({"type": "http.response.body", "body": b""})
