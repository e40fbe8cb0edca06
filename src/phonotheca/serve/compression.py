"""Compressed answers for clients that ask: zstd or gzip (``Accept-Encoding``).

JSON, XML, HTML and the other text types are compressed (a page of search results or a
Subsonic list shrinks five- to tenfold); audio, images and anything served with byte
ranges never are: a range counts bytes of the stored file, and compressed audio does not
get smaller. zstd is preferred when the client takes both (it is several times faster
than gzip for the same size). Plain ASGI, like the other middlewares of
:mod:`phonotheca.serve.app`, so that the audio streams it leaves alone pay nothing.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import zstandard
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIN_SIZE = 512
"""Smaller bodies are sent as they are: the framing would eat most of the gain."""
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
COMPRESSIBLE = (
    "application/json",
    "application/xml",
    "application/javascript",
    "text/",
    "image/svg+xml",
)
"""Content types (prefixes) worth compressing."""
ENCODINGS = ("zstd", "gzip")
"""In order of preference."""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _zstd() -> _Compressor:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()


def _gzip() -> _Compressor:
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header and trailer


_MAKERS = {"zstd": _zstd, "gzip": _gzip}


def negotiate(accept_encoding: str | None) -> str | None:
    """The coding to use for an ``Accept-Encoding`` header (RFC 9110 §12.5.3), or None.

    A coding counts when it is listed with a q-value above 0, or when ``*`` is and the
    coding is not listed with ``q=0``; the highest q wins, zstd on a tie.
    """
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name:
            weights[name.lower()] = q
    star = weights.get("*", 0.0)
    best: tuple[float, str] | None = None
    for coding in ENCODINGS:
        q = weights.get(coding, star)
        if q > 0 and (best is None or q > best[0]):
            best = (q, coding)
    return None if best is None else best[1]


def compressible(headers: Headers) -> bool:
    """Whether a response with these headers may be compressed: a text type, not already
    encoded, no byte ranges (``Accept-Ranges: bytes``, ``Content-Range``)."""
    kind = headers.get("content-type", "").lower()
    return (
        kind.startswith(COMPRESSIBLE)
        and "content-encoding" not in headers
        and "content-range" not in headers
        and headers.get("accept-ranges", "none").lower() == "none"
    )


class Compression:
    """Compresses the compressible responses of requests that accept zstd or gzip."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = Headers(scope=scope)
        coding = None if "range" in asked else negotiate(asked.get("accept-encoding"))
        if scope["method"] == "HEAD":
            await self._head(scope, receive, send, coding)
            return
        start: Message | None = None
        compressor: _Compressor | None = None
        passthrough = False

        async def send_compressed(message: Message) -> None:
            nonlocal start, compressor, passthrough
            if passthrough:
                await send(message)
                return
            if message["type"] == "http.response.start":
                if not _wanted(message):
                    passthrough = True
                    await send(message)
                    return
                MutableHeaders(scope=message).add_vary_header("Accept-Encoding")
                if coding is None:
                    passthrough = True
                    await send(message)
                    return
                start = message  # held until the first body part says how big it is
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if compressor is None:
                assert coding is not None
                if not more:
                    passthrough = True
                    data = _whole(start, body, coding)
                    await send(start)
                    await send({"type": "http.response.body", "body": data})
                    return
                compressor = _MAKERS[coding]()
                _encoded(start, coding, None)
                await send(start)
            data = compressor.compress(body)
            if not more:
                data += compressor.flush()
            await send({"type": "http.response.body", "body": data, "more_body": more})

        await self.app(scope, receive, send_compressed)

    async def _head(self, scope: Scope, receive: Receive, send: Send, coding: str | None) -> None:
        """A HEAD that its route answers itself: with the headers the GET would have.

        Only a compressible answer needs more than passing it on (its compressed length):
        that one is made again as a GET, whose text body is small, and only its headers
        are sent. Audio and covers, whose HEAD skips reading the file, are not text.
        """
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        start = messages[0] if messages else None
        if start is None or start["type"] != "http.response.start" or not _wanted(start):
            for message in messages:
                await send(message)
            return
        MutableHeaders(scope=start).add_vary_header("Accept-Encoding")
        if coding is not None:
            got: list[Message] = []

            async def keep_get(message: Message) -> None:
                got.append(message)

            await self.app({**scope, "method": "GET"}, receive, keep_get)
            body = b"".join(m.get("body", b"") for m in got if m["type"] == "http.response.body")
            if got and got[0]["type"] == "http.response.start" and _wanted(got[0]):
                start = got[0]
                MutableHeaders(scope=start).add_vary_header("Accept-Encoding")
                _whole(start, body, coding)
        await send(start)
        await send({"type": "http.response.body", "body": b""})


def _wanted(start: Message) -> bool:
    return start["status"] in (200, 203) and compressible(Headers(raw=start["headers"]))


def _encoded(start: Message, coding: str, length: int | None) -> None:
    """Mark ``start`` as sending ``coding``, of ``length`` bytes (None: unknown)."""
    headers = MutableHeaders(scope=start)
    headers["Content-Encoding"] = coding
    if "content-length" in headers:
        del headers["content-length"]
    if length is not None:
        headers["Content-Length"] = str(length)


def _whole(start: Message, body: bytes, coding: str) -> bytes:
    """The body to send for a whole ``body``: compressed unless it is too small; sets the
    headers of ``start`` to match."""
    if len(body) < MIN_SIZE:
        return body
    compressor = _MAKERS[coding]()
    data = compressor.compress(body) + compressor.flush()
    _encoded(start, coding, len(data))
    return data
