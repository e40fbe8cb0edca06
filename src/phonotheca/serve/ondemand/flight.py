"""One fetch of one track, shared by every client playing it while it runs.

A thread fetches the pieces that hold the track's bytes (verified by
:class:`~phonotheca.serve.ondemand.pieces.WebSeedPieces`) and writes the track's part of
each to a partial file at its place. Readers wait on a condition for the piece holding
their next byte and read it from that file: a client receives verified bytes as they
arrive, and a reader that seeks (a ``Range`` from the middle) moves the fetch to its
position, the pieces after it first, then the ones it skipped. When every piece is here
the file's sha256 is checked before it enters the cache; a mismatch or a piece no seed
sends fails the fetch, and its readers get the error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from phonotheca.serve.ondemand.cache import file_sha256
from phonotheca.serve.ondemand.errors import OnDemandError
from phonotheca.serve.ondemand.pieces import SeedConnections, WebSeedPieces
from phonotheca.serve.ondemand.sources import SwarmTorrent

READ_CHUNK = 1 << 20


class TrackFetch:
    """The fetch of ``length`` bytes at ``offset`` of ``torrent``'s stream (one track)."""

    def __init__(
        self,
        torrent: SwarmTorrent,
        offset: int,
        length: int,
        sha256: str,
        partial: Path,
        pieces: WebSeedPieces,
        timeout: float,
        on_done: Callable[[TrackFetch], None],
    ) -> None:
        self.torrent = torrent
        self.offset = offset
        self.length = length
        self.sha256 = sha256
        self.partial = partial
        self.timeout = timeout
        self._pieces = pieces
        self._on_done = on_done
        self._range = torrent.layout.pieces(offset, length)
        self._have = [False] * len(self._range)
        self._next = 0
        """Where the fetch goes on (an index into the track's pieces): moved by readers."""
        self._cond = threading.Condition()
        self.error: OnDemandError | None = None
        self.cached: Path | None = None
        """The cache file once the whole track was checked and entered."""
        self.finished = False
        self._thread = threading.Thread(target=self._run, name=f"ondemand-{sha256[:8]}")
        self._thread.daemon = True

    @property
    def torrent_file(self) -> str:
        return f"{self.torrent.name}.torrent"

    def start(self) -> TrackFetch:
        self._thread.start()
        return self

    # -- the fetching thread -----------------------------------------------------------------

    def _piece_span(self, k: int) -> tuple[int, int]:
        """(first, end) of the track's bytes held by its ``k``-th piece."""
        piece_length = self.torrent.layout.piece_length
        start = (self._range.start + k) * piece_length - self.offset
        return max(0, start), min(self.length, start + piece_length)

    def _pick(self) -> int | None:
        with self._cond:
            n = len(self._have)
            for i in range(n):
                k = (self._next + i) % n
                if not self._have[k]:
                    return k
        return None

    def _run(self) -> None:
        connections = SeedConnections(self.timeout)
        try:
            fd = os.open(self.partial, os.O_WRONLY)
            try:
                while (k := self._pick()) is not None:
                    index = self._range.start + k
                    data = self._pieces.piece(self.torrent, index, connections)
                    first, end = self._piece_span(k)
                    skip = first + self.offset - index * self.torrent.layout.piece_length
                    os.pwrite(fd, data[skip : skip + end - first], first)
                    with self._cond:
                        self._have[k] = True
                        if self._next == k:
                            self._next = k + 1 if k + 1 < len(self._have) else 0
                        self._cond.notify_all()
                os.fsync(fd)
            finally:
                os.close(fd)
            if file_sha256(self.partial) != self.sha256:
                raise OnDemandError(
                    f"the bytes of torrent {self.torrent_file} do not match the track's"
                    " sha256 although every piece hash matched (the catalog and the torrent"
                    " disagree): not cached",
                    torrent=self.torrent_file,
                )
            self._finish(None)
        except OnDemandError as exc:
            self._finish(exc)
        except OSError as exc:
            self._finish(OnDemandError(f"cannot write {self.partial}: {exc}"))
        finally:
            connections.close()

    def _finish(self, error: OnDemandError | None) -> None:
        if error is not None:
            self.partial.unlink(missing_ok=True)
        with self._cond:
            self.error = error
        # The owner moves a good file into the cache (``cached``) before readers are told.
        try:
            self._on_done(self)
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    # -- readers -----------------------------------------------------------------------------

    def wait_for(self, position: int) -> None:
        """Return once byte ``position`` of the track is verified; OnDemandError when the
        fetch failed, or when no piece arrived for ``timeout`` seconds."""
        if position >= self.length:
            return
        k = (position + self.offset) // self.torrent.layout.piece_length - self._range.start
        with self._cond:
            if not self._have[k]:
                self._next = k
            while not self._have[k]:
                if self.error is not None:
                    raise self.error
                progressed = self._cond.wait(self.timeout)
                if not progressed and not self._have[k] and self.error is None:
                    raise OnDemandError(
                        f"torrent {self.torrent_file}: no peer or web seed sent the piece needed"
                        f" within {self.timeout:g} s; try again later",
                        torrent=self.torrent_file,
                        timeout=True,
                    )

    def chunks(self, start: int, count: int) -> Iterator[bytes]:
        """``count`` verified bytes of the track from ``start``, as they arrive."""
        self.wait_for(start)
        fd = self._open()
        try:
            position, end = start, start + count
            while position < end:
                self.wait_for(position)
                k = (position + self.offset) // self.torrent.layout.piece_length
                _, span_end = self._piece_span(k - self._range.start)
                data = os.pread(fd, min(READ_CHUNK, span_end - position, end - position), position)
                if not data:
                    raise OnDemandError(f"{self.partial}: shorter than what was fetched")
                position += len(data)
                yield data
        finally:
            os.close(fd)

    def _open(self) -> int:
        """A descriptor of the partial file, or of the cache file it was renamed to."""
        try:
            return os.open(self.partial, os.O_RDONLY)
        except FileNotFoundError:
            pass
        with self._cond:
            while not self.finished:
                self._cond.wait(self.timeout)
        if self.cached is None:
            raise self.error or OnDemandError(f"{self.partial}: gone before it was read")
        return os.open(self.cached, os.O_RDONLY)

    def wait_done(self) -> Path:
        """Wait for the whole track (each piece within ``timeout``); its cache file."""
        for k in range(len(self._have)):
            first, _ = self._piece_span(k)
            self.wait_for(first)
        with self._cond:
            while not self.finished:
                self._cond.wait(self.timeout)
        if self.error is not None:
            raise self.error
        assert self.cached is not None
        return self.cached
