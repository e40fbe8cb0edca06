"""Tracks fetched on demand, kept by sha256 within a byte budget, least recently played
dropped first.

``DIR/<ab>/<sha256>`` holds a track's bytes; ``DIR/index.sqlite3`` its size, the file's
mtime when it entered and when it was last played. A file enters only after its whole
sha256 matched (written to ``DIR/partial/``, fsynced, renamed into place). A cached file
is served only while its size and mtime are those recorded, and after a restart only once
its sha256 has been checked again; a file that no longer matches is deleted, and the track
is fetched again. Everything here is bounded by the budget, never by the archive.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from phonotheca.durable import sync_directory

INDEX_FILE = "index.sqlite3"
PARTIAL_DIR = "partial"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    played REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tracks_by_played ON tracks(played);
"""
_READ = 1 << 20


def file_sha256(path: Path) -> str | None:
    """The sha256 (hex) of a file, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_READ):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


class TrackCache:
    """The cache directory; safe for threads and for several server processes."""

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = directory
        self.budget = budget
        self.partial = directory / PARTIAL_DIR
        self.partial.mkdir(parents=True, exist_ok=True)
        self._checked: set[str] = set()
        """sha256s whose files this process has hashed (after a restart, each once)."""
        self._lock = threading.Lock()
        conn = self._connect()
        try:
            conn.executescript(_SCHEMA)
            self._reconcile(conn)
        finally:
            conn.close()
        self._remove_stale_partials()

    def _reconcile(self, conn: sqlite3.Connection) -> None:
        """After a crash: a file renamed in but never recorded is deleted (it would
        escape the budget), a row whose file is gone is dropped. Bounded by the cache."""
        recorded = {r[0] for r in conn.execute("SELECT sha256 FROM tracks")}
        on_disk = {p.name for p in self.directory.glob("??/*") if p.is_file()}
        for name in on_disk - recorded:
            self.path(name).unlink(missing_ok=True)
        for sha256 in recorded - on_disk:
            conn.execute("DELETE FROM tracks WHERE sha256 = ?", (sha256,))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.directory / INDEX_FILE, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The cached file of ``sha256`` (marked played now), or None when it is not here
        or its bytes no longer match (then it is removed)."""
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT size, mtime_ns FROM tracks WHERE sha256 = ?", (sha256,)
            ).fetchone()
            if row is None:
                return None
            path = self.path(sha256)
            try:
                st = path.stat()
            except OSError:
                st = None
            good = st is not None and st.st_size == size == row[0] and st.st_mtime_ns == row[1]
            if good:
                with self._lock:
                    checked = sha256 in self._checked
                if not checked:
                    good = file_sha256(path) == sha256
                    if good:
                        with self._lock:
                            self._checked.add(sha256)
            if not good:
                self._remove(conn, sha256)
                return None
            conn.execute("UPDATE tracks SET played = ? WHERE sha256 = ?", (time.time(), sha256))
            return path
        finally:
            conn.close()

    def new_partial(self) -> Path:
        """A fresh file in ``DIR/partial/`` for a fetch to write (named by this process)."""
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}.", suffix=".partial", dir=self.partial)
        os.close(fd)
        return Path(name)

    def add(self, partial: Path, sha256: str) -> Path:
        """Move a fetched file (fsynced, its sha256 checked by the caller) into the cache,
        then drop the least recently played tracks until the cache fits its budget."""
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(partial, target)
        sync_directory(target.parent)
        st = target.stat()
        conn = self._connect()
        try:
            conn.execute(
                "INSERT OR REPLACE INTO tracks(sha256, size, mtime_ns, played) VALUES (?,?,?,?)",
                (sha256, st.st_size, st.st_mtime_ns, time.time()),
            )
            with self._lock:
                self._checked.add(sha256)
            self._evict(conn, keep=sha256)
        finally:
            conn.close()
        return target

    def _evict(self, conn: sqlite3.Connection, keep: str) -> None:
        (total,) = conn.execute("SELECT coalesce(sum(size), 0) FROM tracks").fetchone()
        while total > self.budget:
            row = conn.execute(
                "SELECT sha256, size FROM tracks WHERE sha256 != ? ORDER BY played LIMIT 1",
                (keep,),
            ).fetchone()
            if row is None:
                break  # one track larger than the budget stays until the next one comes
            self._remove(conn, row[0])
            total -= row[1]

    def _remove(self, conn: sqlite3.Connection, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
        conn.execute("DELETE FROM tracks WHERE sha256 = ?", (sha256,))
        with self._lock:
            self._checked.discard(sha256)

    def held(self) -> list[str]:
        """sha256s in the cache, least recently played first."""
        conn = self._connect()
        try:
            return [r[0] for r in conn.execute("SELECT sha256 FROM tracks ORDER BY played")]
        finally:
            conn.close()

    def _remove_stale_partials(self) -> None:
        """Delete partial files of processes that are gone (a fetch killed mid-way)."""
        for path in self.partial.glob("*.partial"):
            pid = path.name.split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
