"""Long lists of the web pages, a page at a time: an artist's albums, a genre's tracks.

An artist may have 10,000 albums and a genre a million tracks, so neither list is sorted
nor counted per request. Both are read from the prepared lists of ``library.sqlite3``
(FORMAT.md §14.1, :mod:`phonotheca.catalog.library`), where each list's items have dense
positions on a primary key: ``artist_albums`` (an artist's albums by release date, then
title) and ``song_order`` kind 1 (a genre's tracks by id, its run found in ``ranges``).
A page is the positions ``[at, at + size)``: one range of that key, so a page deep in a
list reads as many rows as the first, and the list's length is one seek (the largest
rank, or the run's ``n``). The links of a page carry the position (``?at=N``).

The web pages list the whole catalog (:data:`~phonotheca.catalog.library.CATALOG`): a
track this server cannot play shows as "not here", as everywhere else on the site.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from phonotheca.catalog import library as lib
from phonotheca.serve.context import ServeContext

ALBUMS_PER_PAGE = 60
TRACKS_PER_PAGE = 100
WEB_LIBRARY = lib.CATALOG
MAX_POSITION = 2**53
"""Largest ``?at=`` taken: far past any list, and within SQLite's 64-bit integers."""


@dataclass(frozen=True)
class Pager:
    """Where a page lies in a list of ``total`` items: positions ``at`` to ``end - 1``."""

    at: int
    size: int
    total: int

    @property
    def end(self) -> int:
        return min(self.at + self.size, self.total)

    @property
    def previous(self) -> int | None:
        """Start of the page before (past the end: the last page), None on the first."""
        if self.at <= 0:
            return None
        return self.last if self.at >= self.total else max(0, self.at - self.size)

    @property
    def next(self) -> int | None:
        """Start of the page after, None on the last page (or past the end)."""
        return self.at + self.size if self.at + self.size < self.total else None

    @property
    def last(self) -> int:
        """Start of the last page."""
        return (self.total - 1) // self.size * self.size if self.total else 0

    @property
    def several(self) -> bool:
        """Whether the list takes more than one page (the page shows its links)."""
        return self.total > self.size or self.at > 0


def artist_album_count(ctx: ServeContext, artist_id: int, library: int = WEB_LIBRARY) -> int:
    """How many albums the artist's list has: its largest rank + 1, one seek."""
    (count,) = (
        ctx.library.reader()
        .execute(
            "SELECT max(rank) + 1 FROM artist_albums WHERE lib = ? AND artist_id = ?",
            (library, artist_id),
        )
        .fetchone()
    )
    return int(count or 0)


def artist_albums(
    ctx: ServeContext, artist_id: int, at: int, size: int, library: int = WEB_LIBRARY
) -> list[int]:
    """Catalog ids of the artist's albums at positions ``[at, at + size)``, in order."""
    if size <= 0:
        return []
    rows = ctx.library.reader().execute(
        "SELECT album_id FROM artist_albums WHERE lib = ? AND artist_id = ?"
        " AND rank BETWEEN ? AND ? ORDER BY rank",
        (library, artist_id, at, at + size - 1),
    )
    return [int(r[0]) for r in rows]


def artist_top(ctx: ServeContext, artist_id: int, n: int) -> list[int]:
    """Catalog ids of the artist's ``n`` most popular tracks (at most
    :data:`~phonotheca.catalog.library.ARTIST_TOP`), most popular first."""
    try:
        rows = ctx.library.reader().execute(
            "SELECT track_id FROM artist_top WHERE artist_id = ? AND rank < ? ORDER BY rank",
            (artist_id, n),
        )
        return [int(r[0]) for r in rows]
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise  # an interrupted query (the request's time budget): a 503
        # A file of format 1, answering while a large catalog's new one is made.
        return []


@dataclass(frozen=True)
class Genre:
    id: int
    name: str


def genre(ctx: ServeContext, name: str) -> Genre | None:
    """The genre called exactly ``name`` (its unique index)."""
    row = ctx.catalog().execute("SELECT id, name FROM genres WHERE name = ?", (name,)).fetchone()
    return None if row is None else Genre(int(row[0]), str(row[1]))


def genre_span(ctx: ServeContext, genre_id: int, library: int = WEB_LIBRARY) -> range:
    """Positions of the genre's tracks in the songs-by-genre order (its count in
    ``ranges``, the rank of its first track)."""
    span: range = ctx.library.span(lib.SONG, library, lib.SONGS_BY_GENRE, genre_id, genre_id)
    return span


def genre_tracks(
    ctx: ServeContext, span: range, at: int, size: int, library: int = WEB_LIBRARY
) -> list[int]:
    """Catalog ids of the genre's tracks at ``[at, at + size)`` of its ``span``."""
    page: list[int] = ctx.library.page(lib.SONG, library, lib.SONGS_BY_GENRE, span, at, size)
    return page
