"""``search2`` and ``search3``: words through the catalog's search index, or everything.

A query with words goes to :mod:`phonotheca.catalog.search` (every word must match, the
last as a prefix, most popular first). Artists and albums have no index of their own:
they are taken, most popular first, from the albums and artists of the best matching
songs, keeping those whose own name matches the words. So "floyd" lists Pink Floyd and
"dark side" its album, each found through their popular tracks, in index time.

An empty query (``""``, or the two quote characters some clients send) pages through the
whole catalog in a stable order with the ``*Count``/``*Offset`` parameters: the way
clients that keep an offline copy of a library sync it.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Sequence

from phonotheca.catalog import search
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import album_items, artist_items, song_items
from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import Payload

DEFAULT_COUNT = 20
MAX_WORDS_PAGE = search.MAX_LIMIT
MAX_SYNC_PAGE = 10_000  # an empty query's page: clients syncing a library ask for big ones
_TOKEN = re.compile(r"[^\W_]+")


def _pages(call: Call, high: int) -> dict[str, tuple[int, int]]:
    out = {}
    for kind in ("artist", "album", "song"):
        count = call.count(f"{kind}Count", DEFAULT_COUNT, high)
        offset = call.count(f"{kind}Offset", 0, 1 << 40)
        out[kind] = (count, offset)
    return out


def _is_empty(query: str) -> bool:
    return query.strip().strip('"').strip() == ""


def _page_all(conn: sqlite3.Connection, table: str, count: int, offset: int) -> list[int]:
    if count == 0:
        return []
    rows = conn.execute(f"SELECT id FROM {table} ORDER BY id LIMIT ? OFFSET ?", (count, offset))
    return [r[0] for r in rows]


class _Words:
    """The query's words, folded, the last one as a prefix unless the text ends after it."""

    def __init__(self, text: str) -> None:
        normal = unicodedata.normalize("NFC", text)
        self.words = [search.fold(w) for w in _TOKEN.findall(normal)][: search.MAX_QUERY_TOKENS]
        self.prefix = bool(normal) and _TOKEN.fullmatch(normal[-1]) is not None

    def match(self, text: str) -> bool:
        tokens = set(_TOKEN.findall(search.fold(text)))
        whole = self.words[:-1] if self.prefix else self.words
        if not all(w in tokens for w in whole):
            return False
        if self.prefix and self.words:
            return any(t.startswith(self.words[-1]) for t in tokens)
        return True


def _ranked_tracks(conn: sqlite3.Connection, query: str, count: int, offset: int) -> list[int]:
    keys = search.search_keys(conn, query, count, offset)
    if not keys:
        return []
    by_key = dict(
        items.rows_in(conn, "SELECT key, track_id FROM search_rank WHERE key IN ({ids})", keys)
    )
    return [by_key[k] for k in keys if k in by_key]


def _from_songs(
    conn: sqlite3.Connection, query: str, pages: dict[str, tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """Albums and artists matching ``query`` among the best matching songs' ones."""
    need = max(pages["album"][0] + pages["album"][1], pages["artist"][0] + pages["artist"][1])
    if need == 0:
        return [], []
    pool = _ranked_tracks(conn, query, min(MAX_WORDS_PAGE, max(200, 4 * need)), 0)
    words = _Words(query)
    album_rows = dict(
        items.rows_in(
            conn,
            "SELECT id, album_id FROM tracks WHERE id IN ({ids}) AND album_id IS NOT NULL",
            pool,
        )
    )
    album_ids = list(dict.fromkeys(album_rows[t] for t in pool if t in album_rows))
    album_text = {
        r[0]: f"{r[1]} {r[2]}"
        for r in items.rows_in(
            conn, "SELECT id, title, artist_credit FROM albums WHERE id IN ({ids})", album_ids
        )
    }
    albums = [a for a in album_ids if words.match(album_text.get(a, ""))]
    credits: dict[int, list[int]] = {}
    for track_id, artist_id in items.rows_in(
        conn,
        "SELECT track_id, artist_id FROM track_artists WHERE track_id IN ({ids})"
        " ORDER BY track_id, position",
        pool,
    ):
        credits.setdefault(track_id, []).append(artist_id)
    artist_ids = list(dict.fromkeys(a for t in pool for a in credits.get(t, [])))
    names = dict(
        items.rows_in(conn, "SELECT id, name FROM artists WHERE id IN ({ids})", artist_ids)
    )
    artists = [a for a in artist_ids if words.match(names.get(a, ""))]
    return albums, artists


def _window(ids: Sequence[int], page: tuple[int, int]) -> list[int]:
    count, offset = page
    return list(ids[offset : offset + count])


def _search(call: Call) -> tuple[list[int], list[int], list[int]]:
    query = call.require("query")
    conn = call.conn
    if _is_empty(query):
        pages = _pages(call, MAX_SYNC_PAGE)
        return (
            _page_all(conn, "artists", *pages["artist"]),
            _page_all(conn, "albums", *pages["album"]),
            _page_all(conn, "tracks", *pages["song"]),
        )
    pages = _pages(call, MAX_WORDS_PAGE)
    songs = _ranked_tracks(conn, query, *pages["song"]) if pages["song"][0] else []
    albums, artists = _from_songs(conn, query, pages)
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
                {
                    "id": a["id"],
                    "parent": a["artistId"],
                    "isDir": True,
                    "title": a["name"],
                    "album": a["name"],
                    "artist": a["artist"],
                    "year": a["year"],
                    "coverArt": a["coverArt"],
                }
                for a in album_items(call, albums)
            ],
            "song": song_items(call, songs),
        }
    }


def get_top_songs(call: Call) -> Payload:
    """An artist's most popular songs: the best matches of their name credited to them."""
    name = call.require("artist")
    count = call.count("count", 50, MAX_WORDS_PAGE)
    conn = call.conn
    pool = _ranked_tracks(conn, name + " ", MAX_WORDS_PAGE, 0) if count else []
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
