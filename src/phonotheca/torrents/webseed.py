"""``phonotheca serve-files``: the torrents directory over plain HTTP, a BEP 19 web seed.

Serves ``/torrents.json``, ``/tracks.locator`` and ``/torrents/<path>`` from the archive, with
the Range support BitTorrent clients need (libtorrent refuses a server that gets ranges wrong):
``206`` with ``Content-Range``, several ranges as ``multipart/byteranges``, ``416`` for
ranges past the end, ``HEAD``, strong ``ETag`` and ``Last-Modified`` with ``If-Range``,
``If-None-Match`` and ``If-Modified-Since``. Files are streamed in chunks.

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
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from phonotheca.httprange import ByteRange, RangeNotSatisfiable, if_range_matches, parse_ranges
from phonotheca.torrents.listing import LISTING_FILE
from phonotheca.torrents.locator import LOCATOR_FILE

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


def resolve_request_path(archive_root: Path, url_path: str) -> Path:
    """The file a request path names, or :class:`FileNotServed`.

    Every component is checked with ``lstat``: each must exist, none may be a symbolic
    link, ``.``, ``..``, empty, or hidden behind an encoded ``/``, and the last must be a
    regular file whose name does not end in ``.partial``.
    """
    path = urllib.parse.urlsplit(url_path).path
    if path in ("/" + LISTING_FILE, "/" + LOCATOR_FILE):
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


class WebSeedHandler(BaseHTTPRequestHandler):
    """GET and HEAD of archive files with full Range support."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients fetch many pieces per connection
    server_version = "phonotheca-serve-files"
    timeout = 60  # a client silent this long is dropped (slow-loris guard)
    archive_root: Path = Path(".")
    quiet: bool = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _not_allowed(self) -> None:
        self._plain(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _plain(self, status: HTTPStatus, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, *, send_body: bool) -> None:
        try:
            path = resolve_request_path(self.archive_root, self.path)
            f = open(path, "rb")  # noqa: SIM115 (closed below, after streaming)
        except (FileNotServed, OSError, UnicodeDecodeError):
            self._plain(HTTPStatus.NOT_FOUND, "not found\n")
            return
        try:
            info = os.fstat(f.fileno())
            self._send_file(f, path, info.st_size, info.st_mtime_ns, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            f.close()

    def _send_file(
        self, f: BinaryIO, path: Path, size: int, mtime_ns: int, send_body: bool
    ) -> None:
        etag = f'"{size:x}-{mtime_ns:x}"'
        last_modified = email.utils.formatdate(mtime_ns / 1e9, usegmt=True)
        common = {"ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes"}
        if self._not_modified(etag, mtime_ns):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for key, value in common.items():
                self.send_header(key, value)
            self.end_headers()
            return
        ranges: list[ByteRange] | None = None
        if if_range_matches(self.headers.get("If-Range"), etag, last_modified):
            try:
                ranges = parse_ranges(self.headers.get("Range"), size)
            except RangeNotSatisfiable as exc:
                self._plain(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    "range not satisfiable\n",
                    {**common, "Content-Range": exc.content_range},
                )
                return
        kind = content_type(path)
        if ranges is None:
            self._head(HTTPStatus.OK, common, kind, size)
            if send_body:
                self._copy(f, 0, size)
        elif len(ranges) == 1:
            (r,) = ranges
            self._head(
                HTTPStatus.PARTIAL_CONTENT,
                {**common, "Content-Range": r.content_range(size)},
                kind,
                r.length,
            )
            if send_body:
                self._copy(f, r.first, r.length)
        else:
            boundary = secrets.token_hex(16)
            parts = [(_part_head(boundary, kind, r.content_range(size)), r) for r in ranges]
            closing = f"\r\n--{boundary}--\r\n".encode()
            length = sum(len(head) + r.length for head, r in parts) + len(closing)
            self._head(
                HTTPStatus.PARTIAL_CONTENT,
                common,
                f"multipart/byteranges; boundary={boundary}",
                length,
            )
            if send_body:
                for head, r in parts:
                    self.wfile.write(head)
                    self._copy(f, r.first, r.length)
                self.wfile.write(closing)

    def _not_modified(self, etag: str, mtime_ns: int) -> bool:
        match = self.headers.get("If-None-Match")
        if match is not None:
            tags = [t.strip().removeprefix("W/") for t in match.split(",")]
            return "*" in tags or etag in tags
        since = self.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            when = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return when.timestamp() >= mtime_ns // 1_000_000_000

    def _head(self, status: HTTPStatus, headers: dict[str, str], kind: str, length: int) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
        for chunk in _chunks(f, offset, length):
            self.wfile.write(chunk)


def _part_head(boundary: str, kind: str, content_range: str) -> bytes:
    """The delimiter and headers before one part of a ``multipart/byteranges`` body."""
    return (
        f"\r\n--{boundary}\r\nContent-Type: {kind}\r\nContent-Range: {content_range}\r\n\r\n"
    ).encode()


def _chunks(f: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
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
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
