"""Prepared responses: a large answer that changes only with the library file.

``getArtists`` of a library of millions of artists is megabytes, and so is ``getArtist``
of an artist with tens of thousands of albums. Such a body is rendered once per library
file, music folder, format and the caller's stars, kept with its gzip-compressed form in
memory (:data:`ENTRIES` answers and :data:`KEPT_BYTES` at most), and sent with an ETag: a
repeat with ``If-None-Match`` gets 304 without a body, any other repeat the stored bytes.

The gzipped answers are also kept on disk beside the library file (``library.prepared/``,
:data:`DISK_BYTES` at most, the least recently used deleted first), so that the server's
other processes (``serve --workers``) send an answer one of them made instead of making
it again (a ``getArtists`` of 10 M tracks takes seconds); a file lock per answer makes
the processes that want an answer being made wait for it.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.responses import Response

from phonotheca import __version__
from phonotheca.serve.conditional import archive_version
from phonotheca.serve.subsonic.call import Call
from phonotheca.serve.subsonic.envelope import Payload, render
from phonotheca.serve.subsonic.folders import library_of, server_library

ENTRIES = 16
KEPT_BYTES = 256 * 1024 * 1024
"""Most bytes the kept answers take together (uncompressed and gzipped): a ``getArtist``
of an artist with 100,000 albums is some 50 MB. The last answer made is kept anyway."""
DISK_BYTES = 1024 * 1024 * 1024
"""Most bytes the answers kept on disk take together (gzipped)."""
PREPARED_DIR = "library.prepared"
"""Beside the library file."""
STALE_SECONDS = 3600
"""A partial file older than this is one a killed process left."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Answer:
    etag: str
    media_type: str
    body: bytes
    gzipped: bytes


@dataclass
class PreparedCache:
    """Rendered answers by key, the least recently used dropped first; shared with the
    server's other processes through ``directory`` when it is given."""

    directory: Path | None = None
    answers: OrderedDict[str, _Answer] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    """One per answer being made: requests for it wait instead of making it again."""

    @contextmanager
    def making(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key``'s answer (dropped when no request holds or awaits it),
        and its file lock, which the other processes take too."""
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        try:
            with lock, self._file_lock(key):
                yield
        finally:
            with self.lock:
                if not lock.locked() and self.locks.get(key) is lock:
                    del self.locks[key]

    def get(self, key: str) -> _Answer | None:
        with self.lock:
            answer = self.answers.get(key)
            if answer is not None:
                self.answers.move_to_end(key)
                return answer
        answer = self._read(key)
        if answer is not None:
            self._keep(key, answer)
        return answer

    def put(self, key: str, answer: _Answer) -> None:
        self._keep(key, answer)
        self._write(key, answer)

    def _keep(self, key: str, answer: _Answer) -> None:
        with self.lock:
            self.answers[key] = answer
            self.answers.move_to_end(key)
            while len(self.answers) > 1 and (
                len(self.answers) > ENTRIES
                or sum(len(a.body) + len(a.gzipped) for a in self.answers.values()) > KEPT_BYTES
            ):
                self.answers.popitem(last=False)

    # -- on disk --------------------------------------------------------------------------

    def _file(self, key: str, suffix: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / (_digest(key) + suffix)

    @contextmanager
    def _file_lock(self, key: str) -> Iterator[None]:
        path = self._file(key, ".lock")
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, key: str) -> _Answer | None:
        """The answer a process kept on disk: the media type's line, then the gzipped
        body. A file that does not read back whole is deleted (it is made again)."""
        path = self._file(key, ".answer")
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not read the prepared answer %s: %s", path, exc)
            return None
        try:
            line, gzipped = data.split(b"\n", 1)
            body = gzip.decompress(gzipped)
            os.utime(path)  # recently used
        except (ValueError, OSError, EOFError) as exc:
            log.warning("a damaged prepared answer %s is deleted: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        etag = '"' + path.stem + '"'
        return _Answer(etag, line.decode("ascii"), body, gzipped)

    def _write(self, key: str, answer: _Answer) -> None:
        """Keep ``answer`` on disk (written aside, then renamed in), then delete the least
        recently used answers past :data:`DISK_BYTES`. A full or read-only disk only
        costs the sharing: the answer is sent anyway."""
        path = self._file(key, ".answer")
        if path is None:
            return
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(answer.media_type.encode("ascii") + b"\n" + answer.gzipped)
            os.replace(partial, path)
            self._trim(path.parent)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            log.warning("could not keep the prepared answer %s: %s", path, exc)

    @staticmethod
    def _trim(directory: Path) -> None:
        kept: list[tuple[float, int, Path]] = []
        now = time.time()
        for entry in os.scandir(directory):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # another process trimmed it
            path = Path(entry.path)
            if entry.name.endswith(".answer"):
                kept.append((st.st_mtime, st.st_size, path))
            elif entry.name.endswith(".partial") and now - st.st_mtime > STALE_SECONDS:
                path.unlink(missing_ok=True)
        total = sum(size for _, size, _ in kept)
        for _, size, path in sorted(kept)[:-1]:  # the newest stays, whatever its size
            if total <= DISK_BYTES:
                break
            path.unlink(missing_ok=True)
            path.with_suffix(".lock").unlink(missing_ok=True)
            total -= size


def respond(call: Call, method: str, variant: str, payload: Callable[[], Payload]) -> Response:
    """The answer to ``call`` (``variant``: what else it depends on, such as a digest of
    the caller's stars), from the cache or made by ``payload()`` and kept.

    The ETag is a digest of what the answer is made from (the library file, the catalog's
    files, the call, this version of Phonotheca), not of the body: a repeat is answered
    304 without making the answer, also by a server process that has not made it yet
    (``serve --workers``). Requests for an answer being made wait for it (one is made).
    """
    shelf = server_library(call)
    library = library_of(call)
    shelf.reader()  # the current file, whose identity is part of the key
    fmt, callback = call.get("f"), call.get("callback")
    key = "\0".join(
        (
            method,
            shelf.build_id(),
            archive_version(call.ctx).digest,
            __version__,
            str(library),
            str(fmt),
            str(callback),
            variant,
        )
    )
    etag = '"' + _digest(key) + '"'
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if etag in _tags(call.request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    if shelf.prepared is None:  # two threads racing here only build it twice
        shelf.prepared = PreparedCache(shelf.path.with_name(PREPARED_DIR))
    cache: PreparedCache = shelf.prepared
    answer = cache.get(key)
    if answer is None:
        with cache.making(key):
            answer = cache.get(key)  # made meanwhile by the request this one waited for
            if answer is None:
                rendered = render(payload(), fmt, callback)
                body = bytes(rendered.body)
                answer = _Answer(
                    etag=etag,
                    media_type=str(rendered.media_type),
                    body=body,
                    gzipped=gzip.compress(body, compresslevel=6, mtime=0),
                )
                cache.put(key, answer)
    if "gzip" in call.request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(answer.gzipped, media_type=answer.media_type, headers=headers)
    return Response(answer.body, media_type=answer.media_type, headers=headers)


def _digest(key: str) -> str:
    """An answer's ETag (once quoted) and the name of its file on disk."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _tags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compared as strong)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
