"""``torrents.json`` and ``torrents/`` inside ``phonotheca serve``: the site is its own web seed.

The same answers as ``phonotheca serve-files`` (:func:`phonotheca.torrents.webseed.answer`:
Range, ``multipart/byteranges``, conditional requests, and the same refusals: no symbolic
link, no ``*.partial``, no directory listing, nothing outside ``torrents/``), as an ASGI
layer in front of the web app, so that a builder who serves the site needs no second
server for BitTorrent clients to download from it (BEP 19).

Only a builder's archive roots answer here. A mirror root (one with ``.mirror/``) may hold
pieces not yet verified, which a web seed must never hand out; its requests go on to the
web app (whose ``/torrents/{name}.torrent`` route still serves listed ``.torrent`` files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from phonotheca.serve.availability import MIRROR_DIR
from phonotheca.torrents.webseed import (
    LISTING_PATHS,
    TORRENTS_PREFIX,
    Answer,
    answer,
    file_chunks,
)


def _wanted(path: str) -> bool:
    return path in LISTING_PATHS or path.startswith(TORRENTS_PREFIX)


class TorrentFiles:
    """Answers ``GET``/``HEAD`` of ``/torrents.json`` (and its ``.minisig``) and
    ``/torrents/<path>`` from the first
    builder root that has the file; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, roots: list[Path]) -> None:
        self.app = app
        self.roots = [r for r in roots if not (r / MIRROR_DIR).exists()]

    def _find(
        self, method: str, raw_path: str, header: Callable[[str], str | None]
    ) -> Answer | None:
        """The first root's answer that is not a 404 (a few ``lstat`` calls per root)."""
        for root in self.roots:
            reply = answer(root, method, raw_path, header)
            if reply.status != 404:
                return reply
            reply.close()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if scope["type"] != "http" or method not in ("GET", "HEAD") or not self.roots:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not _wanted(path):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # The raw path keeps percent-escapes as sent: an encoded '/' must stay refused.
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if raw else path

        def header(name: str) -> str | None:
            return headers.get(name.lower())

        reply = await anyio.to_thread.run_sync(self._find, method, raw_path, header)
        if reply is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._send(reply, method, send)
        except (OSError, RuntimeError):
            # The client went away mid-answer (a BitTorrent client cancels requests all
            # the time; uvloop says RuntimeError when the transport closed under a write),
            # or the file shrank under us: the connection ends, nothing to report.
            pass
        finally:
            reply.close()

    async def _send(self, reply: Answer, method: str, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": int(reply.status),
                "headers": [(k.lower().encode(), v.encode()) for k, v in reply.headers],
            }
        )
        if method == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        for part in reply.body:
            if isinstance(part, bytes):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                continue
            assert reply.file is not None
            chunks = file_chunks(reply.file, *part)
            while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
