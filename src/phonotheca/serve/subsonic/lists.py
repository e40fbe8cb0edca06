"""Lists: ``getAlbumList2`` (and the folder-style ``getAlbumList``), random songs, genres.

Random songs are for playing: in "In this mirror" they are uniform positions of the
folder's list of songs (the tracks of the collections held, ``library.sqlite3``), kept
when this server has their bytes (``MediaLibrary.playable_rowids``); in the whole
catalog, uniform positions of its list. With a genre or year filter they are drawn in
that genre's or those years' run of positions. Picks that do not pass are drawn again a
bounded number of times: a few primary-key seeks per song, whatever the catalog's size.
"""

from __future__ import annotations

import sqlite3

from phonotheca.catalog import library as lib
from phonotheca.catalog.library import CATALOG
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import album_items, song_items, starred
from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import (
    GENERIC,
    MISSING_PARAMETER,
    NOT_FOUND,
    Payload,
    SubsonicError,
)
from phonotheca.serve.subsonic.folders import (
    library_of,
    offset_of,
    page_size,
    server_library,
)

LIST_TYPES = (
    "random",
    "newest",
    "alphabeticalByName",
    "alphabeticalByArtist",
    "byYear",
    "byGenre",
    "frequent",
    "recent",
    "starred",
    "highest",
)
# A track's genres are its own, or its album's when it has none.
IN_GENRE = """(t.id IN (SELECT track_id FROM track_genres WHERE genre_id = :genre)
    OR (t.album_id IN (SELECT album_id FROM album_genres WHERE genre_id = :genre)
        AND NOT EXISTS (SELECT 1 FROM track_genres x WHERE x.track_id = t.id)))"""


def genre_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM genres WHERE name = ?", (name,)).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id FROM genres WHERE lower(name) = lower(?) LIMIT 1", (name,)
        ).fetchone()
    if row is None:
        raise SubsonicError(NOT_FOUND, f"no genre {name!r}: see getGenres")
    return int(row[0])


def _by_plays(call: Call, order: str) -> list[int]:
    """Albums of the user's scrobbled tracks, by play count or by the last play."""
    plays = call.state.play_counts(call.user_id)
    if not plays:
        return []
    ids = items.track_rowids(call.conn, [p[0] for p in plays])
    album_of = dict(
        items.rows_in(call.conn, "SELECT id, album_id FROM tracks WHERE id IN ({ids})", ids)
    )
    rowid = dict(
        items.rows_in(call.conn, "SELECT public_id, id FROM tracks WHERE id IN ({ids})", ids)
    )
    score: dict[int, tuple[int, int]] = {}
    for track, count, last in plays:
        album = album_of.get(rowid.get(track, -1))
        if album is None:
            continue
        plays_so_far, last_so_far = score.get(album, (0, 0))
        score[album] = (plays_so_far + count, max(last_so_far, last))
    index = 0 if order == "frequent" else 1
    return sorted(score, key=lambda a: (-score[a][index], a))


def _album_ids(call: Call, kind: str, size: int, offset: int) -> list[int]:
    conn = call.conn
    shelf = server_library(call)
    library = library_of(call)
    if kind in ("frequent", "recent"):
        return shelf.albums_in(library, _by_plays(call, kind))[offset : offset + size]
    if kind == "starred":
        stars = starred(call, "album", None)
        pids = sorted(stars, key=lambda p: stars[p], reverse=True)
        return shelf.albums_in(library, items.rowids(conn, "albums", pids))[offset : offset + size]
    if kind == "highest":
        return []  # no ratings in Phonotheca
    orders = {
        "random": lib.ALBUMS_BY_ID,
        "newest": lib.ALBUMS_BY_ID,
        "alphabeticalByName": lib.ALBUMS_BY_NAME,
        "alphabeticalByArtist": lib.ALBUMS_BY_ARTIST,
        "byYear": lib.ALBUMS_BY_YEAR,
        "byGenre": lib.ALBUMS_BY_GENRE,
    }
    if kind not in orders:
        raise SubsonicError(
            GENERIC, f"unknown album list type {kind!r}: use one of {', '.join(LIST_TYPES)}"
        )
    order = orders[kind]
    descending = kind == "newest"
    if kind == "byYear":
        low = call.integer("fromYear")
        high = call.integer("toYear")
        if low is None or high is None:
            raise SubsonicError(MISSING_PARAMETER, "byYear needs 'fromYear' and 'toYear'")
        # fromYear > toYear lists newest first, as the Subsonic docs say.
        descending = low > high
        span = shelf.span(lib.ALBUM, library, order, min(low, high), max(low, high))
    elif kind == "byGenre":
        genre = genre_id(conn, call.require("genre"))
        span = shelf.span(lib.ALBUM, library, order, genre, genre)
    else:
        span = shelf.span(lib.ALBUM, library, order)
    if kind == "random":
        return shelf.random(lib.ALBUM, library, order, span, size)
    return shelf.page(lib.ALBUM, library, order, span, offset, size, descending)


def _album_list(call: Call) -> list[Payload]:
    kind = call.require("type")
    size = page_size(call, "size", 10)
    offset = offset_of(call)
    return album_items(call, _album_ids(call, kind, size, offset))


def get_album_list2(call: Call) -> Payload:
    return {"albumList2": {"album": _album_list(call)}}


def get_album_list(call: Call) -> Payload:
    return {
        "albumList": {
            "album": [
                items.album_as_child(a, ("year", "genre", "coverArt", "starred"))
                for a in _album_list(call)
            ]
        }
    }


def _filters(call: Call) -> tuple[str, dict[str, object]]:
    conn = call.conn
    where = ["1"]
    params: dict[str, object] = {}
    genre = call.get("genre")
    if genre:
        params["genre"] = genre_id(conn, genre)
        where.append(IN_GENRE)
    low, high = call.integer("fromYear"), call.integer("toYear")
    year = "CAST(substr(a.release_date, 1, 4) AS INTEGER)"
    if low is not None:
        where.append(f"{year} >= :low")
        params["low"] = low
    if high is not None:
        where.append(f"{year} <= :high")
        params["high"] = high
    return " AND ".join(where), params


def get_random_songs(call: Call) -> Payload:
    """Random songs of the library; a genre or year filter draws within that genre's or
    those years' run of positions (the narrower one), checking the other filter.

    With ``[serve] on_demand_random`` (and ``on_demand``) the songs this server plays from
    the swarm are drawn too: from the whole catalog's lists, keeping the playable ones."""
    size = page_size(call, "size", 10)
    library = library_of(call)
    serve = call.ctx.settings.serve
    swarm = library != CATALOG and serve.on_demand and serve.on_demand_random
    keep_playable = library != CATALOG
    if swarm:
        library = CATALOG  # the catalog's lists, filtered to what plays here or from the swarm
    shelf = server_library(call)
    genre = call.get("genre")
    low, high = call.integer("fromYear"), call.integer("toYear")
    spans: list[tuple[int, range]] = []
    if not genre and low is None and high is None:
        span = shelf.span(lib.SONG, library, lib.SONGS_ALL)
        if not keep_playable:
            drawn = shelf.random(lib.SONG, library, lib.SONGS_ALL, span, size)
            return {"randomSongs": {"song": song_items(call, drawn)}}
        spans.append((lib.SONGS_ALL, span))  # drawn below, kept when their bytes are here
    if genre:
        gid = genre_id(call.conn, genre)
        spans.append(
            (lib.SONGS_BY_GENRE, shelf.span(lib.SONG, library, lib.SONGS_BY_GENRE, gid, gid))
        )
    if low is not None or high is not None:
        years = (-(1 << 31) if low is None else low, (1 << 31) if high is None else high)
        spans.append((lib.SONGS_BY_YEAR, shelf.span(lib.SONG, library, lib.SONGS_BY_YEAR, *years)))
    kind, span = min(spans, key=lambda s: len(s[1]))
    where, params = _filters(call)
    picked: list[int] = []
    for _ in range(8):
        want = max(64, 4 * size)
        draw = shelf.random(lib.SONG, library, kind, span, want)
        if keep_playable:
            ok = call.ctx.media.playable_rowids(draw, swarm=swarm)
            draw = [t for t in draw if t in ok]
        if len(spans) > 1 and draw:
            sql = "SELECT t.id FROM tracks t LEFT JOIN albums a ON a.id = t.album_id"
            # rowids from the library file: integers, safe to inline
            ids = ",".join(str(int(t)) for t in draw)
            passing = {
                r[0] for r in call.conn.execute(f"{sql} WHERE t.id IN ({ids}) AND {where}", params)
            }
            draw = [t for t in draw if t in passing]
        picked = list(dict.fromkeys([*picked, *draw]))
        if len(picked) >= size or len(span) <= want:
            break
    return {"randomSongs": {"song": song_items(call, picked[:size])}}


def get_songs_by_genre(call: Call) -> Payload:
    genre = genre_id(call.conn, call.require("genre"))
    count = page_size(call, "count", 10)
    offset = offset_of(call)
    library = library_of(call)
    shelf = server_library(call)
    span = shelf.span(lib.SONG, library, lib.SONGS_BY_GENRE, genre, genre)
    ids = shelf.page(lib.SONG, library, lib.SONGS_BY_GENRE, span, offset, count)
    return {"songsByGenre": {"song": song_items(call, ids)}}


ENDPOINTS: dict[str, Handler] = {
    "getAlbumList": get_album_list,
    "getAlbumList2": get_album_list2,
    "getRandomSongs": get_random_songs,
    "getSongsByGenre": get_songs_by_genre,
}
