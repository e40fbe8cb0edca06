"""The catalog's public playlists (FORMAT.md §4.8) as the server reads them.

The web pages, the JSON API and the Subsonic API all read them here, and only by index
ranges, so a request costs the same for a playlist of ten entries as for one of a million,
and in a catalog of a hundred playlists as in one of millions:

- a playlist by its public id: the unique index ``playlists_public_id``;
- the list of playlists, a page after (or before) a public id: a range of that index
  (there is no count of them: a count would scan the table);
- a playlist's entries at positions ``[at, at + size)``: a range of the primary key
  ``(playlist_id, position)``, as deep in the list as at its start;
- playlists by words of their title or creator: ``playlist_search``, searched the way the
  tracks are (:func:`phonotheca.catalog.search.search_keys`), in rowid order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from phonotheca.catalog import search as engine

PLAYLISTS_PER_PAGE = 50
"""Playlists a page of the web list shows."""
ENTRIES_PER_PAGE = 100
"""Entries a page of a web playlist shows."""
MAX_PAGE = 500
"""The most playlists or entries one request reads (the API's ``limit``, Subsonic's ``size``)."""
SEARCH_HITS = 10
"""Playlists a search shows beside its tracks."""
PLAYLIST_INDEX = engine.WordIndex(
    "playlist_search",
    "SELECT id, title, coalesce(creator, '') FROM playlists WHERE id IN ({marks})",
)

_COLUMNS = (
    "id, public_id, title, creator, annotation, created, identifier, entries, matched, duration_ms"
)


@dataclass(frozen=True)
class CatalogPlaylist:
    """A playlist's own row (``rowid``: the catalog's internal id, never shown)."""

    rowid: int
    public_id: str
    title: str
    creator: str | None
    annotation: str | None
    created: str | None
    identifier: str | None
    entries: int
    matched: int
    duration_ms: int | None


@dataclass(frozen=True)
class Entry:
    """One entry as the playlist gives it; ``track_id`` the matched track's rowid."""

    position: int
    track_id: int | None
    match: str | None
    identifier: str | None
    title: str | None
    creator: str | None
    album: str | None
    duration_ms: int | None


def playlist_url(public_id: str) -> str:
    return f"/playlists/{quote(public_id, safe='')}"


def _playlist(row: Sequence[object]) -> CatalogPlaylist:
    return CatalogPlaylist(*row)  # type: ignore[arg-type]


def by_public_id(conn: sqlite3.Connection, public_id: str) -> CatalogPlaylist | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM playlists WHERE public_id = ?", (public_id,)
    ).fetchone()
    return None if row is None else _playlist(row)


def by_rowid(conn: sqlite3.Connection, rowids: Sequence[int]) -> list[CatalogPlaylist]:
    """Playlists in the order given (unknown ids left out): one seek each."""
    unique = list(dict.fromkeys(rowids))
    if not unique:
        return []
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM playlists WHERE id IN ({','.join('?' * len(unique))})", unique
    )
    found = {int(r[0]): _playlist(r) for r in rows}
    return [found[r] for r in rowids if r in found]


@dataclass(frozen=True)
class PlaylistPage:
    """Playlists in public-id order, with where the pages before and after begin."""

    playlists: list[CatalogPlaylist]
    before: str | None
    """The public id the page before ends before (None: this is the first page)."""
    after: str | None
    """The public id the page after starts after (None: this is the last page)."""


def page(
    conn: sqlite3.Connection,
    *,
    after: str | None = None,
    before: str | None = None,
    size: int = PLAYLISTS_PER_PAGE,
) -> PlaylistPage:
    """``size`` playlists after the public id ``after`` (or, with ``before``, the ``size``
    before that one), in public-id order: one range of the unique index, reading one row
    more to know whether a page follows."""
    if size <= 0:
        return PlaylistPage([], None, None)
    if before is not None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM playlists WHERE public_id < ? ORDER BY public_id DESC LIMIT ?",
            (before, size + 1),
        ).fetchall()
        listed = [_playlist(r) for r in reversed(rows[:size])]
        more_after = conn.execute(
            "SELECT 1 FROM playlists WHERE public_id >= ? LIMIT 1", (before,)
        ).fetchone()
        return PlaylistPage(
            listed,
            listed[0].public_id if listed and len(rows) > size else None,
            listed[-1].public_id if listed and more_after else None,
        )
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM playlists WHERE public_id > ? ORDER BY public_id LIMIT ?",
        (after or "", size + 1),
    ).fetchall()
    listed = [_playlist(r) for r in rows[:size]]
    return PlaylistPage(
        listed,
        listed[0].public_id if listed and after else None,
        listed[-1].public_id if listed and len(rows) > size else None,
    )


def entries(conn: sqlite3.Connection, playlist: CatalogPlaylist, at: int, size: int) -> list[Entry]:
    """The entries at positions ``[at, at + size)``: one range of the primary key."""
    if size <= 0 or at >= playlist.entries:
        return []
    rows = conn.execute(
        "SELECT position, track_id, match, identifier, title, creator, album, duration_ms"
        " FROM playlist_entries WHERE playlist_id = ? AND position >= ? AND position < ?"
        " ORDER BY position",
        (playlist.rowid, at, at + size),
    )
    return [Entry(*r) for r in rows]


def track_ids(conn: sqlite3.Connection, playlist: CatalogPlaylist, limit: int) -> list[int]:
    """Rowids of the matched tracks in position order, at most ``limit`` of them (the
    copy of a playlist: its caller bounds the playlist's entries, which this reads)."""
    rows = conn.execute(
        "SELECT track_id FROM playlist_entries WHERE playlist_id = ? AND track_id IS NOT NULL"
        " ORDER BY position LIMIT ?",
        (playlist.rowid, limit),
    )
    return [int(r[0]) for r in rows]


def search(
    conn: sqlite3.Connection, text: str, limit: int = SEARCH_HITS, offset: int = 0
) -> list[CatalogPlaylist]:
    """Playlists with every word of ``text`` in their title or creator, the last word as a
    prefix (as track search), in the catalog's order."""
    return by_rowid(conn, engine.search_keys(conn, text, limit, offset, PLAYLIST_INDEX))
