"""Lists: ``getAlbumList2`` (and the folder-style ``getAlbumList``), random songs, genres.

Random songs are for playing: they are drawn uniformly among the tracks this server can
stream (:mod:`phonotheca.serve.playable`), and over the whole catalog with the catalog's
true shuffle (:func:`phonotheca.catalog.search.shuffle`, O(1) per pick) only when it
holds no audio at all. Album lists stay over the whole catalog. With a genre or year
filter, picks that do not pass are drawn again a bounded number of times; a filter so
narrow that drawing rarely hits it falls back to SQLite choosing at random among the
matching tracks (a scan of the matches, which is then small enough).
"""

from __future__ import annotations

import random
import sqlite3

from phonotheca.catalog import search
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

MAX_LIST = 500
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


def _random_albums(conn: sqlite3.Connection, size: int) -> list[int]:
    """``size`` distinct albums drawn uniformly (rowids are dense, so picks are O(1))."""
    lo = conn.execute("SELECT min(id) FROM albums").fetchone()[0]
    hi = conn.execute("SELECT max(id) FROM albums").fetchone()[0]
    if lo is None:
        return []
    total = (
        conn.execute("SELECT count(*) FROM albums").fetchone()[0] if hi - lo < 4 * size else None
    )
    want = min(size, total) if total is not None else size
    rng = random.Random()
    picked: dict[int, None] = {}
    tries = 0
    while len(picked) < want and tries < 50 * want + 100:
        tries += 1
        aid = rng.randint(lo, hi)
        if (
            aid not in picked
            and conn.execute("SELECT 1 FROM albums WHERE id = ?", (aid,)).fetchone()
        ):
            picked[aid] = None
    return list(picked)


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
    if kind == "random":
        return _random_albums(conn, size)
    if kind in ("frequent", "recent"):
        return _by_plays(call, kind)[offset : offset + size]
    if kind == "starred":
        stars = starred(call, "album", None)
        pids = sorted(stars, key=lambda p: stars[p], reverse=True)[offset : offset + size]
        return items.rowids(conn, "albums", pids)
    if kind == "highest":
        return []  # no ratings in Phonotheca
    order = {
        "newest": "a.id DESC",
        "alphabeticalByName": "a.title COLLATE NOCASE, a.id",
        "alphabeticalByArtist": "a.artist_credit COLLATE NOCASE, a.title COLLATE NOCASE, a.id",
    }
    params: dict[str, object] = {"size": size, "offset": offset}
    where = "1"
    if kind in order:
        sort = order[kind]
    elif kind == "byYear":
        low = call.integer("fromYear")
        high = call.integer("toYear")
        if low is None or high is None:
            raise SubsonicError(MISSING_PARAMETER, "byYear needs 'fromYear' and 'toYear'")
        params.update(low=min(low, high), high=max(low, high))
        where = "CAST(substr(a.release_date, 1, 4) AS INTEGER) BETWEEN :low AND :high"
        # fromYear > toYear lists newest first, as the Subsonic docs say.
        sort = "a.release_date DESC, a.id" if low > high else "a.release_date, a.id"
    elif kind == "byGenre":
        params["genre"] = genre_id(conn, call.require("genre"))
        where = "a.id IN (SELECT album_id FROM album_genres WHERE genre_id = :genre)"
        sort = "a.title COLLATE NOCASE, a.id"
    else:
        raise SubsonicError(
            GENERIC, f"unknown album list type {kind!r}: use one of {', '.join(LIST_TYPES)}"
        )
    rows = conn.execute(
        f"SELECT a.id FROM albums a WHERE {where} ORDER BY {sort} LIMIT :size OFFSET :offset",
        params,
    )
    return [r[0] for r in rows]


def _album_list(call: Call) -> list[Payload]:
    kind = call.require("type")
    size = call.count("size", 10, MAX_LIST)
    offset = call.offset("offset")
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


def _random_tracks(call: Call, n: int) -> tuple[list[int], bool]:
    """Up to ``n`` different tracks drawn uniformly among those this server plays, or
    over the catalog when it holds no audio; and which of the two it was."""
    playable = call.ctx.media.sampler.distinct(n)
    if playable is not None:
        return playable, True
    conn = call.conn
    drawn = list(dict.fromkeys(items.track_rowids(conn, [h.id for h in search.shuffle(conn, n)])))
    for _ in range(3):  # draws are with replacement: top up the rare repeat
        if len(drawn) >= n:
            break
        extra = items.track_rowids(conn, [h.id for h in search.shuffle(conn, n)])
        drawn = list(dict.fromkeys([*drawn, *extra]))
    return drawn[:n], False


def get_random_songs(call: Call) -> Payload:
    size = call.count("size", 10, MAX_LIST)
    conn = call.conn
    where, params = _filters(call)
    if not params:
        drawn, _ = _random_tracks(call, size)
        return {"randomSongs": {"song": song_items(call, drawn)}}
    picked: list[int] = []
    sql = "SELECT t.id FROM tracks t LEFT JOIN albums a ON a.id = t.album_id WHERE t.id IN ({})"
    playable = True
    for _ in range(8):
        if len(picked) >= size:
            break
        draw, playable = _random_tracks(call, max(64, 4 * size))
        if not draw:
            break
        passing = {
            r[0]
            for r in conn.execute(
                # rowids from the catalog itself: integers, safe to inline
                sql.format(",".join(str(int(t)) for t in draw)) + f" AND {where}",
                params,
            )
        }
        picked = list(dict.fromkeys([*picked, *(t for t in draw if t in passing)]))
    if len(picked) < size:
        picked = list(
            dict.fromkeys([*picked, *_random_matches(call, where, params, size, playable)])
        )
    return {"randomSongs": {"song": song_items(call, picked[:size])}}


def _random_matches(
    call: Call, where: str, params: dict[str, object], size: int, playable: bool
) -> list[int]:
    """SQLite's random choice among every matching track (the playable ones when
    ``playable``): a scan of the matches, for filters too narrow to hit by drawing."""
    if not playable:
        rows = call.conn.execute(
            f"SELECT t.id FROM tracks t LEFT JOIN albums a ON a.id = t.album_id WHERE {where}"
            " ORDER BY random() LIMIT :size",
            {**params, "size": size},
        )
        return [r[0] for r in rows]
    media = call.ctx.media
    held = media.sampler.candidates().names
    marks = ",".join(f":c{i}" for i in range(len(held)))
    rows = call.conn.execute(
        "SELECT t.id FROM ledger l JOIN tracks t ON t.id = l.track_id"
        " LEFT JOIN albums a ON a.id = t.album_id"
        f" WHERE l.status = 'packed' AND l.collection IN ({marks}) AND {where}"
        " ORDER BY random() LIMIT :size",
        {**params, **{f"c{i}": c for i, c in enumerate(held)}, "size": 4 * size},
    )
    found = [int(r[0]) for r in rows]
    ok = media.playable_rowids(found)
    return [t for t in found if t in ok]


def get_songs_by_genre(call: Call) -> Payload:
    conn = call.conn
    genre = genre_id(conn, call.require("genre"))
    count = call.count("count", 10, MAX_LIST)
    offset = call.offset("offset")
    rows = conn.execute(
        f"SELECT t.id FROM tracks t WHERE {IN_GENRE} ORDER BY t.id LIMIT :count OFFSET :offset",
        {"genre": genre, "count": count, "offset": offset},
    )
    return {"songsByGenre": {"song": song_items(call, [r[0] for r in rows])}}


ENDPOINTS: dict[str, Handler] = {
    "getAlbumList": get_album_list,
    "getAlbumList2": get_album_list2,
    "getRandomSongs": get_random_songs,
    "getSongsByGenre": get_songs_by_genre,
}
