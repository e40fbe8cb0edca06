"""``search2`` and ``search3``: words through the catalog's search index, or everything.

A query with words goes to :mod:`phonotheca.catalog.search` (every word must match, the
last as a prefix, most popular first). Artists and albums have no index of their own:
they are taken, most popular first, from the albums and artists of the best matching
songs, keeping those whose own name matches the words. So "floyd" lists Pink Floyd and
"dark side" its album, each found through their popular tracks, in index time. Songs,
and so albums and artists, are those of the call's music folder (``musicFolderId``, else
the server's default): in "In this mirror", the matches this server plays, looked for
in a bounded number of batches of matches (:func:`_ranked_tracks`).

An empty query (``""``, or the two quote characters some clients send) pages through the
music folder's artists (index order), albums and songs (catalog order) with the
``*Count``/``*Offset`` parameters: the way clients that keep an offline copy of a library
sync it. Each page is one range of positions in the library file, however deep.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Sequence
from typing import Any

import msgspec

from phonotheca.catalog import library as lib
from phonotheca.catalog import library_rank as rank
from phonotheca.catalog import search
from phonotheca.catalog.library import CATALOG
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import album_items, artist_items, song_items
from phonotheca.serve.subsonic.call import MAX_OFFSET, Call, Handler
from phonotheca.serve.subsonic.envelope import Payload
from phonotheca.serve.subsonic.folders import library_of, named_library, server_library

DEFAULT_COUNT = 20
SYNC_OFFSET = 1 << 62
"""Deepest offset of a query-less search (a library sync): a position, read by index."""
MAX_WORDS_PAGE = search.MAX_LIMIT
"""The most songs looked at for one search with words (the pool of albums and artists)."""
MAX_COUNT = 500
"""The largest ``*Count`` of a search with words (more is answered with this many)."""
MAX_SYNC_PAGE = 10_000  # an empty query's page: clients syncing a library ask for big ones
FOLDER_BATCH = 128
"""Matches looked at per batch when a search keeps those of the "In this mirror" folder:
no more than half of :data:`~phonotheca.catalog.search.LONG_PREFIX_SCAN`, so that a
common prefix longer than the prefix indexes is still answered by walking its first
letters' matches (a larger batch would send every batch to the plain prefix query, which
merges the doclists of every word with that prefix)."""
FOLDER_BATCHES = 32
"""Batches at most per search in that folder (so 4,096 matches looked at, at most)."""
POOL_FIRST = 50
"""Songs of the pool looked at first for albums and artists: enough for most searches
with many matches (measured on bench/serve.py's queries at 10 M tracks: 131 of the 187
that fill a pool of 200 found their 20 albums and 20 artists in the first 50)."""
_TOKEN = re.compile(r"[^\W_]+")


def _pages(call: Call, high: int, deepest: int = MAX_OFFSET) -> dict[str, tuple[int, int]]:
    out = {}
    for kind in ("artist", "album", "song"):
        count = call.count(f"{kind}Count", DEFAULT_COUNT, high)
        offset = call.offset(f"{kind}Offset", deepest)
        out[kind] = (count, offset)
    return out


def _is_empty(query: str) -> bool:
    return query.strip().strip('"').strip() == ""


def _page_all(call: Call, what: str, count: int, offset: int) -> list[int]:
    """Page ``offset`` of everything in the music folder, by position (never skipping)."""
    if count == 0:
        return []
    shelf = server_library(call)
    library = library_of(call)
    if what == "artist":
        return rank.page(shelf.reader(), lib.ARTISTS, library, 0, offset, count)
    kind, table = (lib.SONGS_ALL, lib.SONG) if what == "song" else (lib.ALBUMS_BY_ID, lib.ALBUM)
    span = shelf.span(table, library, kind)
    return shelf.page(table, library, kind, span, offset, count)


def _fold(text: str) -> str:
    """:func:`phonotheca.catalog.search.fold`, without its per-character work for ASCII
    text (which decomposition and combining marks leave as it is): names are matched
    by the hundred per search."""
    return text.lower() if text.isascii() else search.fold(text)


class _Words:
    """The query's words, folded, the last one as a prefix unless the text ends after it."""

    def __init__(self, text: str) -> None:
        normal = unicodedata.normalize("NFC", text)
        self.words = [search.fold(w) for w in _TOKEN.findall(normal)][: search.MAX_QUERY_TOKENS]
        self.prefix = bool(normal) and _TOKEN.fullmatch(normal[-1]) is not None

    def match(self, text: str) -> bool:
        tokens = set(_TOKEN.findall(_fold(text)))
        whole = self.words[:-1] if self.prefix else self.words
        if not all(w in tokens for w in whole):
            return False
        if self.prefix and self.words:
            return any(t.startswith(self.words[-1]) for t in tokens)
        return True


def _track_ids(conn: sqlite3.Connection, keys: Sequence[int]) -> list[int]:
    """The tracks of rank keys, in the keys' order."""
    if not keys:
        return []
    by_key = dict(
        items.rows_in(conn, "SELECT key, track_id FROM search_rank WHERE key IN ({ids})", keys)
    )
    return [by_key[k] for k in keys if k in by_key]


def _ranked_tracks(
    call: Call, query: str, count: int, offset: int, library: int | None = None
) -> list[int]:
    """The best matching tracks of ``library`` (default: the call's music folder),
    ``offset`` to ``offset + count``.

    The whole catalog is one range of the index. The tracks this server plays are found
    among the matches in rank order, :data:`FOLDER_BATCH` at a time (each batch one walk
    of the index from where the last ended, and primary-key lookups of the tracks held),
    for :data:`FOLDER_BATCHES` batches at most: a folder that holds few of the matches
    gives what it holds among the first ``FOLDER_BATCH * FOLDER_BATCHES`` of them (fewer
    songs than asked, or none), never a walk of every match.
    """
    conn = call.conn
    library = library_of(call) if library is None else library
    if library == CATALOG:
        return _track_ids(conn, search.search_keys(conn, query, count, offset))
    shelf = server_library(call)
    kept: list[int] = []
    bound: search.Bound | None = None
    for _ in range(FOLDER_BATCHES):
        keys = search.search_keys(conn, query, FOLDER_BATCH, 0, bound=bound)
        kept += shelf.songs_in(library, _track_ids(conn, keys))
        if len(kept) >= offset + count or len(keys) < FOLDER_BATCH:
            break
        bound = search.Bound(keys[-1])
    return kept[offset : offset + count]


def _from_songs(
    call: Call, query: str, pages: dict[str, tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """Albums and artists matching ``query`` among the best matching songs' ones.

    Each list is in the order its items first appear in the pool and holds at least the
    ``count + offset`` items the page needs, or all of them when there are fewer: so the
    page is the same as if the whole pool were looked at, which is done only when the
    first :data:`POOL_FIRST` songs do not hold enough.
    """
    want_albums = pages["album"][0] + pages["album"][1]
    want_artists = pages["artist"][0] + pages["artist"][1]
    need = max(want_albums, want_artists)
    if need == 0:
        return [], []
    conn = call.conn
    pool = _ranked_tracks(call, query, min(MAX_WORDS_PAGE, max(200, 4 * need)), 0)
    words = _Words(query)
    albums: list[int] = []
    artists: list[int] = []
    seen_albums: set[int] = set()
    seen_artists: set[int] = set()
    for part in (pool[:POOL_FIRST], pool[POOL_FIRST:]):
        need_albums, need_artists = len(albums) < want_albums, len(artists) < want_artists
        if not (need_albums or need_artists):
            break
        found = _pool_rows(conn, part)
        if need_albums:
            albums += [a for a, text in _new_albums(found, seen_albums) if words.match(text)]
        if need_artists:
            artists += [a for a, name in _new_artists(found, seen_artists) if words.match(name)]
    return albums, artists


# Per pool track: its album (id, whether the row exists, title, credit) and its credited
# artists as JSON [[id, name], ...] in credit order ('' for an artist row that is missing).
_POOL_SQL = """
    SELECT t.id, t.album_id, a.id IS NOT NULL, a.title, a.artist_credit,
           (SELECT json_group_array(json_array(id, name)) FROM (
               SELECT x.artist_id AS id, coalesce(ar.name, '') AS name
               FROM track_artists x LEFT JOIN artists ar ON ar.id = x.artist_id
               WHERE x.track_id = t.id ORDER BY x.position))
    FROM tracks t LEFT JOIN albums a ON a.id = t.album_id
    WHERE t.id IN ({ids})
"""
_CREDITS = msgspec.json.Decoder(list[tuple[int, str]])


def _pool_rows(conn: sqlite3.Connection, tracks: Sequence[int]) -> list[tuple[Any, ...]]:
    """The :data:`_POOL_SQL` rows of ``tracks``, in their order (one query)."""
    rows = {r[0]: r for r in items.rows_in(conn, _POOL_SQL, tracks)}
    return [rows[t] for t in tracks if t in rows]


def _new_albums(rows: Sequence[tuple[Any, ...]], seen: set[int]) -> list[tuple[int, str]]:
    """(id, "title credit") of the rows' albums not in ``seen``, in the rows' order;
    adds them to ``seen``."""
    out = []
    for _, album_id, exists, title, credit, _ in rows:
        if album_id is not None and album_id not in seen:
            seen.add(album_id)
            out.append((album_id, f"{title} {credit}" if exists else ""))
    return out


def _new_artists(rows: Sequence[tuple[Any, ...]], seen: set[int]) -> list[tuple[int, str]]:
    """(id, name) of the rows' credited artists not in ``seen``, in the rows' order and
    credit order; adds them to ``seen``."""
    out = []
    for row in rows:
        for artist_id, name in _CREDITS.decode(row[5]):
            if artist_id not in seen:
                seen.add(artist_id)
                out.append((artist_id, name))
    return out


def _window(ids: Sequence[int], page: tuple[int, int]) -> list[int]:
    count, offset = page
    return list(ids[offset : offset + count])


def _search(call: Call) -> tuple[list[int], list[int], list[int]]:
    query = call.require("query")
    if _is_empty(query):
        # The sync reads the prepared lists by position: any depth costs the same.
        pages = _pages(call, MAX_SYNC_PAGE, SYNC_OFFSET)
        return (
            _page_all(call, "artist", *pages["artist"]),
            _page_all(call, "album", *pages["album"]),
            _page_all(call, "song", *pages["song"]),
        )
    pages = _pages(call, MAX_COUNT)
    songs = _ranked_tracks(call, query, *pages["song"]) if pages["song"][0] else []
    albums, artists = _from_songs(call, query, pages)
    return _window(artists, pages["artist"]), _window(albums, pages["album"]), songs


def search3(call: Call) -> Payload:
    artists, albums, songs = _search(call)
    return {
        "searchResult3": {
            "artist": artist_items(call, artists),
            "album": album_items(call, albums),
            "song": song_items(call, songs),
        }
    }


def search2(call: Call) -> Payload:
    """The folder-style variant: albums as directory children."""
    artists, albums, songs = _search(call)
    return {
        "searchResult2": {
            "artist": [{"id": a["id"], "name": a["name"]} for a in artist_items(call, artists)],
            "album": [
                items.album_as_child(a, ("year", "coverArt")) for a in album_items(call, albums)
            ],
            "song": song_items(call, songs),
        }
    }


def get_top_songs(call: Call) -> Payload:
    """An artist's most popular songs: the best matches of their name credited to them."""
    name = call.require("artist")
    count = call.count("count", 50, MAX_WORDS_PAGE)
    conn = call.conn
    pool = _ranked_tracks(call, name + " ", MAX_WORDS_PAGE, 0, named_library(call)) if count else []
    folded = search.fold(name).strip()
    credited = {
        r[0]
        for r in items.rows_in(
            conn,
            "SELECT ta.track_id, ar.name FROM track_artists ta"
            " JOIN artists ar ON ar.id = ta.artist_id WHERE ta.track_id IN ({ids})",
            pool,
        )
        if search.fold(r[1]).strip() == folded
    }
    top = [t for t in pool if t in credited][:count]
    return {"topSongs": {"song": song_items(call, top)}}


ENDPOINTS: dict[str, Handler] = {
    "search2": search2,
    "search3": search3,
    "getTopSongs": get_top_songs,
}
