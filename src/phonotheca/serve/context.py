"""What every request handler of the server shares: settings, catalog, state, media.

The catalog is opened read-only, one connection per worker thread (SQLite connections
must not cross threads, and read-only ones never block the builder's writer). Handlers
get a connection from :meth:`ServeContext.catalog` and never close it.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonotheca.catalog import schema
from phonotheca.config import Settings


@dataclass
class ServeContext:
    """One server's view of its archive(s).

    ``roots``: the archive or mirror directories given with ``--archive``; the catalog
    is the first one's ``catalog.sqlite3``; collections are looked for under each root's
    ``torrents/``. ``state`` is the users/stars/playlists store (``state.sqlite3`` of the
    first root), ``media`` finds a track's bytes; both are attached by the app factory.
    """

    settings: Settings
    roots: list[Path]
    state: Any = None
    media: Any = None
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
        """This thread's read-only catalog connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "catalog", None)
        if conn is None:
            conn = schema.connect(self.catalog_path, readonly=True)
            self._local.catalog = conn
        return conn
