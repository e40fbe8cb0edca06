"""``phonotheca serve-files``: the torrents directory over plain HTTP, a BEP 19 web seed.

Serves ``/torrents.json``, ``/tracks.locator`` (each with its ``.minisig`` signature) and
``/torrents/<path>`` from the archive, with the Range support BitTorrent clients need
(libtorrent refuses a server that gets ranges wrong): ``206`` with ``Content-Range``,
several ranges as ``multipart/byteranges``, ``416`` for ranges past the end, ``HEAD``,
strong ``ETag`` and ``Last-Modified`` with ``If-Range``, ``If-None-Match`` and
``If-Modified-Since``. Files are streamed in chunks.

Only regular files inside ``torrents/`` are served: no directory listings, no ``..``, no
symbolic link anywhere on the path (a link could point out of the directory), no
``*.partial`` file (not finished, so not yet what a torrent describes).
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import secrets
import stat
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from phonotheca.httprange import ByteRange, RangeNotSatisfiable, if_range_matches, parse_ranges
from phonotheca.torrents.listing import LISTING_FILE
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.minisign import SIGNATURE_SUFFIX

CHUNK = 256 * 1024
TORRENTS_PREFIX = "/torrents/"
_TYPES = {
    ".torrent": "application/x-bittorrent",
    ".json": "application/json",
    ".tar": "application/x-tar",
    ".jsonl": "application/jsonl",
    ".zst": "application/zstd",
    ".md": "text/markdown; charset=utf-8",
    ".locator": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
}


class FileNotServed(Exception):
    """The path names nothing this server hands out (answered ``404``)."""


LISTING_PATHS = tuple(
    "/" + name + suffix
    for name in (LISTING_FILE, LOCATOR_FILE)
    for suffix in ("", SIGNATURE_SUFFIX)
)
"""The paths outside ``torrents/`` that are served: the listing, the track locator and
their signatures."""


def resolve_request_path(archive_root: Path, url_path: str) -> Path:
    """The file a request path names, or :class:`FileNotServed`.

    Every component is checked with ``lstat``: each must exist, none may be a symbolic
    link, ``.``, ``..``, empty, or hidden behind an encoded ``/``, and the last must be a
    regular file whose name does not end in ``.partial``.
    """
    path = urllib.parse.urlsplit(url_path).path
    if path in LISTING_PATHS:
        parts = [path[1:]]
        base = archive_root
    elif path.startswith(TORRENTS_PREFIX):
        parts = path[len(TORRENTS_PREFIX) :].split("/")
        base = archive_root / "torrents"
    else:
        raise FileNotServed(path)
    current = base
    for raw in parts:
        part = urllib.parse.unquote(raw, errors="strict")
        if part in ("", ".", "..") or part.endswith(".partial") or any(c in part for c in "/\\\0"):
            raise FileNotServed(path)
        current = current / part
        try:
            info = os.lstat(current)
        except (OSError, ValueError):
            raise FileNotServed(path) from None
        if stat.S_ISLNK(info.st_mode):
            raise FileNotServed(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileNotServed(path)
    return current


def content_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


@dataclass(frozen=True)
class Answer:
    """What to send for one request, decided once for every server that hands out files.

    ``body`` is what follows the head, in order: ``bytes`` to send as they are and
    ``(offset, length)`` spans of ``file`` (opened by :func:`answer`; the caller closes
    it). A ``HEAD`` request gets the same status and head and no body.
    """

    status: HTTPStatus
    headers: list[tuple[str, str]]
    body: list[bytes | tuple[int, int]] = field(default_factory=list)
    file: BinaryIO | None = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _text(status: HTTPStatus, text: str, headers: dict[str, str] | None = None) -> Answer:
    data = text.encode()
    head = [
        *(headers or {}).items(),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(data))),
    ]
    return Answer(status, head, [data])


def answer(
    archive_root: Path, method: str, url_path: str, header: Callable[[str], str | None]
) -> Answer:
    """The answer to ``method url_path`` for ``archive_root``'s torrents (BEP 19 web seed).

    ``header(name)`` returns a request header or None. Files are opened here, so the
    answer describes the file as it was when opened (a file replaced meanwhile is not
    mixed in). Never raises for a bad request: everything not served is ``404``.
    """
    if method not in ("GET", "HEAD"):
        return _text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n", {"Allow": "GET, HEAD"})
    try:
        path = resolve_request_path(archive_root, url_path)
        f = open(path, "rb")  # noqa: SIM115 (the caller closes it, after streaming)
    except (FileNotServed, OSError, UnicodeDecodeError):
        return _text(HTTPStatus.NOT_FOUND, "not found\n")
    try:
        info = os.fstat(f.fileno())
        result = _file_answer(path, info.st_size, info.st_mtime_ns, header)
    except BaseException:
        f.close()
        raise
    if not any(isinstance(part, tuple) for part in result.body):
        f.close()
        return result
    return Answer(result.status, result.headers, result.body, f)


def _file_answer(
    path: Path, size: int, mtime_ns: int, header: Callable[[str], str | None]
) -> Answer:
    etag = f'"{size:x}-{mtime_ns:x}"'
    last_modified = email.utils.formatdate(mtime_ns / 1e9, usegmt=True)
    common = {"ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes"}
    if _not_modified(header, etag, mtime_ns):
        return Answer(HTTPStatus.NOT_MODIFIED, list(common.items()))
    ranges: list[ByteRange] | None = None
    if if_range_matches(header("If-Range"), etag, last_modified):
        try:
            ranges = parse_ranges(header("Range"), size)
        except RangeNotSatisfiable as exc:
            return _text(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                "range not satisfiable\n",
                {**common, "Content-Range": exc.content_range},
            )
    kind = content_type(path)
    if ranges is None:
        return Answer(HTTPStatus.OK, _head(common, kind, size), [(0, size)])
    if len(ranges) == 1:
        (r,) = ranges
        headers = {**common, "Content-Range": r.content_range(size)}
        return Answer(
            HTTPStatus.PARTIAL_CONTENT, _head(headers, kind, r.length), [(r.first, r.length)]
        )
    boundary = secrets.token_hex(16)
    body: list[bytes | tuple[int, int]] = []
    for r in ranges:
        body += [_part_head(boundary, kind, r.content_range(size)), (r.first, r.length)]
    body.append(f"\r\n--{boundary}--\r\n".encode())
    length = sum(len(p) if isinstance(p, bytes) else p[1] for p in body)
    kind = f"multipart/byteranges; boundary={boundary}"
    return Answer(HTTPStatus.PARTIAL_CONTENT, _head(common, kind, length), body)


def _head(headers: dict[str, str], kind: str, length: int) -> list[tuple[str, str]]:
    return [*headers.items(), ("Content-Type", kind), ("Content-Length", str(length))]


def _not_modified(header: Callable[[str], str | None], etag: str, mtime_ns: int) -> bool:
    match = header("If-None-Match")
    if match is not None:
        tags = [t.strip().removeprefix("W/") for t in match.split(",")]
        return "*" in tags or etag in tags
    since = header("If-Modified-Since")
    if since is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return when.timestamp() >= mtime_ns // 1_000_000_000


class WebSeedHandler(BaseHTTPRequestHandler):
    """GET and HEAD of archive files with full Range support (``serve-files``)."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients fetch many pieces per connection
    server_version = "phonotheca-serve-files"
    timeout = 60  # a client silent this long is dropped (slow-loris guard)
    archive_root: Path = Path(".")
    quiet: bool = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:
        self._serve()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

    def _serve(self) -> None:
        reply = answer(self.archive_root, self.command, self.path, self.headers.get)
        try:
            self.send_response(reply.status)
            for key, value in reply.headers:
                self.send_header(key, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            for part in reply.body:
                if isinstance(part, bytes):
                    self.wfile.write(part)
                else:
                    assert reply.file is not None
                    self._copy(reply.file, *part)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            reply.close()

    def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
        """Send ``length`` bytes of ``f`` from ``offset`` (one range of a file)."""
        for chunk in file_chunks(f, offset, length):
            self.wfile.write(chunk)


def _part_head(boundary: str, kind: str, content_range: str) -> bytes:
    """The delimiter and headers before one part of a ``multipart/byteranges`` body."""
    return (
        f"\r\n--{boundary}\r\nContent-Type: {kind}\r\nContent-Range: {content_range}\r\n\r\n"
    ).encode()


def file_chunks(f: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
    """The ``length`` bytes of ``f`` from ``offset``, in chunks of :data:`CHUNK`."""
    f.seek(offset)
    left = length
    while left > 0:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            # The file shrank under us: the Content-Length promise cannot be kept.
            raise ConnectionResetError("file shrank while it was sent")
        left -= len(chunk)
        yield chunk


def make_server(
    archive_root: Path, host: str = "127.0.0.1", port: int = 8081, *, quiet: bool = True
) -> ThreadingHTTPServer:
    """A threading HTTP server for ``archive_root``'s torrents (call ``serve_forever``)."""
    handler = type(
        "ArchiveWebSeedHandler",
        (WebSeedHandler,),
        {"archive_root": Path(archive_root).resolve(), "quiet": quiet},
    )
    server = WebSeedServer((host, port), handler)
    server.daemon_threads = True
    return server


class WebSeedServer(ThreadingHTTPServer):
    """BitTorrent clients drop connections all the time (a cancelled request, a peer gone):
    that is no error worth a traceback on the console; anything else still is one."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)
