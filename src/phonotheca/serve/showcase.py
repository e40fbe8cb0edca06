"""What the home page shows: the albums this server plays and how much it holds.

Every read is bounded whatever the catalog's size (docs/DESIGN.md: a page costs a few
index probes):

- **Counts.** Tracks in the catalog: ``max(id)`` of ``tracks``, one step down the rowid
  b-tree. Track, album and artist ids are dense (a batch takes the ids after the largest,
  :func:`phonotheca.catalog.schema.next_id`) and rows are never deleted, so the largest id
  is the count. Tracks held: the ``items`` of the audio collections present here, each
  read by its primary key (the ``collections`` row that the build maintains).
- **Recently added.** The newest collections present here (by ``built_at``), and in
  each its packed tracks newest first: a range of the ``ledger_collection`` index read
  backwards, at most :data:`RECENT_SCAN` rows in all.
- **Most listened.** The search index's rank keys order tracks by popularity and then by
  the order of magnitude of their listens (docs/FORMAT.md §4.4), so walking
  ``search_rank`` by key from the most popular band held here lists the most listened
  tracks first; at most :data:`POPULAR_SCAN` rows, kept when their collection is here.

A server that holds no audio (a catalog-only mirror) shows the catalog's newest and most
listened albums instead. The figures are computed at most once per
:data:`SHOWCASE_SECONDS` per process and shared by every request.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from phonotheca.catalog.search import BUCKET_SHIFT
from phonotheca.serve.browse import cover_url
from phonotheca.serve.context import ServeContext
from phonotheca.serve.models import AlbumSummary
from phonotheca.serve.playable import present_collections

SHOWCASE_SECONDS = 60.0
TILES = 12
"""Albums per list."""
RECENT_SCAN = 2000
"""Ledger rows read at most for "recently added"."""
POPULAR_SCAN = 4000
"""Rank keys read at most for "most listened"."""
BUCKETS_PER_POPULARITY = 32
"""Rank-key buckets per popularity point (``catalog.search.BUCKET_SQL``)."""

# The queries, module-level so that a test can EXPLAIN them.
CATALOG_TRACKS_SQL = "SELECT coalesce(max(id), 0) FROM tracks"
CATALOG_ALBUMS_SQL = "SELECT coalesce(max(id), 0) FROM albums"
CATALOG_ARTISTS_SQL = "SELECT coalesce(max(id), 0) FROM artists"
COLLECTION_SQL = (
    "SELECT kind, status, items, band_high, built_at, seq FROM collections WHERE name = ?"
)
# LEFT JOINs and the filters in Python: LIMIT then counts the rows read, not the rows kept.
RECENT_SQL = (
    "SELECT l.status, t.album_id FROM ledger l INDEXED BY ledger_collection"
    " LEFT JOIN tracks t ON t.id = l.track_id"
    " WHERE l.collection = ? ORDER BY l.track_id DESC LIMIT ?"
)
POPULAR_SQL = (
    "SELECT l.status, l.collection, t.album_id FROM search_rank r"
    " LEFT JOIN ledger l ON l.track_id = r.track_id"
    " LEFT JOIN tracks t ON t.id = r.track_id"
    " WHERE r.key >= ? ORDER BY r.key LIMIT ?"
)
# The last ids (dense, see above) as a rowid range: the plan says SEARCH, not SCAN.
NEWEST_ALBUMS_SQL = (
    "SELECT id FROM albums WHERE id > (SELECT coalesce(max(id), 0) FROM albums) - ?1"
    " ORDER BY id DESC LIMIT ?1"
)
ALBUMS_SQL = (
    "SELECT id, public_id, title, artist_credit, release_date, album_type FROM albums"
    " WHERE id IN ({marks})"
)


@dataclass(frozen=True)
class HeldCollection:
    name: str
    items: int
    band_high: int | None
    built_at: str
    seq: int


@dataclass(frozen=True)
class Showcase:
    catalog_tracks: int
    catalog_albums: int
    catalog_artists: int
    held_tracks: int
    held_collections: int
    recent: list[AlbumSummary] = field(default_factory=list)
    popular: list[AlbumSummary] = field(default_factory=list)

    @property
    def holds_audio(self) -> bool:
        return self.held_tracks > 0


def rank_key_floor(popularity: int | None) -> int:
    """The first rank key of a popularity (``None``: the most popular, 100)."""
    top = 100 if popularity is None else max(0, min(100, popularity))
    return ((100 - top) * BUCKETS_PER_POPULARITY) << BUCKET_SHIFT


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0] or 0)


def _take(rows: Iterable[tuple[object, ...]], seen: dict[int, None], limit: int) -> int:
    """Add the album ids of ``rows`` (first column, None for a row to skip) to ``seen``,
    an ordered set, until it holds ``limit``; return the rows read. Stops reading there:
    the statement steps no further than the rows it hands out."""
    read = 0
    for row in rows:
        if len(seen) >= limit:
            break
        read += 1
        album_id = row[0]
        if isinstance(album_id, int):
            seen.setdefault(album_id, None)
    return read


class ShowcaseBuilder:
    """Computes and caches the home page's :class:`Showcase` for one server."""

    def __init__(self, ctx: ServeContext, tiles: int = TILES) -> None:
        self.ctx = ctx
        self.tiles = tiles
        self._lock = threading.Lock()
        self._cached: tuple[float, Showcase] | None = None

    def get(self) -> Showcase:
        with self._lock:
            cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < SHOWCASE_SECONDS:
            return cached[1]
        showcase = self.compute()
        with self._lock:
            self._cached = (time.monotonic(), showcase)
        return showcase

    # -- the parts ----------------------------------------------------------------------------

    def held(self) -> list[HeldCollection]:
        """The published audio collections present here, newest first."""
        conn = self.ctx.catalog()
        out = []
        for name in present_collections(self.ctx.media):
            row = conn.execute(COLLECTION_SQL, (name,)).fetchone()
            if row is None or row[0] != "audio" or row[1] != "published":
                continue
            out.append(HeldCollection(name, int(row[2] or 0), row[3], str(row[4] or ""), row[5]))
        # Newest build first; within one build, the most popular band first.
        out.sort(key=lambda c: (c.built_at, c.band_high or 0, c.seq), reverse=True)
        return out

    def recent_album_ids(self, held: list[HeldCollection]) -> list[int]:
        conn = self.ctx.catalog()
        seen: dict[int, None] = {}
        if not held:
            _take(conn.execute(NEWEST_ALBUMS_SQL, (self.tiles,)), seen, self.tiles)
            return list(seen)
        budget = RECENT_SCAN
        for collection in held:
            if budget <= 0 or len(seen) >= self.tiles:
                break
            cursor = conn.execute(RECENT_SQL, (collection.name, budget))
            budget -= _take(
                ((a if status == "packed" else None,) for status, a in cursor), seen, self.tiles
            )
            cursor.close()
        return list(seen)

    def popular_album_ids(self, held: list[HeldCollection]) -> list[int]:
        conn = self.ctx.catalog()
        seen: dict[int, None] = {}
        names = {c.name for c in held}
        bands = [c.band_high for c in held if c.band_high is not None]
        start = rank_key_floor(max(bands, default=None)) if held else 0
        cursor = conn.execute(POPULAR_SQL, (start, POPULAR_SCAN))
        _take(
            (
                (a if not held or (status == "packed" and collection in names) else None,)
                for status, collection, a in cursor
            ),
            seen,
            self.tiles,
        )
        cursor.close()
        return list(seen)

    def albums(self, ids: list[int]) -> list[AlbumSummary]:
        """Summaries in the order of ``ids``, with a cover URL where this server has one."""
        if not ids:
            return []
        conn = self.ctx.catalog()
        rows = conn.execute(ALBUMS_SQL.format(marks=",".join("?" * len(ids))), ids).fetchall()
        by_id = {int(r[0]): r for r in rows}
        out = []
        for album_id in ids:
            r = by_id.get(album_id)
            if r is None:
                continue
            public_id = str(r[1])
            out.append(
                AlbumSummary(
                    id=public_id,
                    title=str(r[2]),
                    artist_credit=str(r[3] or ""),
                    release_date=r[4],
                    album_type=r[5],
                    cover_url=cover_url(public_id) if self.ctx.media.cover(public_id) else None,
                )
            )
        return out

    def compute(self) -> Showcase:
        conn = self.ctx.catalog()
        held = self.held()
        return Showcase(
            catalog_tracks=_scalar(conn, CATALOG_TRACKS_SQL),
            catalog_albums=_scalar(conn, CATALOG_ALBUMS_SQL),
            catalog_artists=_scalar(conn, CATALOG_ARTISTS_SQL),
            held_tracks=sum(c.items for c in held),
            held_collections=len(held),
            recent=self.albums(self.recent_album_ids(held)),
            popular=self.albums(self.popular_album_ids(held)),
        )
