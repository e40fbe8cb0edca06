"""What every request handler of the server shares: settings, catalog, state, media.

The catalog is opened read-only, one connection per worker thread (SQLite connections
must not cross threads, and read-only ones never block the builder's writer). Handlers
get a connection from :meth:`ServeContext.catalog` and never close it; its statements
stop when the request's query time budget is spent (:mod:`phonotheca.serve.budget`).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonotheca.archive import ArchiveError
from phonotheca.catalog import schema
from phonotheca.config import Settings
from phonotheca.serve import budget

SERVER_CACHE_KIB = 32 * 1024
"""SQLite page cache of each of the server's catalog connections."""


@dataclass
class ServeContext:
    """One server's view of its archive(s).

    ``roots``: the archive or mirror directories given with ``--archive``; the catalog
    is the first one's ``catalog.sqlite3``; collections are looked for under each root's
    ``torrents/``. ``state`` is the users/stars/playlists store (``state.sqlite3`` of the
    first root), ``media`` finds a track's bytes, ``throttle`` counts failed sign-ins of
    the web form, the Subsonic API and the JSON API together, ``library`` reads the
    prepared lists (:mod:`phonotheca.serve.library`); all are attached by the app factory.
    """

    settings: Settings
    roots: list[Path]
    state: Any = None
    media: Any = None
    throttle: Any = None
    library: Any = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def root(self) -> Path:
        return self.roots[0]

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def state_path(self) -> Path:
        return self.root / "state.sqlite3"

    def catalog(self) -> sqlite3.Connection:
        """This thread's read-only catalog connection (opened on first use). The first
        call of a request starts the clock of its query time budget."""
        conn: sqlite3.Connection | None = getattr(self._local, "catalog", None)
        if conn is None:
            conn = schema.connect(self.catalog_path, readonly=True)
            # The import's 256 MiB page cache per connection would add up over a
            # thread pool; the OS page cache is shared by all of them anyway.
            conn.execute(f"PRAGMA cache_size=-{SERVER_CACHE_KIB}")
            budget.install(conn)
            self._local.catalog = conn
        budget.start_clock()
        return conn


def check_roots(roots: list[Path]) -> None:
    """Refuse roots that are not directories, or a first root without a catalog."""
    if not roots:
        raise ArchiveError("give at least one --archive directory")
    for root in roots:
        if not root.is_dir():
            raise ArchiveError(f"{root} is not a directory (--archive)")
    catalog = roots[0] / "catalog.sqlite3"
    if not catalog.is_file():
        raise ArchiveError(
            f"{roots[0]} has no catalog.sqlite3: the first --archive must be an archive or a"
            " mirror that holds the metadata torrent"
        )
    conn = schema.connect(catalog, readonly=True)
    try:
        version = schema.schema_version(conn)
    finally:
        conn.close()
    if version != schema.SCHEMA_VERSION:
        raise ArchiveError(
            f"{catalog} has schema v{version}, this phonotheca reads v{schema.SCHEMA_VERSION}:"
            + (
                " run 'phonotheca init' on it to migrate"
                if version < schema.SCHEMA_VERSION
                else " upgrade phonotheca"
            )
        )
