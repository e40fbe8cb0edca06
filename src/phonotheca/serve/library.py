"""The server's library file (:mod:`phonotheca.catalog.library`): kept current, read by keyset.

Each call that lists things checks, with a few index seeks, that the file was made for
the catalog as it is now and for the collections this server holds
(:meth:`ServerLibrary.reader`). When only the collections held changed (a build, a
mirror that verified or dropped a collection) the file is changed in place
(:func:`~phonotheca.catalog.library.update`), and so is it when an import changed the
catalog (its journal of changes); when that cannot be (a mirror unpacked a new catalog,
a bulk load, a new plan) the file is made again: while the
server's catalog is small, before answering (a second or so per 100,000 tracks); for a
larger one in a background thread, answering from the previous file meanwhile. One
process of a multi-worker server makes it at a time (a lock file); the others pick up
the new file by its inode.

Music folders: :data:`PLAYABLE` ("In this mirror") and :data:`CATALOG` ("Whole
catalog"). A call without ``musicFolderId`` lists ``[serve] subsonic_library``, or the
whole catalog when this server holds no collection at all.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phonotheca.catalog import library as lib
from phonotheca.catalog import library_rank as rank
from phonotheca.catalog.library import CATALOG, PLAYABLE

if TYPE_CHECKING:
    from phonotheca.serve.context import ServeContext

log = logging.getLogger(__name__)

FOLDERS = ((PLAYABLE, "In this mirror"), (CATALOG, "Whole catalog"))
INLINE_BUILD_TRACKS = 200_000
"""Catalogs up to this many tracks get their library file made before the call is
answered; larger ones in the background."""
RETRY_AFTER = 300.0
"""Seconds before a background build that failed is tried again."""


class ServerLibrary:
    """One server process's access to ``ROOT/library.sqlite3``."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.path = ctx.root / lib.LIBRARY_FILE
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _worker
        self._build_lock = threading.Lock()
        self._current: tuple[str, str] | None = None
        self._worker: threading.Thread | None = None
        self._failed_at = -RETRY_AFTER
        self.prepared: Any = None
        """Rendered answers kept by :mod:`phonotheca.serve.subsonic.prepared`."""

    # -- which library ---------------------------------------------------------------------

    def held(self) -> list[str]:
        """Collections present here with packed tracks (the playable sampler's listing)."""
        return list(self.ctx.media.sampler.candidates().names)

    def default(self) -> int:
        if self.ctx.settings.serve.subsonic_library == "catalog" or not self.held():
            return CATALOG
        return PLAYABLE

    # -- the file --------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to a current library file (the catalog
        attached as ``c``), reopened when the file was replaced."""
        self._ensure_current()
        st = os.stat(self.path)
        ident = (st.st_ino, st.st_mtime_ns)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "ident", None) != ident:
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            conn.isolation_level = None
            conn.execute("ATTACH ? AS c", (f"{self.ctx.catalog_path.resolve().as_uri()}?mode=ro",))
            self._local.conn, self._local.ident = conn, ident
        return conn

    def build_id(self) -> str:
        """Identifies the file now read (changes whenever it is made again)."""
        ident = getattr(self._local, "ident", None)
        return f"{ident[0]}-{ident[1]}" if ident else "none"

    def _ensure_current(self) -> None:
        stamp = lib.catalog_stamp(self.ctx.catalog())
        held = self.held()
        want = (stamp, lib.held_digest(held))
        if want == self._current:
            return
        meta = lib.read_meta(self.path)
        if lib.matches(meta, stamp, held):
            self._current = want
            return
        if lib.matches(meta, None, held) and lib.importing(self.ctx.catalog()):
            return  # the catalog is being imported: the import's end makes the file
        small = (self.ctx.catalog().execute("SELECT max(id) FROM tracks").fetchone()[0] or 0) < (
            INLINE_BUILD_TRACKS
        )
        if small or not self.path.exists():
            try:
                self._build(held)
            except (OSError, sqlite3.Error) as exc:
                if not self.path.exists():
                    raise
                log.warning("could not make %s, answering from the last one: %s", self.path, exc)
            return
        with self._lock:
            if time.monotonic() - self._failed_at < RETRY_AFTER:
                return  # the last attempt failed (a read-only disk?): the old file answers
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._build_logged, args=(held,), name="library", daemon=True
                )
                self._worker.start()

    def _build_logged(self, held: list[str]) -> None:
        try:
            self._build(held)
        except (OSError, sqlite3.Error) as exc:
            self._failed_at = time.monotonic()
            log.warning("could not make %s: %s", self.path, exc)

    def _build(self, held: list[str]) -> None:
        with self._build_lock, _file_lock(self.path):
            stamp = lib.catalog_stamp(self.ctx.catalog())
            if not lib.is_current(self.path, stamp, held):
                # Only the collections held changed: the file is changed in place.
                updated = lib.update(self.ctx.catalog_path, self.path, held)
                stamp = updated or lib.build(self.ctx.catalog_path, self.path, held)
            self._current = (stamp, lib.held_digest(held))

    # -- lists -----------------------------------------------------------------------------

    def span(self, what: int, library: int, kind: int, low: int = 0, high: int = 0) -> range:
        """Positions of the items whose key is in [low, high] in an order (a contiguous
        run): where the first one ranks, and the keys' counts."""
        conn = self.reader()
        row = conn.execute(
            "SELECT sum(n) FROM ranges WHERE lib = ? AND what = ? AND kind = ?"
            " AND key BETWEEN ? AND ?",
            (library, what, kind, low, high),
        ).fetchone()
        if not row[0]:
            return range(0)
        start = rank.rank_of_key(conn, _order(what), library, kind, low)
        return range(start, start + int(row[0]))

    def page(
        self,
        what: int,
        library: int,
        kind: int,
        span: range,
        offset: int,
        size: int,
        descending: bool = False,
    ) -> list[int]:
        """Items ``offset`` to ``offset + size`` of ``span`` in an order: the item at that
        position (index seeks), then one index range."""
        if size <= 0 or offset >= len(span):
            return []
        first = span[-1] - offset if descending else span[0] + offset
        count = min(size, len(span) - offset)
        return rank.page(self.reader(), _order(what), library, kind, first, count, descending)

    def at(self, what: int, library: int, kind: int, positions: Sequence[int]) -> list[int]:
        """Items at ``positions`` of an order, in that order (random picks)."""
        conn, order = self.reader(), _order(what)
        out = []
        for p in positions:
            row = rank.row_at(conn, order, library, kind, p)
            if row is not None and isinstance(row[-1], int):
                out.append(row[-1])  # the item: the last column of the sort key
        return out

    def random(self, what: int, library: int, kind: int, span: range, n: int) -> list[int]:
        """Up to ``n`` different items of ``span``, uniformly drawn."""
        picks = random.sample(span, min(n, len(span))) if len(span) else []
        return self.at(what, library, kind, picks)

    def artist_albums(self, library: int, artist_id: int) -> list[int]:
        rows = self.reader().execute(
            "SELECT album_id FROM artist_albums WHERE lib = ? AND artist_id = ? ORDER BY rank",
            (library, artist_id),
        )
        return [int(r[0]) for r in rows]

    def album_counts(self, library: int, artist_ids: Sequence[int]) -> dict[int, int]:
        """How many albums each artist has in ``library`` (what ``getArtist`` lists)."""
        conn = self.reader()
        out: dict[int, int] = {}
        for artist in dict.fromkeys(artist_ids):
            (count,) = conn.execute(
                "SELECT coalesce(max(rank) + 1, 0) FROM artist_albums"
                " WHERE lib = ? AND artist_id = ?",
                (library, artist),
            ).fetchone()
            out[artist] = int(count)
        return out

    def albums_in(self, library: int, album_ids: Sequence[int]) -> list[int]:
        """The albums of ``album_ids`` that ``library`` lists, in the order given."""
        if library == CATALOG:
            return list(album_ids)
        conn = self.reader()
        keep = {
            a
            for a in dict.fromkeys(album_ids)
            if conn.execute(
                "SELECT 1 FROM album_stats WHERE album_id = ? AND playable > 0", (a,)
            ).fetchone()
        }
        return [a for a in album_ids if a in keep]

    def artists_in(self, library: int, artist_ids: Sequence[int]) -> list[int]:
        """The artists of ``artist_ids`` that ``library`` lists, in the order given."""
        counts = self.album_counts(library, artist_ids)
        return [a for a in artist_ids if counts.get(a)]

    def songs_in(self, library: int, track_ids: Sequence[int]) -> list[int]:
        """The tracks of ``track_ids`` that ``library`` lists (in a held collection)."""
        if library == CATALOG or not track_ids:
            return list(track_ids)
        held = set(self.held())
        conn = self.ctx.catalog()
        keep: set[int] = set()
        unique = list(dict.fromkeys(track_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = conn.execute(
                "SELECT track_id, collection FROM ledger WHERE status = 'packed'"
                f" AND track_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            keep.update(int(t) for t, collection in rows if collection in held)
        return [t for t in track_ids if t in keep]


def _order(what: int) -> rank.Order:
    return {lib.SONG: lib.SONGS, lib.ALBUM: lib.ALBUMS, lib.ARTIST: lib.ARTISTS}[what]


class _file_lock:
    """An exclusive ``flock`` on ``<path>.lock``: one process makes the file at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
