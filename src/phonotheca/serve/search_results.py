"""``GET /api/v1/search``'s answer, from the index's rank keys straight to JSON bytes.

Search is the request a server answers most (every key typed in a search box), so this
path does the least work that gives the documented ``SearchResults``
(:mod:`phonotheca.serve.models`): one query for the hits' track and album columns (by
rank key), one for their credits, one for where their audio is, then one ``msgspec``
encode of plain structs. :class:`~phonotheca.serve.browse.Browser` builds the same
results as pydantic models for the HTML pages; going through it here cost twice the
queries (the engine's hits, then the summaries again by public id) and a validation of
every field (measured at 10 M tracks: 0.53 ms of catalog and Python work per request,
0.36 ms here).

The structs below mirror the pydantic models field for field, in the same order, so the
bytes are those of ``SearchResults.model_dump_json()`` (tests/serve/test_search_results.py
compares them)."""

from __future__ import annotations

import sqlite3

import msgspec

from phonotheca.catalog import search as engine
from phonotheca.serve import playlists
from phonotheca.serve.browse import audio_url
from phonotheca.serve.context import ServeContext
from phonotheca.serve.media import MediaLibrary, durations


class _ArtistCredit(msgspec.Struct):
    id: str
    name: str
    join_phrase: str


class _AlbumRef(msgspec.Struct):
    id: str
    title: str


class _Loudness(msgspec.Struct):
    integrated_lufs: float
    true_peak_dbtp: float | None
    range_lu: float | None
    album_lufs: float | None
    album_true_peak_dbtp: float | None
    track_gain_db: float
    album_gain_db: float | None


class _TrackSummary(msgspec.Struct):
    id: str
    title: str
    artist_credit: str
    artists: list[_ArtistCredit]
    album: _AlbumRef | None
    disc_number: int | None
    track_number: int | None
    duration_ms: int | None
    catalog_duration_ms: int | None
    isrc: str | None
    popularity: int | None
    listens: int | None
    playable: bool
    swarm: bool
    audio_url: str | None
    loudness: _Loudness | None


class _PlaylistSummary(msgspec.Struct):
    id: str
    title: str
    creator: str | None
    annotation: str | None
    created: str | None
    identifier: str | None
    entry_count: int
    matched_count: int
    duration_ms: int | None


class _SearchResults(msgspec.Struct):
    query: str
    offset: int
    limit: int
    tracks: list[_TrackSummary]
    playlists: list[_PlaylistSummary]
    next_after: int | None


_ENCODER = msgspec.json.Encoder()

# The columns of browse._SUMMARY_SQL, selected by rank key instead of public id.
_ROWS_SQL = """
    SELECT r.key, t.id, t.public_id, t.title, t.artist_credit, a.public_id, a.title,
           t.disc_number, t.track_number, t.duration_ms, t.isrc, t.popularity, t.listens
    FROM search_rank r JOIN tracks t ON t.id = r.track_id
    LEFT JOIN albums a ON a.id = t.album_id
    WHERE r.key IN ({marks})
"""
_CREDITS_SQL = """
    SELECT c.track_id, ar.public_id, coalesce(c.credited_as, ar.name), c.join_phrase
    FROM track_artists c JOIN artists ar ON ar.id = c.artist_id
    WHERE c.track_id IN ({marks}) ORDER BY c.track_id, c.position
"""


def _marks(n: int) -> str:
    return ",".join("?" * n)


def search_json(
    ctx: ServeContext, text: str, limit: int, offset: int, after: int | None = None
) -> bytes:
    """The JSON body of ``SearchResults`` for ``text``: most popular matches first, from
    ``offset`` (past the rank key ``after``, when given: a keyset page).

    Uses the calling thread's catalog connection. The first page has the matching
    playlists too (:data:`~phonotheca.serve.playlists.SEARCH_HITS` at most).
    """
    conn = ctx.catalog()
    bound = engine.Bound(after) if after is not None else None
    keys = engine.search_keys(conn, text, limit, offset, bound=bound)
    tracks = _tracks(conn, ctx.media, keys)
    first = offset == 0 and after is None
    found = playlists.search(conn, text) if first else []
    listed = [
        _PlaylistSummary(
            p.public_id,
            p.title,
            p.creator,
            p.annotation,
            p.created,
            p.identifier,
            p.entries,
            p.matched,
            p.duration_ms,
        )
        for p in found
    ]
    return _ENCODER.encode(
        _SearchResults(
            query=text,
            offset=offset,
            limit=limit,
            tracks=tracks,
            playlists=listed,
            next_after=keys[-1] if keys and len(keys) == limit else None,
        )
    )


def _tracks(conn: sqlite3.Connection, media: MediaLibrary, keys: list[int]) -> list[_TrackSummary]:
    if not keys:
        return []
    by_key = {r[0]: r for r in conn.execute(_ROWS_SQL.format(marks=_marks(len(keys))), keys)}
    rows = [by_key[k] for k in keys if k in by_key]
    if not rows:
        return []
    track_ids = [r[1] for r in rows]
    credits: dict[int, list[_ArtistCredit]] = {}
    for owner, artist_id, name, join in conn.execute(
        _CREDITS_SQL.format(marks=_marks(len(track_ids))), track_ids
    ):
        credits.setdefault(owner, []).append(_ArtistCredit(artist_id, name, join))
    located = media.locate_many([str(r[2]) for r in rows])
    out = []
    for r in rows:
        public_id = str(r[2])
        found = located.get(public_id)
        playable = found is not None and found.playable
        swarm = found is not None and found.swarm
        duration, catalog_duration = durations(r[9], found.duration_ms if found else None)
        out.append(
            _TrackSummary(
                id=public_id,
                title=str(r[3]),
                artist_credit=str(r[4] or ""),
                artists=credits.get(r[1], []),
                album=_AlbumRef(str(r[5]), str(r[6])) if r[5] is not None else None,
                disc_number=r[7],
                track_number=r[8],
                duration_ms=duration,
                catalog_duration_ms=catalog_duration,
                isrc=r[10],
                popularity=r[11],
                listens=r[12],
                playable=playable,
                swarm=swarm,
                audio_url=audio_url(public_id) if playable or swarm else None,
                loudness=_loudness(found.loudness() if found else None),
            )
        )
    return out


def _loudness(fields: dict[str, float | None] | None) -> _Loudness | None:
    return None if fields is None else _Loudness(**fields)  # type: ignore[arg-type]
