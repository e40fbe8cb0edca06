"""The library file changed in place by what an import changed in the catalog.

The catalog journals (triggers, ``library_changes``, FORMAT.md §4) the ids of the tracks,
albums and artists whose rows or links an import (any writer) inserted, changed or
deleted. The file records the last journal row it took in (``meta.changes``); the next
update reads the rows after it and derives what may have moved:

- tracks: those journaled, and the tracks of the albums journaled (an album's year and
  genres order its tracks);
- albums: those journaled, and the albums of those tracks (their counts);
- artists: those journaled, the artists credited on those tracks, and the album
  artists of those albums.

Their rows leave every list and come back from the catalog as it is now (a track,
album or artist deleted comes back in none), with the same queries as a full build,
restricted to those ids: O(k log n) for k rows, plus what an artist has (its albums'
list, its most popular tracks, its counts are made again: O(tracks of the artist)).
The positions follow through :mod:`~phonotheca.catalog.library_rank`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from phonotheca.catalog import library as lib
from phonotheca.catalog import library_rank as rank

MAX_SHARE = 8
"""A change of more tracks, albums and artists than 1/8 of the catalog's tracks is not
applied in place: a full build costs less."""
MIN_LIMIT = 10_000
"""...unless it is under this many."""
ROWS_PER_ITEM = 16
"""Journal rows read at most per item of the limit (a changed track writes several: its
row, its credits and genres, before and after)."""
_SETS = ("jt", "ja", "jr")


def journal_end(conn: sqlite3.Connection) -> int:
    """The last journal row ever written (the catalog attached as ``c``): what a file made
    now has taken in."""
    row = conn.execute(
        "SELECT seq FROM c.sqlite_sequence WHERE name = 'library_changes'"
    ).fetchone()
    return 0 if row is None else int(row[0])


def pending(conn: sqlite3.Connection, mark: int) -> int | None:
    """Tracks, albums and artists journaled after ``mark`` when they can be applied in
    place; None when the file must be made again (journaling was off, or too much
    changed). Reads at most :data:`ROWS_PER_ITEM` times the limit of journal rows."""
    if conn.execute("SELECT 1 FROM c.library_changes_off LIMIT 1").fetchone():
        return None
    tracks = conn.execute("SELECT coalesce(max(id), 0) FROM c.tracks").fetchone()[0]
    limit = max(MIN_LIMIT, int(tracks) // MAX_SHARE)
    row = conn.execute(
        "SELECT count(*), count(DISTINCT what || ':' || id), coalesce(min(what), 0) FROM"
        " (SELECT what, id FROM c.library_changes WHERE seq > ? LIMIT ?)",
        (mark, ROWS_PER_ITEM * limit + 1),
    ).fetchone()
    rows, items, lowest = int(row[0]), int(row[1]), int(row[2])
    if rows > ROWS_PER_ITEM * limit or items > limit or lowest < 0:
        return None
    return items


def apply(conn: sqlite3.Connection, mark: int) -> None:
    """Take in the journal rows after ``mark``, in the caller's transaction."""
    _sets(conn)
    for what, name in enumerate(_SETS):
        conn.execute(
            f"INSERT OR IGNORE INTO temp.{name} SELECT id FROM c.library_changes"
            " WHERE seq > ? AND what = ?",
            (mark, what),
        )
    conn.execute(
        "INSERT OR IGNORE INTO temp.jt SELECT t.id FROM temp.ja j"
        " CROSS JOIN c.tracks t ON t.album_id = j.id"
    )
    _widen(conn)
    conn.execute(
        "DELETE FROM playable WHERE track_id IN (SELECT id FROM temp.jt)"
        " AND NOT EXISTS (SELECT 1 FROM c.tracks t WHERE t.id = playable.track_id)"
    )
    _stats(conn)
    _relist(conn, (lib.PLAYABLE, lib.CATALOG))


def relist_tracks(conn: sqlite3.Connection, tracks: str, libraries: Sequence[int]) -> None:
    """The rows of the tracks of ``tracks`` (a query of ids), their albums and artists in
    the lists of ``libraries`` again (tracks that became playable or stopped being), in
    the caller's transaction; their counts are the caller's."""
    _sets(conn)
    conn.execute(f"INSERT OR IGNORE INTO temp.jt {tracks}")
    _widen(conn)
    _relist(conn, libraries)


def _sets(conn: sqlite3.Connection) -> None:
    for name in _SETS:
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name}(id INTEGER PRIMARY KEY)")
        conn.execute(f"DELETE FROM temp.{name}")


def _widen(conn: sqlite3.Connection) -> None:
    """The albums of the tracks concerned, and the artists of both."""
    conn.execute(
        "INSERT OR IGNORE INTO temp.ja SELECT t.album_id FROM temp.jt j"
        " CROSS JOIN c.tracks t ON t.id = j.id WHERE t.album_id IS NOT NULL"
    )
    conn.execute(
        "INSERT OR IGNORE INTO temp.jr SELECT ta.artist_id FROM temp.jt j"
        " CROSS JOIN c.track_artists ta ON ta.track_id = j.id"
    )
    conn.execute(
        "INSERT OR IGNORE INTO temp.jr SELECT aa.artist_id FROM temp.ja j"
        " CROSS JOIN c.album_artists aa ON aa.album_id = j.id"
    )


def _relist(conn: sqlite3.Connection, libraries: Sequence[int]) -> None:
    rank.begin(conn)
    deltas = _leave(conn, libraries)
    for library in libraries:
        _come_back(conn, library, deltas)
    rank.settle(conn, lib.ORDERS)
    conn.executemany(
        "INSERT INTO ranges VALUES(?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
        [(*k, n) for k, n in deltas.items() if n],
    )
    conn.execute("DELETE FROM ranges WHERE n = 0")


def _stats(conn: sqlite3.Connection) -> None:
    """Counts and most popular tracks of the albums and artists concerned, again."""
    conn.execute("DELETE FROM album_stats WHERE album_id IN (SELECT id FROM temp.ja)")
    lib.album_stats(conn, "SELECT id FROM temp.ja")
    conn.execute("DELETE FROM artist_stats WHERE artist_id IN (SELECT id FROM temp.jr)")
    conn.execute("DELETE FROM artist_top WHERE artist_id IN (SELECT id FROM temp.jr)")
    lib.artist_stats(conn, "SELECT id FROM temp.jr")
    lib.artist_top(conn, "SELECT id FROM temp.jr")


Deltas = dict[tuple[int, int, int, int], int]


def _leave(conn: sqlite3.Connection, libraries: Sequence[int]) -> Deltas:
    """Every row of the items concerned leaves the lists of ``libraries`` (their blocks
    recorded); what each key's count loses."""
    deltas: Deltas = {}
    libs = ", ".join(str(int(x)) for x in libraries)
    for order, ids in ((lib.SONGS, "jt"), (lib.ALBUMS, "ja")):
        items = f"SELECT id FROM temp.{ids}"
        for library, kind, key, n in conn.execute(
            f"SELECT lib, kind, key, count(*) FROM {order.by_item}"
            f" WHERE {order.item} IN ({items}) AND lib IN ({libs}) GROUP BY lib, kind, key"
        ):
            deltas[(library, order.what, kind, key)] = -int(n)
    for order, ids in ((lib.SONGS, "jt"), (lib.ALBUMS, "ja"), (lib.ARTISTS, "jr")):
        items = f"SELECT id FROM temp.{ids}"
        rank.touch_rows(conn, order, items, libs)
        conn.execute(
            f"DELETE FROM {order.by_item} WHERE {order.item} IN ({items}) AND lib IN ({libs})"
        )
    conn.execute(
        f"DELETE FROM artist_albums WHERE lib IN ({libs}) AND artist_id IN (SELECT id FROM temp.jr)"
    )
    return deltas


def _come_back(conn: sqlite3.Connection, library: int, deltas: Deltas) -> None:
    """The rows of the items concerned that ``library`` lists now, placed in its lists."""
    if library == lib.PLAYABLE:
        tracks = (
            "SELECT p.track_id AS id, t.album_id FROM temp.jt j"
            " CROSS JOIN playable p ON p.track_id = j.id CROSS JOIN c.tracks t ON t.id = j.id"
        )
        albums = (
            "SELECT a.* FROM temp.ja j CROSS JOIN album_stats s ON s.album_id = j.id"
            " CROSS JOIN c.albums a ON a.id = j.id WHERE s.playable > 0"
        )
        listed = "SELECT 1 FROM album_stats s WHERE s.album_id = aa.album_id AND s.playable > 0"
        own = "EXISTS (SELECT 1 FROM playable p WHERE p.track_id = ta.track_id)"
    else:
        tracks = "SELECT t.id, t.album_id FROM temp.jt j CROSS JOIN c.tracks t ON t.id = j.id"
        albums = "SELECT a.* FROM temp.ja j CROSS JOIN c.albums a ON a.id = j.id"
        listed = "SELECT 1 FROM c.albums a WHERE a.id = aa.album_id"
        own = "1"
    for order, rows in ((lib.SONGS, lib.song_rows(tracks)), (lib.ALBUMS, lib.album_rows(albums))):
        for kind, source in rows:
            lib.insert_rows(conn, order, library, kind, source, full=False)
            for key, n in conn.execute(
                f"SELECT key, count(*) FROM {order.ranked} WHERE lib = ? AND kind = ?"
                " AND blk IS NULL GROUP BY key",
                (library, kind),
            ):
                k = (library, order.what, kind, key)
                deltas[k] = deltas.get(k, 0) + int(n)
            rank.place(conn, order, library, kind)
    # An artist's albums: album-artist credits on the library's albums, and the albums
    # of its credits on the library's tracks.
    credits = f"""SELECT aa.artist_id, aa.album_id FROM temp.jr r
                      CROSS JOIN c.album_artists aa ON aa.artist_id = r.id
                      WHERE EXISTS ({listed})
                  UNION
                  SELECT ta.artist_id, t.album_id FROM temp.jr r
                      CROSS JOIN c.track_artists ta ON ta.artist_id = r.id
                      CROSS JOIN c.tracks t ON t.id = ta.track_id
                  WHERE t.album_id IS NOT NULL AND {own}"""
    lib.artist_albums(conn, library, credits)
    lib.insert_rows(
        conn, lib.ARTISTS, library, 0, lib.artist_rows(library, "SELECT id FROM temp.jr"), False
    )
    rank.place(conn, lib.ARTISTS, library, 0)
