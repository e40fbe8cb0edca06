"""Catalog rows as Subsonic items: songs (``Child``), albums (``AlbumID3``), artists.

Every function takes internal rowids, reads what it needs in a few set-based queries
(never one query per item), and returns dicts in the JSON shape of the API, in the order
asked. Ids are the public ids with a prefix: ``ar-``, ``al-``, ``tr-``.

Tracks without audio in this mirror are listed like the others: the size, format and
bitrate come from the ledger (what the archive packed), so a client sees the same song
everywhere; only ``stream`` tells whether the bytes are here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from phonotheca.serve.media import codec_type
from phonotheca.serve.subsonic.envelope import Payload

_CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def rows_in(conn: sqlite3.Connection, sql: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """``sql`` with ``{ids}`` replaced by placeholders, run per chunk of ``ids``."""
    out: list[tuple[Any, ...]] = []
    unique = list(dict.fromkeys(ids))
    for chunk in _chunks(unique):
        out.extend(conn.execute(sql.format(ids=",".join("?" * len(chunk))), tuple(chunk)))
    return out


def year_of(date: str | None) -> int | None:
    if date and date[:4].isdigit():
        return int(date[:4])
    return None


def item_date(date: str | None) -> Payload | None:
    """OpenSubsonic ``ItemDate``: ``{year, month, day}`` with the parts the date has."""
    if not date or not date[:4].isdigit():
        return None
    parts = date.split("-")
    out: Payload = {"year": int(parts[0])}
    for key, part in zip(("month", "day"), parts[1:3], strict=False):
        if part.isdigit():
            out[key] = int(part)
    return out


def _path_part(text: str) -> str:
    return text.replace("/", "_").strip() or "_"


def genres_of(
    conn: sqlite3.Connection, table: str, column: str, ids: Sequence[int]
) -> dict[int, list[str]]:
    """Genre names per item of ``track_genres`` or ``album_genres``."""
    out: dict[int, list[str]] = {}
    for owner, name in rows_in(
        conn,
        f"SELECT x.{column}, g.name FROM {table} x JOIN genres g ON g.id = x.genre_id"
        f" WHERE x.{column} IN ({{ids}}) ORDER BY x.{column}, g.name",
        ids,
    ):
        out.setdefault(owner, []).append(name)
    return out


def credits_of(
    conn: sqlite3.Connection, table: str, column: str, ids: Sequence[int]
) -> dict[int, list[tuple[str, str]]]:
    """(artist public id, name as credited) per item of ``track_artists``/``album_artists``."""
    out: dict[int, list[tuple[str, str]]] = {}
    for owner, public_id, name in rows_in(
        conn,
        f"SELECT x.{column}, ar.public_id, coalesce(x.credited_as, ar.name) FROM {table} x"
        f" JOIN artists ar ON ar.id = x.artist_id WHERE x.{column} IN ({{ids}})"
        f" ORDER BY x.{column}, x.position",
        ids,
    ):
        out.setdefault(owner, []).append((public_id, name))
    return out


def albums_with_cover(conn: sqlite3.Connection, album_ids: Sequence[int]) -> set[int]:
    """Albums with an image stored in the archive (a blob, possibly packed)."""
    return {
        r[0]
        for r in rows_in(
            conn,
            "SELECT DISTINCT album_id FROM images WHERE album_id IN ({ids})"
            " AND blob_sha256 IS NOT NULL",
            album_ids,
        )
    }


def _artist_refs(credits: list[tuple[str, str]]) -> list[Payload]:
    return [{"id": f"ar-{pid}", "name": name} for pid, name in credits]


# -- songs ---------------------------------------------------------------------------------

_SONG_SQL = """
    SELECT t.id, t.public_id, t.title, t.artist_credit, t.track_number, t.disc_number,
           t.duration_ms, CASE WHEN t.isrc_valid = 1 THEN t.isrc END, t.explicit, t.album_id,
           a.public_id, a.title,
           a.release_date, a.artist_credit, l.codec, l.bitrate, l.length
    FROM tracks t
    LEFT JOIN albums a ON a.id = t.album_id
    LEFT JOIN ledger l ON l.track_id = t.id AND l.status = 'packed'
    WHERE t.id IN ({ids})
"""


def songs(
    conn: sqlite3.Connection, track_ids: Sequence[int], starred: dict[str, str] | None = None
) -> list[Payload]:
    """``Child`` items for tracks (rowids), in the order given; unknown ids left out.

    ``starred`` maps track public ids to when the user starred them.
    """
    rows = {r[0]: r for r in rows_in(conn, _SONG_SQL, track_ids)}
    present = [t for t in track_ids if t in rows]
    artists = credits_of(conn, "track_artists", "track_id", present)
    album_ids = list({rows[t][9] for t in present if rows[t][9] is not None})
    album_artists = credits_of(conn, "album_artists", "album_id", album_ids)
    track_genres = genres_of(conn, "track_genres", "track_id", present)
    album_genres = genres_of(conn, "album_genres", "album_id", album_ids)
    covers = albums_with_cover(conn, album_ids)
    recordings = dict(
        rows_in(
            conn,
            "SELECT entity_id, value FROM external_ids WHERE entity = 'track'"
            " AND scheme = 'musicbrainz_recording' AND entity_id IN ({ids})",
            present,
        )
    )
    starred = starred or {}
    out = []
    for tid in present:
        (
            _,
            pid,
            title,
            credit,
            number,
            disc,
            duration_ms,
            isrc,
            explicit,
            album_id,
            album_pid,
            album_title,
            release_date,
            album_credit,
            codec,
            bitrate,
            length,
        ) = rows[tid]
        credits = artists.get(tid, [])
        genres = track_genres.get(tid) or album_genres.get(album_id, [])
        mime, suffix = codec_type(codec) if codec else (None, None)
        song: Payload = {
            "id": f"tr-{pid}",
            "parent": f"al-{album_pid}" if album_pid else None,
            "isDir": False,
            "title": title,
            "album": album_title,
            "artist": credit or None,
            "track": number,
            "year": year_of(release_date),
            "genre": genres[0] if genres else None,
            "coverArt": f"al-{album_pid}" if album_id in covers else None,
            "size": length,
            "contentType": mime,
            "suffix": suffix,
            "duration": (duration_ms + 500) // 1000 if duration_ms is not None else None,
            "bitRate": bitrate // 1000 if bitrate else None,
            "path": "/".join(
                [
                    _path_part(album_credit or credit or "Unknown artist"),
                    _path_part(album_title or "Unknown album"),
                    _path_part(f"{number:02d} - {title}" if number else title)
                    + (f".{suffix}" if suffix else ""),
                ]
            ),
            "discNumber": disc,
            "albumId": f"al-{album_pid}" if album_pid else None,
            "artistId": f"ar-{credits[0][0]}" if credits else None,
            "type": "music",
            "isVideo": False,
            "starred": starred.get(pid),
            # OpenSubsonic
            "mediaType": "song",
            "musicBrainzId": recordings.get(tid, ""),
            "isrc": [isrc] if isrc else [],
            "genres": [{"name": g} for g in genres],
            "artists": _artist_refs(credits),
            "displayArtist": credit or "",
            "albumArtists": _artist_refs(album_artists.get(album_id, [])),
            "displayAlbumArtist": album_credit or "",
            "explicitStatus": {1: "explicit", 0: "clean"}.get(explicit, ""),
        }
        out.append(song)
    return out


def track_rowids(conn: sqlite3.Connection, public_ids: Sequence[str]) -> list[int]:
    """Rowids of tracks by public id, in the order given (unknown ids left out)."""
    return rowids(conn, "tracks", public_ids)


def rowids(conn: sqlite3.Connection, table: str, public_ids: Sequence[str]) -> list[int]:
    """Rowids by public id in ``tracks``, ``albums`` or ``artists``, in the order given."""
    found = lookup(conn, table, public_ids)
    return [found[p] for p in public_ids if p in found]


def lookup(conn: sqlite3.Connection, table: str, public_ids: Sequence[str]) -> dict[str, int]:
    """Public id -> rowid of those of ``public_ids`` that exist in ``table``."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(public_ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            conn.execute(f"SELECT public_id, id FROM {table} WHERE public_id IN ({marks})", chunk)
        )
    return found


def rowid_of(conn: sqlite3.Connection, table: str, public_id: str) -> int | None:
    row = conn.execute(f"SELECT id FROM {table} WHERE public_id = ?", (public_id,)).fetchone()
    return None if row is None else int(row[0])


# -- albums --------------------------------------------------------------------------------


def albums(
    conn: sqlite3.Connection,
    album_ids: Sequence[int],
    created: str,
    starred: dict[str, str] | None = None,
) -> list[Payload]:
    """``AlbumID3`` items for albums (rowids), in the order given.

    ``created`` is when the server's catalog was made (the catalog does not record when
    an album was added, and the field is required).
    """
    rows = {
        r[0]: r
        for r in rows_in(
            conn,
            "SELECT id, public_id, title, artist_credit, release_date, album_type, label,"
            " original_release_date FROM albums WHERE id IN ({ids})",
            album_ids,
        )
    }
    present = [a for a in album_ids if a in rows]
    stats = {
        r[0]: (r[1], r[2])
        for r in rows_in(
            conn,
            "SELECT album_id, count(*), coalesce(sum(duration_ms), 0) FROM tracks"
            " WHERE album_id IN ({ids}) GROUP BY album_id",
            present,
        )
    }
    artists = credits_of(conn, "album_artists", "album_id", present)
    genres = genres_of(conn, "album_genres", "album_id", present)
    covers = albums_with_cover(conn, present)
    mbids = dict(
        rows_in(
            conn,
            "SELECT entity_id, value FROM external_ids WHERE entity = 'album'"
            " AND scheme = 'musicbrainz_release' AND entity_id IN ({ids})",
            present,
        )
    )
    starred = starred or {}
    out = []
    for aid in present:
        _, pid, title, credit, date, album_type, label, original = rows[aid]
        count, duration_ms = stats.get(aid, (0, 0))
        credits = artists.get(aid, [])
        names = genres.get(aid, [])
        album: Payload = {
            "id": f"al-{pid}",
            "name": title,
            "artist": credit or None,
            "artistId": f"ar-{credits[0][0]}" if credits else None,
            "coverArt": f"al-{pid}" if aid in covers else None,
            "songCount": count,
            "duration": (duration_ms + 500) // 1000,
            "created": created,
            "starred": starred.get(pid),
            "year": year_of(date),
            "genre": names[0] if names else None,
            # OpenSubsonic
            "musicBrainzId": mbids.get(aid, ""),
            "isCompilation": album_type == "compilation",
            "releaseTypes": [album_type.title()] if album_type else [],
            "recordLabels": [{"name": label}] if label else [],
            "genres": [{"name": g} for g in names],
            "artists": _artist_refs(credits),
            "displayArtist": credit or "",
            "releaseDate": item_date(date),
            "originalReleaseDate": item_date(original),
        }
        out.append(album)
    return out


def album_as_child(album: Payload, keys: Sequence[str], parent: str | None = None) -> Payload:
    """An album in the folder-shaped form older endpoints use (a directory ``child``:
    getAlbumList, search2, getStarred, getMusicDirectory), with ``keys`` of ``album``."""
    child: Payload = {
        "id": album["id"],
        "parent": parent or album["artistId"],
        "isDir": True,
        "title": album["name"],
        "album": album["name"],
        "artist": album["artist"],
    }
    child.update({key: album[key] for key in keys})
    return child


def album_track_ids(conn: sqlite3.Connection, album_id: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM tracks WHERE album_id = ?"
            " ORDER BY disc_number IS NULL, disc_number, track_number IS NULL, track_number, id",
            (album_id,),
        )
    ]


# -- artists -------------------------------------------------------------------------------


def artists(
    conn: sqlite3.Connection, artist_ids: Sequence[int], starred: dict[str, str] | None = None
) -> list[Payload]:
    """``ArtistID3`` items for artists (rowids), in the order given.

    ``albumCount`` counts the albums the artist is credited on as an album artist.
    """
    rows = {
        r[0]: r
        for r in rows_in(
            conn,
            "SELECT id, public_id, name, sort_name FROM artists WHERE id IN ({ids})",
            artist_ids,
        )
    }
    counts = dict(
        rows_in(
            conn,
            "SELECT artist_id, count(*) FROM album_artists WHERE artist_id IN ({ids})"
            " GROUP BY artist_id",
            list(rows),
        )
    )
    mbids = dict(
        rows_in(
            conn,
            "SELECT entity_id, value FROM external_ids WHERE entity = 'artist'"
            " AND scheme = 'musicbrainz_artist' AND entity_id IN ({ids})",
            list(rows),
        )
    )
    starred = starred or {}
    return [
        {
            "id": f"ar-{rows[a][1]}",
            "name": rows[a][2],
            "albumCount": counts.get(a, 0),
            "starred": starred.get(rows[a][1]),
            "musicBrainzId": mbids.get(a, ""),
            "sortName": rows[a][3] or "",
        }
        for a in artist_ids
        if a in rows
    ]


def artist_album_ids(conn: sqlite3.Connection, artist_id: int) -> list[int]:
    """Albums of an artist: credited as album artist, or on one of its tracks; by date."""
    return [
        r[0]
        for r in conn.execute(
            """SELECT a.id FROM albums a WHERE a.id IN (
                   SELECT album_id FROM album_artists WHERE artist_id = :a
                   UNION
                   SELECT t.album_id FROM track_artists ta JOIN tracks t ON t.id = ta.track_id
                   WHERE ta.artist_id = :a AND t.album_id IS NOT NULL)
               ORDER BY a.release_date IS NULL, a.release_date, a.title, a.id""",
            {"a": artist_id},
        )
    ]


def sort_key(name: str, articles: Sequence[str]) -> str:
    """A name without a leading article ("The Beatles" -> "beatles"), folded for sorting."""
    lowered = name.strip()
    for article in articles:
        if lowered.lower().startswith(article.lower() + " "):
            lowered = lowered[len(article) + 1 :]
            break
    return lowered.casefold()
