"""Prepared responses: a large answer that changes only with the library file.

``getArtists`` of a library of millions of artists is megabytes, and so is ``getArtist``
of an artist with tens of thousands of albums. Such a body is rendered once per library
file, music folder, format and the caller's stars, kept with its gzip-compressed form in
memory (:data:`ENTRIES` answers and :data:`KEPT_BYTES` at most), and sent with an ETag: a
repeat with ``If-None-Match`` gets 304 without a body, any other repeat the stored bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class _Answer:
    etag: str
    media_type: str
    body: bytes
    gzipped: bytes


@dataclass
class PreparedCache:
    """Rendered answers by key, the least recently used dropped first."""

    answers: OrderedDict[str, _Answer] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    """One per answer being made: requests for it wait instead of making it again."""

    @contextmanager
    def making(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key``'s answer (dropped when no request holds or awaits it)."""
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        try:
            with lock:
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

    def put(self, key: str, answer: _Answer) -> None:
        with self.lock:
            self.answers[key] = answer
            self.answers.move_to_end(key)
            while len(self.answers) > 1 and (
                len(self.answers) > ENTRIES
                or sum(len(a.body) + len(a.gzipped) for a in self.answers.values()) > KEPT_BYTES
            ):
                self.answers.popitem(last=False)


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
    etag = '"' + hashlib.sha256(key.encode()).hexdigest()[:40] + '"'
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if etag in _tags(call.request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    if shelf.prepared is None:
        shelf.prepared = PreparedCache()  # two threads racing here only build it twice
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


def _tags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compared as strong)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
