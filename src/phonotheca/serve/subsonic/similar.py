"""``getSimilarSongs`` and ``getSimilarSongs2``: songs by the same artists and of the same
genres, those this server can play first.

The catalog holds no similarity data (no Last.fm), so "similar" to a song, an album or an
artist (any id, for both calls) means:

- **the same artists**: the artists credited on the song (or the album, or the artist
  asked for), up to :data:`SEED_ARTISTS` of them; their tracks are read from the
  ``track_artists_artist`` index, in a few windows at random places of each artist's
  range (all of them when the artist has few), never the whole range;
- **the same genres**: the song's genres (its own, else its album's; an album's; for an
  artist, those of a few of its tracks), up to :data:`SEED_GENRES`. The catalog has no
  index from a genre to its tracks, so candidates are drawn at random, a bounded number
  of times: among the tracks of the collections this server holds (seeks in the
  ``ledger_collection`` index), then, when those gave too few, over the whole catalog
  (rowids are dense: a draw is one primary-key lookup); they are kept when their genres
  match (primary-key lookups in ``track_genres``/``album_genres``). A genre rare among
  the draws gives few songs: the artists' fill the list.

Playable tracks come first, the same-artist and same-genre ones taken in turn so that
neither crowds out the other, in random order; then the others, unless the call names
the "In this mirror" music folder (``musicFolderId``, which the API does not define for
these calls; without it, the whole catalog): then only the playable ones, fewer than
``count`` when this server holds few of them. ``count`` (default 50)
is capped at :data:`MAX_COUNT`. Every query is a bounded index range or a bounded set
of key lookups: the cost depends on ``count``, never on the size of the catalog.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from phonotheca.catalog.library import PLAYABLE
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import song_items
from phonotheca.serve.subsonic.call import Call, Handler, split_id
from phonotheca.serve.subsonic.envelope import NOT_FOUND, Payload, SubsonicError
from phonotheca.serve.subsonic.folders import named_library, server_library

DEFAULT_COUNT = 50
MAX_COUNT = 500
SEED_ARTISTS = 4
SEED_GENRES = 3
GENRE_SAMPLE = 20
"""Tracks of an artist (or an album without genres of its own) whose genres are looked at."""
WINDOWS = 4
"""Places in an artist's range of tracks from which its candidates are read."""
MAX_DRAWS = 512
"""Random tracks drawn for the genre candidates, per pool (held here, whole catalog)."""
RUN = 4
"""Tracks read from each random place of a collection held here."""
FOLDER_FACTOR = 4
"""How many times more same-artist candidates are read in the "In this mirror" folder,
where only the playable ones count: still a bounded number of index windows."""


@dataclass
class Seed:
    """What the songs are to be similar to."""

    artists: list[int] = field(default_factory=list)
    genres: list[int] = field(default_factory=list)
    exclude: set[int] = field(default_factory=set)
    """Tracks never returned (the song asked about)."""


def _column(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[int]:
    return [int(r[0]) for r in conn.execute(sql, params)]


def _genres_of_tracks(conn: sqlite3.Connection, track_ids: Sequence[int]) -> list[int]:
    """The most frequent genres of the tracks (each track's own, else its album's)."""
    counts: Counter[int] = Counter()
    for tid in track_ids:
        own = _column(conn, "SELECT genre_id FROM track_genres WHERE track_id = ?", (tid,))
        if not own:
            own = _column(
                conn,
                "SELECT g.genre_id FROM tracks t JOIN album_genres g ON g.album_id = t.album_id"
                " WHERE t.id = ?",
                (tid,),
            )
        counts.update(own)
    return [g for g, _ in counts.most_common(SEED_GENRES)]


def _seed(call: Call) -> Seed:
    raw = call.require("id")
    kind, public_id = split_id(raw)
    conn = call.conn
    table = {"track": "tracks", "album": "albums", "artist": "artists"}[kind]
    rowid = items.rowid_of(conn, table, public_id)
    if rowid is None:
        raise SubsonicError(NOT_FOUND, f"no {kind} with id {public_id!r} in this catalog")
    if kind == "track":
        artists = _column(
            conn,
            "SELECT artist_id FROM track_artists WHERE track_id = ? ORDER BY position LIMIT ?",
            (rowid, SEED_ARTISTS),
        )
        return Seed(artists, _genres_of_tracks(conn, [rowid]), {rowid})
    if kind == "album":
        artists = _column(
            conn,
            "SELECT artist_id FROM album_artists WHERE album_id = ? ORDER BY position LIMIT ?",
            (rowid, SEED_ARTISTS),
        )
        genres = _column(
            conn,
            "SELECT genre_id FROM album_genres WHERE album_id = ? LIMIT ?",
            (rowid, SEED_GENRES),
        )
        if not genres:
            sample = _column(
                conn, "SELECT id FROM tracks WHERE album_id = ? LIMIT ?", (rowid, GENRE_SAMPLE)
            )
            genres = _genres_of_tracks(conn, sample)
        return Seed(artists, genres)
    sample = _column(
        conn,
        "SELECT track_id FROM track_artists WHERE artist_id = ? LIMIT ?",
        (rowid, GENRE_SAMPLE),
    )
    return Seed([rowid], _genres_of_tracks(conn, sample))


# -- the same artists ------------------------------------------------------------------------

_BY_ARTIST = (
    "SELECT track_id FROM track_artists WHERE artist_id = ? AND track_id {op} ?"
    " ORDER BY track_id {order} LIMIT ?"
)


def _artist_tracks(
    conn: sqlite3.Connection, artist_id: int, n: int, rng: random.Random
) -> list[int]:
    """Up to ``n`` of the artist's tracks: all of them when it has no more than ``n``,
    else runs read from :data:`WINDOWS` random places of its range in the index."""
    first = _column(conn, _BY_ARTIST.format(op=">=", order=""), (artist_id, -1, n + 1))
    if len(first) <= n:
        return first
    last = _column(conn, _BY_ARTIST.format(op="<=", order="DESC"), (artist_id, 1 << 62, 1))
    low, high = first[0], last[0]
    found: dict[int, None] = {}
    per_window = -(-n // WINDOWS)
    for _ in range(WINDOWS):
        start = rng.randint(low, high)
        run = _column(conn, _BY_ARTIST.format(op=">=", order=""), (artist_id, start, per_window))
        if len(run) < per_window:  # the end of the range: go on from its start
            run += _column(
                conn,
                _BY_ARTIST.format(op="<", order=""),
                (artist_id, start, per_window - len(run)),
            )
        found.update(dict.fromkeys(run))
        if len(found) >= n:
            break
    return list(found)[:n]


# -- the same genres -------------------------------------------------------------------------


def _in_genres(
    conn: sqlite3.Connection, candidates: Sequence[int], genres: Sequence[int]
) -> set[int]:
    """Those of ``candidates`` (rowids, existing or not) of one of ``genres``: a few
    primary-key lookups per candidate."""
    unique = list(dict.fromkeys(candidates))
    if not unique or not genres:
        return set()
    tracks = ",".join("?" * len(unique))
    marks = ",".join("?" * len(genres))
    rows = conn.execute(
        f"""SELECT t.id FROM tracks t WHERE t.id IN ({tracks}) AND (
                EXISTS (SELECT 1 FROM track_genres x
                        WHERE x.track_id = t.id AND x.genre_id IN ({marks}))
                OR (NOT EXISTS (SELECT 1 FROM track_genres x WHERE x.track_id = t.id)
                    AND EXISTS (SELECT 1 FROM album_genres y
                                WHERE y.album_id = t.album_id AND y.genre_id IN ({marks}))))""",
        (*unique, *genres, *genres),
    )
    return {int(r[0]) for r in rows}


def _catalog_draws(conn: sqlite3.Connection, n: int, rng: random.Random) -> list[int]:
    """``n`` rowids drawn uniformly between the first and last track's (rowids are dense:
    the rare hole is a draw that matches nothing)."""
    # Two queries: SQLite reads min() or max() alone from one end of the rowid B-tree.
    (low,) = conn.execute("SELECT min(id) FROM tracks").fetchone()
    (high,) = conn.execute("SELECT max(id) FROM tracks").fetchone()
    if low is None or high is None:
        return []
    return [rng.randint(int(low), int(high)) for _ in range(n)]


_HELD_END = (
    "SELECT track_id FROM ledger INDEXED BY ledger_collection WHERE collection = ?"
    " ORDER BY track_id {order} LIMIT 1"
)
_HELD_RUN = (
    "SELECT track_id FROM ledger INDEXED BY ledger_collection"
    " WHERE collection = ? AND track_id >= ? AND status = 'packed' ORDER BY track_id LIMIT ?"
)


def _held_draws(call: Call, n: int, rng: random.Random) -> list[int]:
    """About ``n`` tracks of the collections this server holds, in runs of :data:`RUN`
    from random places: a collection by its number of tracks, then a track id between its
    first and last, found by one seek in the ``ledger_collection`` index. (Not uniform
    like :meth:`PlayableSampler.draw`, whose ``OFFSET`` walks half a collection per draw:
    a mix of similar songs needs variety, not exact odds.)"""
    held = call.ctx.media.sampler.candidates()
    if not held.total:
        return []
    conn = call.conn
    ends: dict[str, tuple[int, int]] = {}
    found: list[int] = []
    for _ in range(-(-n // RUN)):
        name, _ = held.locate(rng.randrange(held.total))
        if name not in ends:
            first = conn.execute(_HELD_END.format(order="ASC"), (name,)).fetchone()
            last = conn.execute(_HELD_END.format(order="DESC"), (name,)).fetchone()
            if first is None or last is None:
                continue  # the ledger changed since the listing
            ends[name] = (int(first[0]), int(last[0]))
        low, high = ends[name]
        found += _column(conn, _HELD_RUN, (name, rng.randint(low, high), RUN))
    return found


def _genre_tracks(
    call: Call, genres: Sequence[int], n: int, rng: random.Random, *, whole_catalog: bool = True
) -> list[int]:
    """Up to ``n`` tracks of the genres: drawn from the collections this server holds,
    then, when those gave too few (and ``whole_catalog``), over the whole catalog."""
    if not genres or n <= 0:
        return []
    conn = call.conn
    draws = min(MAX_DRAWS, 4 * n + 16)
    drawn = _held_draws(call, draws, rng)
    keep = _in_genres(conn, drawn, genres)
    found = [t for t in dict.fromkeys(drawn) if t in keep][:n]
    if len(found) < n and whole_catalog:
        drawn = _catalog_draws(conn, draws, rng)
        keep = _in_genres(conn, drawn, genres)
        found += [t for t in dict.fromkeys(drawn) if t in keep and t not in found]
    return found[:n]


# -- the answer --------------------------------------------------------------------------------


def _alternate(*lists: Iterable[int]) -> list[int]:
    """One of each list in turn, then the rest of the longer ones."""
    return [t for group in itertools.zip_longest(*lists) for t in group if t is not None]


def similar_track_ids(call: Call, count: int, rng: random.Random | None = None) -> list[int]:
    """Up to ``count`` rowids of tracks similar to the ``id`` of the call, playable first;
    in the "In this mirror" music folder, the playable ones only (:data:`FOLDER_FACTOR`
    times as many same-artist candidates are read; the same-genre ones are drawn from the
    collections held only)."""
    rng = rng or random.Random()
    seed = _seed(call)
    if count <= 0:
        return []
    conn = call.conn
    folder = named_library(call) == PLAYABLE
    # Twice as many same-artist candidates as needed: the playable ones come first.
    per_artist = -(-2 * (FOLDER_FACTOR if folder else 1) * count // max(1, len(seed.artists)))
    by_artist = list(
        dict.fromkeys(
            t
            for artist in seed.artists
            for t in _artist_tracks(conn, artist, per_artist, rng)
            if t not in seed.exclude
        )
    )
    by_genre = _genre_tracks(call, seed.genres, count, rng, whole_catalog=not folder)
    rng.shuffle(by_artist)
    rng.shuffle(by_genre)
    playable = call.ctx.media.playable_rowids([*by_artist, *by_genre])
    if folder:  # the folder's tracks: those of the collections held (primary-key lookups)
        listed = set(server_library(call).songs_in(PLAYABLE, [*by_artist, *by_genre]))
        by_artist = [t for t in by_artist if t in listed]
        by_genre = [t for t in by_genre if t in listed]
    # The same artists and the same genres in turn, so that neither crowds out the other.
    ordered = _alternate(
        [t for t in by_artist if t in playable], [t for t in by_genre if t in playable]
    ) + _alternate(
        [t for t in by_artist if t not in playable], [t for t in by_genre if t not in playable]
    )
    return [t for t in dict.fromkeys(ordered) if t not in seed.exclude][:count]


def _songs(call: Call) -> list[Payload]:
    count = call.count("count", DEFAULT_COUNT, MAX_COUNT)
    return song_items(call, similar_track_ids(call, count))


def get_similar_songs(call: Call) -> Payload:
    return {"similarSongs": {"song": _songs(call)}}


def get_similar_songs2(call: Call) -> Payload:
    return {"similarSongs2": {"song": _songs(call)}}


ENDPOINTS: dict[str, Handler] = {
    "getSimilarSongs": get_similar_songs,
    "getSimilarSongs2": get_similar_songs2,
}
