"""Range requests over a slice of a file: a track in its tar volume, a cover in a blob.

One function, :func:`ranged_response`, does what every byte-serving endpoint needs (the
web player, downloads, the Subsonic ``stream``/``download``/``getCoverArt`` calls):
``Accept-Ranges``, ``206`` with one range or ``multipart/byteranges`` for several,
``416`` when no range is satisfiable, ``If-Range``, ``If-None-Match`` (``304``), ``HEAD``,
a strong ``ETag`` (the content's sha256) and a download name (RFC 6266). Bytes are read
from the file in chunks as the client takes them; a volume is never loaded whole. A track
being fetched from the swarm is read through a :class:`SliceReader` instead, which hands
out verified bytes as they arrive.
"""

from __future__ import annotations

import itertools
import os
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from phonotheca.httprange import ByteRange, RangeNotSatisfiable, if_range_matches, parse_ranges

READER_THREADS = 64
"""Threads that may wait for a :class:`SliceReader`'s bytes at once (per process): apart
from the few that run request handlers, so clients waiting for a fetch never hold up
the rest of the server."""
_reader_limiter: anyio.CapacityLimiter | None = None

CHUNK = 4 << 20
"""Bytes per read (each read is a hop to a worker thread): 4 MiB gave about 1.2x the
throughput of 1 MiB on 4 MiB ranges, for at most 4 MiB held per stream."""


class ByteSlice(Protocol):
    """What can be served: ``length`` bytes at ``offset`` of ``path``."""

    @property
    def path(self) -> Path | None: ...
    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def cache_control(self) -> str: ...


class SliceReader(Protocol):
    """Bytes of a slice that are not all on disk yet (a track fetched on demand)."""

    def chunks(self, start: int, count: int) -> Iterator[bytes]:
        """``count`` bytes from ``start`` of the slice; may raise before the first."""
        ...


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def content_disposition(filename: str, kind: str = "inline") -> str:
    """RFC 6266: an ASCII ``filename`` for old clients and the exact ``filename*``."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%;' else "_" for c in filename)
    quoted = urllib.parse.quote(filename, safe="")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


def _none_match(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def read_slice(path: Path, start: int, count: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``count`` bytes from ``start`` of ``path``, chunk by chunk (short if the file is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        position, remaining = start, count
        while remaining > 0:
            data = os.pread(fd, min(chunk, remaining), position)
            if not data:
                return
            position += len(data)
            remaining -= len(data)
            yield data
    finally:
        os.close(fd)


def ranged_response(
    request: Request,
    media: ByteSlice,
    *,
    attachment: bool = False,
    reader: SliceReader | None = None,
) -> Response:
    """The response for ``request`` (GET or HEAD) serving ``media``'s bytes.

    ``attachment`` makes browsers save rather than play (``Content-Disposition``).
    The caller has checked access and that the bytes are present (``media.path``), or
    gives the ``reader`` of bytes being fetched: the response starts once the first chunk
    asked is there (what the reader raises before it reaches the caller); a ``HEAD`` or a
    ``304`` reads nothing.
    """
    if media.path is None and reader is None:
        raise ValueError("ranged_response needs bytes on disk: check TrackMedia.playable first")
    size = media.length
    etag = etag_of(media.sha256)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": media.cache_control,
    }
    if media.filename:
        headers["Content-Disposition"] = content_disposition(
            media.filename, "attachment" if attachment else "inline"
        )
    if _none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    head = request.method == "HEAD"
    range_header = request.headers.get("range")
    if range_header is not None and not if_range_matches(request.headers.get("if-range"), etag):
        range_header = None  # the client's copy is stale: send the whole new one
    try:
        ranges = parse_ranges(range_header, size)
    except RangeNotSatisfiable as exc:
        headers["Content-Range"] = exc.content_range
        return Response(status_code=416, headers=headers)
    if ranges is None:
        ranges = [ByteRange(0, size - 1)] if size else []
        status = 200
    elif len(ranges) == 1:
        headers["Content-Range"] = ranges[0].content_range(size)
        status = 206
    else:
        return _multipart(
            media, ranges, headers, head, _read_with(media, reader), reader is not None
        )
    return _body(
        media, ranges, status, headers, head, _read_with(media, reader), reader is not None
    )


Read = Callable[[int, int], Iterator[bytes]]
"""``count`` bytes of the slice from ``first`` (relative to the slice)."""


def _read_with(media: ByteSlice, reader: SliceReader | None) -> Read:
    if reader is not None:
        return reader.chunks
    path = media.path
    assert path is not None
    return lambda first, count: read_slice(path, media.offset + first, count)


def _body(
    media: ByteSlice,
    ranges: list[ByteRange],
    status: int,
    headers: dict[str, str],
    head: bool,
    read: Read,
    waits: bool,
) -> Response:
    """``waits``: reading may wait for bytes to arrive (then in threads of their own)."""
    length = sum(r.length for r in ranges)
    headers["Content-Length"] = str(length)
    if head or not ranges:
        return Response(status_code=status, headers=headers, media_type=media.content_type)
    r = ranges[0]
    chunks = _started(read(r.first, r.length))
    return StreamingResponse(
        _own_threads(chunks) if waits else chunks,
        status_code=status,
        headers=headers,
        media_type=media.content_type,
    )


def _own_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` read in threads of their own (:data:`READER_THREADS`)."""

    async def generate() -> AsyncIterator[bytes]:
        global _reader_limiter
        if _reader_limiter is None:
            _reader_limiter = anyio.CapacityLimiter(READER_THREADS)
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None, limiter=_reader_limiter)
            if chunk is None:
                return
            yield chunk

    return generate()


def _started(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` with its first one read now: an error before any byte (a fetch that
    cannot start) is raised to the caller, not in the middle of a response."""
    first = next(chunks, None)
    if first is None:
        return iter(())
    return itertools.chain((first,), chunks)


def _multipart(
    media: ByteSlice,
    ranges: list[ByteRange],
    headers: dict[str, str],
    head: bool,
    read: Read,
    waits: bool,
) -> Response:
    """``multipart/byteranges`` (RFC 9110 §14.6): one part per range, in request order."""
    boundary = secrets.token_hex(16)
    size = media.length
    parts = [
        (
            f"\r\n--{boundary}\r\nContent-Type: {media.content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode("latin-1")
        for r in ranges
    ]
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    headers["Content-Length"] = str(
        sum(len(p) for p in parts) + sum(r.length for r in ranges) + len(closing)
    )
    media_type = f"multipart/byteranges; boundary={boundary}"
    if head:
        return Response(status_code=206, headers=headers, media_type=media_type)
    first = _started(read(ranges[0].first, ranges[0].length))

    def generate() -> Iterator[bytes]:
        for i, (part, r) in enumerate(zip(parts, ranges, strict=True)):
            yield part
            yield from first if i == 0 else read(r.first, r.length)
        yield closing

    body = _own_threads(generate()) if waits else generate()
    return StreamingResponse(body, status_code=206, headers=headers, media_type=media_type)
