"""Catalog reads behind the pages and the JSON API: tracks, albums, artists, search, shuffle.

All lookups go by public id through the unique indexes, and every list is bounded, so a
page costs a few index probes whatever the catalog's size. Search and shuffle are the
CLI's engine (:mod:`phonotheca.catalog.search`); this module adds credits with artist ids
and whether this server can play each track.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from phonotheca.catalog import schema
from phonotheca.catalog import search as engine
from phonotheca.serve import listing
from phonotheca.serve.context import ServeContext
from phonotheca.serve.media import MediaLibrary, TrackMedia, durations
from phonotheca.serve.models import (
    Album,
    AlbumRef,
    AlbumSummary,
    Artist,
    ArtistCredit,
    Availability,
    Loudness,
    Track,
    TrackSummary,
)

MAX_ALBUM_TRACKS = 1000
MAX_ARTIST_ALBUMS = 200
MAX_GENRES = 20
ARTIST_TOP_TRACKS = 20


def track_url(track_id: str) -> str:
    return f"/tracks/{quote(track_id, safe='')}"


def album_url(album_id: str) -> str:
    return f"/albums/{quote(album_id, safe='')}"


def artist_url(artist_id: str) -> str:
    return f"/artists/{quote(artist_id, safe='')}"


def genre_url(name: str) -> str:
    return f"/genres/{quote(name, safe='')}"


def audio_url(track_id: str) -> str:
    return f"{track_url(track_id)}/audio"


def cover_url(album_id: str) -> str:
    return f"{album_url(album_id)}/cover"


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _credits(
    conn: sqlite3.Connection, table: str, key: str, ids: Sequence[int]
) -> dict[int, list[ArtistCredit]]:
    """Artists of each track or album, in credit order (``table`` is ours, not user text)."""
    out: dict[int, list[ArtistCredit]] = {}
    if not ids:
        return out
    for owner, artist_id, name, join in conn.execute(
        f"SELECT c.{key}, ar.public_id, coalesce(c.credited_as, ar.name), c.join_phrase"
        f" FROM {table} c JOIN artists ar ON ar.id = c.artist_id"
        f" WHERE c.{key} IN ({_marks(len(ids))}) ORDER BY c.{key}, c.position",
        list(ids),
    ):
        out.setdefault(owner, []).append(ArtistCredit(id=artist_id, name=name, join_phrase=join))
    return out


_SUMMARY_COLUMNS = """
    t.id, t.public_id, t.title, t.artist_credit, a.public_id, a.title, t.disc_number,
    t.track_number, t.duration_ms, t.isrc, t.popularity, t.listens, t.explicit
"""
_SUMMARY_SQL = f"SELECT {_SUMMARY_COLUMNS} FROM tracks t LEFT JOIN albums a ON a.id = t.album_id"
# The same columns for search hits, by their rank keys (the key last).
_HITS_SQL = (
    f"SELECT {_SUMMARY_COLUMNS}, r.key FROM search_rank r JOIN tracks t ON t.id = r.track_id"
    " LEFT JOIN albums a ON a.id = t.album_id WHERE r.key IN ({marks})"
)


@dataclass(frozen=True)
class SearchPage:
    """One keyset page of search hits, with the rank keys its neighbours start from."""

    tracks: list[TrackSummary]
    before: int | None
    """The key the previous page ends before (None on the first page)."""
    after: int | None
    """The key the next page starts after (None on the last page)."""


def _loudness(media: TrackMedia | None) -> Loudness | None:
    fields = media.loudness() if media is not None else None
    return None if fields is None else Loudness.model_validate(fields)


class Browser:
    """Builds the API models from the catalog for one server."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.media: MediaLibrary = ctx.media

    def conn(self) -> sqlite3.Connection:
        return self.ctx.catalog()

    # -- tracks ------------------------------------------------------------------------------

    def _summaries(self, rows: list[tuple[object, ...]]) -> list[TrackSummary]:
        conn = self.conn()
        credits = _credits(conn, "track_artists", "track_id", [int(r[0]) for r in rows])  # type: ignore[call-overload]
        media_of = self.media.locate_many([str(r[1]) for r in rows])
        out = []
        for r in rows:
            public_id = str(r[1])
            media = media_of.get(public_id)
            playable = media is not None and media.playable
            swarm = media is not None and media.swarm
            duration, catalog_duration = durations(
                r[8],  # type: ignore[arg-type]
                media.duration_ms if media is not None else None,
            )
            out.append(
                TrackSummary(
                    id=public_id,
                    title=str(r[2]),
                    artist_credit=str(r[3] or ""),
                    artists=credits.get(int(r[0]), []),  # type: ignore[call-overload]
                    album=AlbumRef(id=str(r[4]), title=str(r[5])) if r[4] is not None else None,
                    disc_number=r[6],  # type: ignore[arg-type]
                    track_number=r[7],  # type: ignore[arg-type]
                    duration_ms=duration,
                    catalog_duration_ms=catalog_duration,
                    isrc=r[9],  # type: ignore[arg-type]
                    popularity=r[10],  # type: ignore[arg-type]
                    listens=r[11],  # type: ignore[arg-type]
                    playable=playable,
                    swarm=swarm,
                    audio_url=audio_url(public_id) if playable or swarm else None,
                    loudness=_loudness(media),
                )
            )
        return out

    def tracks_by_public_id(self, public_ids: Sequence[str]) -> list[TrackSummary]:
        """Summaries in the order given (repeats kept, unknown ids left out)."""
        unique = list(dict.fromkeys(public_ids))
        if not unique:
            return []
        rows = (
            self.conn()
            .execute(f"{_SUMMARY_SQL} WHERE t.public_id IN ({_marks(len(unique))})", unique)
            .fetchall()
        )
        by_id = {s.id: s for s in self._summaries(rows)}
        return [by_id[p] for p in public_ids if p in by_id]

    def tracks_by_rowid(self, rowids: Sequence[int]) -> list[TrackSummary]:
        """:meth:`tracks_by_public_id` for catalog rowids."""
        by_rowid = self.summaries_by_rowid(rowids)
        return [by_rowid[r] for r in rowids if r in by_rowid]

    def summaries_by_rowid(self, rowids: Sequence[int]) -> dict[int, TrackSummary]:
        """Summaries of the tracks of ``rowids`` that exist, by rowid."""
        unique = list(dict.fromkeys(rowids))
        if not unique:
            return {}
        rows = (
            self.conn()
            .execute(f"{_SUMMARY_SQL} WHERE t.id IN ({_marks(len(unique))})", unique)
            .fetchall()
        )
        return {int(r[0]): s for r, s in zip(rows, self._summaries(rows), strict=True)}

    def track(self, public_id: str) -> Track | None:
        row = self.conn().execute(f"{_SUMMARY_SQL} WHERE t.public_id = ?", (public_id,)).fetchone()
        if row is None:
            return None
        (summary,) = self._summaries([row])
        media = self.media.locate(public_id)
        album_id = summary.album.id if summary.album else None
        (album_rowid,) = (
            self.conn().execute("SELECT album_id FROM tracks WHERE id = ?", (row[0],)).fetchone()
        )
        return Track(
            **summary.model_dump(),
            explicit=None if row[12] is None else bool(row[12]),
            genres=self.genres(int(row[0]), album_rowid),
            availability=_availability(media),
            cover_url=cover_url(album_id) if album_id and self.media.cover(album_id) else None,
        )

    # -- search and shuffle ------------------------------------------------------------------

    def search(self, text: str, limit: int = 20, offset: int = 0) -> list[TrackSummary]:
        """Most popular matches first; the hits' rows read once, by rank key."""
        conn = self.conn()
        keys = engine.search_keys(conn, text, limit, offset)
        if not keys:
            return []
        by_key = {r[-1]: r for r in conn.execute(_HITS_SQL.format(marks=_marks(len(keys))), keys)}
        return self._summaries([by_key[k] for k in keys if k in by_key])

    def search_page(
        self, text: str, size: int, after: int | None = None, before: int | None = None
    ) -> SearchPage:
        """A keyset page of search hits: the ``size`` after the rank key ``after``, or
        before ``before``, or the first. Each page is one walk of the index from its
        bound (and a probe of one key the other way for the other link), at any depth."""
        conn = self.conn()
        bound = (
            engine.Bound(after)
            if after is not None
            else engine.Bound(before, after=False)
            if before is not None
            else None
        )
        keys = engine.search_keys(conn, text, size + 1, 0, bound=bound)
        forward = bound is None or bound.after
        more = len(keys) > size
        keys = keys[:size] if forward else keys[-size:]
        if not keys:
            return SearchPage([], None, None)

        def beyond(key: int, ahead: bool) -> bool:
            return bool(engine.search_keys(conn, text, 1, 0, bound=engine.Bound(key, ahead)))

        earlier = beyond(keys[0], False) if forward else more
        later = more if forward else beyond(keys[-1], True)
        by_key = {r[-1]: r for r in conn.execute(_HITS_SQL.format(marks=_marks(len(keys))), keys)}
        return SearchPage(
            self._summaries([by_key[k] for k in keys if k in by_key]),
            keys[0] if earlier else None,
            keys[-1] if later else None,
        )

    def shuffle(
        self, n: int, rng: random.Random | None = None, *, playable: bool = False
    ) -> list[TrackSummary]:
        """``n`` tracks drawn uniformly over the catalog; with ``playable``, over the tracks
        this server can play (:mod:`phonotheca.serve.playable`): fewer, or none, when it
        holds few or none."""
        if not playable:
            hits = engine.shuffle(self.conn(), n, rng)
            return self.tracks_by_public_id([h.id for h in hits])
        return self.tracks_by_rowid(self.media.sampler.draw(n, rng) or [])

    # -- albums and artists ------------------------------------------------------------------

    def album(self, public_id: str) -> Album | None:
        conn = self.conn()
        row = conn.execute(
            "SELECT id, public_id, title, artist_credit, release_date, album_type, label, upc,"
            " catalog_number, country, total_tracks, total_discs FROM albums WHERE public_id = ?",
            (public_id,),
        ).fetchone()
        if row is None:
            return None
        track_rows = conn.execute(
            f"{_SUMMARY_SQL} WHERE t.album_id = ? {schema.ALBUM_ORDER} LIMIT ?",
            (row[0], MAX_ALBUM_TRACKS),
        ).fetchall()
        tracks = self._summaries(track_rows)
        credits = _credits(conn, "album_artists", "album_id", [row[0]])
        return Album(
            id=row[1],
            title=row[2],
            artist_credit=row[3] or "",
            release_date=row[4],
            album_type=row[5],
            label=row[6],
            upc=row[7],
            catalog_number=row[8],
            country=row[9],
            total_tracks=row[10],
            total_discs=row[11],
            cover_url=cover_url(row[1]) if self.media.cover(row[1]) else None,
            artists=credits.get(row[0], []),
            genres=self.genres(None, row[0]),
            duration_ms=sum(t.duration_ms or 0 for t in tracks),
            tracks=tracks,
        )

    def albums_by_rowid(self, rowids: Sequence[int]) -> list[AlbumSummary]:
        """Album summaries in the order given (unknown ids left out): one seek each."""
        unique = list(dict.fromkeys(rowids))
        if not unique:
            return []
        rows = self.conn().execute(
            "SELECT a.id, a.public_id, a.title, a.artist_credit, a.release_date, a.album_type,"
            " EXISTS(SELECT 1 FROM images i WHERE i.album_id = a.id"
            "        AND i.blob_sha256 IS NOT NULL)"
            f" FROM albums a WHERE a.id IN ({_marks(len(unique))})",
            unique,
        )
        by_rowid = {
            int(r[0]): AlbumSummary(
                id=r[1],
                title=r[2],
                artist_credit=r[3] or "",
                release_date=r[4],
                album_type=r[5],
                cover_url=cover_url(r[1]) if r[6] else None,
            )
            for r in rows
        }
        return [by_rowid[r] for r in rowids if r in by_rowid]

    def genres(self, track_rowid: int | None, album_rowid: int | None) -> list[str]:
        """A track's genres (its own, else its album's; ``track_rowid`` None: the album's),
        by genre id: what the songs-by-genre lists count it under (FORMAT.md §14.1)."""
        conn = self.conn()
        for table, key, owner in (
            ("track_genres", "track_id", track_rowid),
            ("album_genres", "album_id", album_rowid),
        ):
            if owner is None:
                continue
            names = [
                str(r[0])
                for r in conn.execute(
                    f"SELECT g.name FROM {table} x JOIN genres g ON g.id = x.genre_id"
                    f" WHERE x.{key} = ? ORDER BY x.genre_id LIMIT ?",
                    (owner, MAX_GENRES),
                )
            ]
            if names:
                return names
        return []

    def artist(self, public_id: str, at: int = 0, size: int = MAX_ARTIST_ALBUMS) -> Artist | None:
        """The artist with its albums at positions ``[at, at + size)`` of its prepared
        list (:mod:`phonotheca.serve.listing`): one index range at any depth. Its most
        popular tracks (prepared too) come with the first page only."""
        conn = self.conn()
        row = conn.execute(
            "SELECT id, public_id, name, sort_name, disambiguation FROM artists"
            " WHERE public_id = ?",
            (public_id,),
        ).fetchone()
        if row is None:
            return None
        total = listing.artist_album_count(self.ctx, row[0])
        albums = self.albums_by_rowid(listing.artist_albums(self.ctx, row[0], at, size))
        top = listing.artist_top(self.ctx, row[0], ARTIST_TOP_TRACKS) if at == 0 else []
        return Artist(
            id=row[1],
            name=row[2],
            sort_name=row[3],
            disambiguation=row[4],
            album_count=total,
            albums_offset=at,
            albums=albums,
            top_tracks=self.tracks_by_rowid(top),
        )


def _availability(media: TrackMedia | None) -> Availability:
    if media is None:
        return Availability(playable=False, reason="not_archived")
    return Availability(
        playable=media.playable,
        reason=media.reason,
        swarm=media.swarm,
        collection=media.collection,
        torrent=media.torrent,
        codec=media.codec,
        bitrate=media.bitrate,
        size=media.length or None,
        content_type=media.content_type if media.collection else None,
    )
