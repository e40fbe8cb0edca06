"""Songs (``Child`` items) read in one query answer what the per-field queries answered.

:func:`phonotheca.serve.subsonic.items.songs` reads a page of songs in one catalog query
(lists as JSON built by SQLite) and leaves out empty fields while building. The reference
below is the straightforward form it replaced: one query per kind of data, every field
set, ``None`` pruned by the envelope. Both are rendered as JSON and XML, on the fixture
archive's catalog with the cases the synthetic catalog lacks added: several artists,
genres and MusicBrainz ids per track, album genres standing in for a track's, covers,
tracks without an album, ledger rows and stars.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from phonotheca.catalog import schema
from phonotheca.serve.media import codec_type
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.envelope import Payload, render
from tests.serve_subsonic.conftest import Fixture


def _reference_songs(
    conn: sqlite3.Connection, track_ids: Sequence[int], starred: dict[str, str]
) -> list[Payload]:
    sql = """
        SELECT t.id, t.public_id, t.title, t.artist_credit, t.track_number, t.disc_number,
               coalesce(l.duration_ms, t.duration_ms),
               CASE WHEN t.isrc_valid = 1 THEN t.isrc END, t.explicit,
               t.album_id, a.public_id, a.title, a.release_date, a.artist_credit, l.codec,
               l.bitrate, l.length, l.loudness_lufs, l.true_peak_dbtp, al.loudness_lufs,
               al.true_peak_dbtp
        FROM tracks t
        LEFT JOIN albums a ON a.id = t.album_id
        LEFT JOIN ledger l ON l.track_id = t.id AND l.status = 'packed'
        LEFT JOIN album_loudness al ON al.album_id = t.album_id
        WHERE t.id IN ({ids})
    """
    rows = {r[0]: r for r in items.rows_in(conn, sql, track_ids)}
    present = [t for t in track_ids if t in rows]
    album_ids = list({rows[t][9] for t in present if rows[t][9] is not None})

    def credits(table: str, column: str, ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        out: dict[int, list[tuple[str, str]]] = {}
        for owner, pid, name in items.rows_in(
            conn,
            f"SELECT x.{column}, ar.public_id, coalesce(x.credited_as, ar.name) FROM {table} x"
            f" JOIN artists ar ON ar.id = x.artist_id WHERE x.{column} IN ({{ids}})"
            f" ORDER BY x.{column}, x.position",
            ids,
        ):
            out.setdefault(owner, []).append((pid, name))
        return out

    def genres(table: str, column: str, ids: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for owner, name in items.rows_in(
            conn,
            f"SELECT x.{column}, g.name FROM {table} x JOIN genres g ON g.id = x.genre_id"
            f" WHERE x.{column} IN ({{ids}}) ORDER BY x.{column}, g.name",
            ids,
        ):
            out.setdefault(owner, []).append(name)
        return out

    track_artists = credits("track_artists", "track_id", present)
    album_artists = credits("album_artists", "album_id", album_ids)
    track_genres = genres("track_genres", "track_id", present)
    album_genres = genres("album_genres", "album_id", album_ids)
    covers = {
        r[0]
        for r in items.rows_in(
            conn,
            "SELECT album_id FROM images WHERE album_id IN ({ids}) AND blob_sha256 IS NOT NULL",
            album_ids,
        )
    }
    recordings = dict(
        items.rows_in(
            conn,
            "SELECT entity_id, value FROM external_ids WHERE entity = 'track'"
            " AND scheme = 'musicbrainz_recording' AND entity_id IN ({ids})"
            " ORDER BY entity_id, value",
            present,
        )
    )

    def refs(found: list[tuple[str, str]]) -> list[Payload]:
        return [{"id": f"ar-{pid}", "name": name} for pid, name in found]

    def part(text: str) -> str:
        return text.replace("/", "_").strip() or "_"

    out = []
    for tid in present:
        row = rows[tid]
        (_, pid, title, credit, number, disc, duration_ms, isrc, explicit, album_id) = row[:10]
        (album_pid, album_title, date, album_credit, codec, bitrate, length) = row[10:17]
        (lufs, peak, album_lufs, album_peak) = row[17:]
        artists = track_artists.get(tid, [])
        names = track_genres.get(tid) or album_genres.get(album_id, [])
        mime, suffix = codec_type(codec) if codec else (None, None)
        name = f"{number:02d} - {title}" if number else title
        out.append(
            {
                "id": f"tr-{pid}",
                "parent": f"al-{album_pid}" if album_pid else None,
                "isDir": False,
                "title": title,
                "album": album_title,
                "artist": credit or None,
                "track": number,
                "year": int(date[:4]) if date and date[:4].isdigit() else None,
                "genre": names[0] if names else None,
                "coverArt": f"al-{album_pid}" if album_id in covers else None,
                "size": length,
                "contentType": mime,
                "suffix": suffix,
                "duration": (duration_ms + 500) // 1000 if duration_ms is not None else None,
                "bitRate": bitrate // 1000 if bitrate else None,
                "path": "/".join(
                    [
                        part(album_credit or credit or "Unknown artist"),
                        part(album_title or "Unknown album"),
                        part(name) + (f".{suffix}" if suffix else ""),
                    ]
                ),
                "discNumber": disc,
                "albumId": f"al-{album_pid}" if album_pid else None,
                "artistId": f"ar-{artists[0][0]}" if artists else None,
                "type": "music",
                "isVideo": False,
                "starred": starred.get(pid),
                "mediaType": "song",
                "musicBrainzId": recordings.get(tid, ""),
                "isrc": [isrc] if isrc else [],
                "genres": [{"name": g} for g in names],
                "artists": refs(artists),
                "displayArtist": credit or "",
                "albumArtists": refs(album_artists.get(album_id, [])),
                "displayAlbumArtist": album_credit or "",
                "explicitStatus": {1: "explicit", 0: "clean"}.get(explicit, ""),
                "replayGain": None
                if lufs is None
                else {
                    "trackGain": round(-18 - lufs, 2),
                    "albumGain": None if album_lufs is None else round(-18 - album_lufs, 2),
                    "trackPeak": None if peak is None else round(10 ** (peak / 20), 6),
                    "albumPeak": None if album_peak is None else round(10 ** (album_peak / 20), 6),
                    "baseGain": 0,
                },
            }
        )
    return out


@pytest.fixture(scope="module")
def catalog(
    archive_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sqlite3.Connection]:
    """A copy of the fixture's catalog with every kind of song the items can show."""
    path = tmp_path_factory.mktemp("songs") / "catalog.sqlite3"
    source = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
    ids = [r[0] for r in target.execute("SELECT id FROM tracks ORDER BY id")]
    albums = [r[0] for r in target.execute("SELECT id FROM albums ORDER BY id")]
    artists = [r[0] for r in target.execute("SELECT id FROM artists ORDER BY id")]
    assert len(ids) >= 20 and len(albums) >= 4 and len(artists) >= 3
    with target:
        target.executemany(
            "INSERT OR IGNORE INTO genres(name) VALUES(?)",
            [("Zydeco",), ("Ambient",), ("Rock & Roll <live>",), ('"Jazz"',)],
        )
        genre = dict(target.execute("SELECT name, id FROM genres"))
        # Several genres (stored out of name order), or only the album's, or none.
        target.execute("DELETE FROM track_genres WHERE track_id IN (?, ?, ?)", ids[:3])
        target.executemany(
            "INSERT OR IGNORE INTO track_genres(track_id, genre_id) VALUES(?, ?)",
            [(ids[0], genre["Zydeco"]), (ids[0], genre["Ambient"]), (ids[0], genre['"Jazz"'])],
        )
        target.execute("DELETE FROM album_genres WHERE album_id = ?", (albums[0],))
        target.executemany(
            "INSERT OR IGNORE INTO album_genres(album_id, genre_id) VALUES(?, ?)",
            [(albums[1], genre["Rock & Roll <live>"]), (albums[1], genre["Ambient"])],
        )
        target.execute("UPDATE tracks SET album_id = ? WHERE id IN (?, ?)", (albums[1], *ids[1:3]))
        # Several credited artists, one credited under another name; a track with none.
        target.execute("DELETE FROM track_artists WHERE track_id IN (?, ?)", ids[3:5])
        target.executemany(
            "INSERT INTO track_artists(track_id, position, artist_id, credited_as)"
            " VALUES(?, ?, ?, ?)",
            [
                (ids[3], 2, artists[0], None),
                (ids[3], 0, artists[2], "Somebody & Co"),
                (ids[3], 1, artists[1], None),
            ],
        )
        target.execute("DELETE FROM album_artists WHERE album_id = ?", (albums[2],))
        target.executemany(
            "INSERT INTO album_artists(album_id, position, artist_id, credited_as)"
            " VALUES(?, ?, ?, ?)",
            [(albums[2], 1, artists[0], "X"), (albums[2], 0, artists[1], None)],
        )
        target.execute("UPDATE tracks SET album_id = ? WHERE id = ?", (albums[2], ids[5]))
        # No album; an album without a credit; odd titles and numbers.
        target.execute("UPDATE tracks SET album_id = NULL WHERE id IN (?, ?)", ids[6:8])
        target.execute("UPDATE albums SET artist_credit = '' WHERE id = ?", (albums[3],))
        target.execute("UPDATE tracks SET album_id = ? WHERE id = ?", (albums[3], ids[8]))
        target.execute(
            "UPDATE tracks SET title = ?, track_number = NULL, disc_number = NULL,"
            " duration_ms = NULL, explicit = 1, isrc = 'USRC17607839' WHERE id = ?",
            ("a/b \u00e9t\u00e9 <&>", ids[9]),
        )
        target.execute(
            "UPDATE tracks SET track_number = 0, explicit = 0, isrc = 'bad' WHERE id = ?",
            (ids[10],),
        )
        # MusicBrainz ids (two for one recording: the larger is shown), covers.
        target.executemany(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
            " VALUES('track', ?, ?, ?)",
            [
                (ids[0], "musicbrainz_recording", "bbbb"),
                (ids[0], "musicbrainz_recording", "aaaa"),
                (ids[1], "musicbrainz_recording", "cccc"),
                (ids[2], "discogs_track", "dddd"),
            ],
        )
        target.executemany(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
            " VALUES(?, ?, ?, ?)",
            [
                ("album", albums[1], "musicbrainz_release", "r2"),
                ("album", albums[1], "musicbrainz_release", "r1"),
                ("artist", artists[0], "musicbrainz_artist", "a1"),
                ("artist", artists[1], "musicbrainz_release", "not an artist id"),
            ],
        )
        target.execute(
            "UPDATE albums SET album_type = 'compilation', label = 'L & M', release_date = '1999',"
            " original_release_date = '1970-05-xx' WHERE id = ?",
            (albums[2],),
        )
        target.execute("UPDATE artists SET sort_name = NULL WHERE id = ?", (artists[2],))
        target.execute("UPDATE images SET blob_sha256 = NULL WHERE album_id = ?", (albums[3],))
        target.execute(
            "INSERT INTO images(album_id, position, kind, blob_sha256) VALUES(?, 9, 'back', ?)",
            (albums[1], "ab" * 32),
        )
    target.close()
    conn = schema.connect(path, readonly=True)
    try:
        yield conn
    finally:
        conn.close()


def _all_tracks(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM tracks ORDER BY id")]


def _stars(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[str, str]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT public_id FROM tracks WHERE id IN ({marks})", list(ids))
    return {r[0]: f"2026-01-0{i % 9 + 1}T00:00:00Z" for i, r in enumerate(rows)}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_songs_render_as_the_per_field_queries_did(catalog: sqlite3.Connection, fmt: str) -> None:
    ids = _all_tracks(catalog)
    order = [*ids[::-1], 10**9, ids[0]]  # any order, an unknown id, a repeat
    stars = _stars(catalog, ids[::3])

    def body(songs: list[Payload]) -> bytes:
        return bytes(render({"searchResult3": {"song": songs}}, fmt).body)

    new = items.songs(catalog, order, stars)
    assert body(new) == body(_reference_songs(catalog, order, stars))
    assert len(new) == len(ids) + 1


def test_stars_may_be_looked_up_for_the_songs_found(catalog: sqlite3.Connection) -> None:
    ids = _all_tracks(catalog)
    stars = _stars(catalog, ids[:2])
    asked: list[list[str]] = []

    def lookup(public_ids: list[str]) -> dict[str, str]:
        asked.append(public_ids)
        return {p: stars[p] for p in public_ids if p in stars}

    songs = items.songs(catalog, [*ids[:4], 10**9], lookup)
    assert len(asked) == 1 and len(asked[0]) == 4
    assert [s.get("starred") for s in songs] == [stars.get(s["id"][3:]) for s in songs]
    assert sum("starred" in s for s in songs) == 2
    assert items.songs(catalog, [10**9], lookup) == [] and len(asked) == 1


def test_songs_leave_out_empty_fields(catalog: sqlite3.Connection) -> None:
    """The shape the envelope writes, also for callers that read the items themselves."""

    def values(value: Any) -> Iterator[Any]:
        yield value
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            for child in children:
                yield from values(child)

    songs = items.songs(catalog, _all_tracks(catalog))
    assert all(v is not None for song in songs for v in values(song))
    assert any("album" not in s and "parent" not in s for s in songs)  # tracks without album


def _reference_albums(
    conn: sqlite3.Connection, album_ids: Sequence[int], stars: dict[str, str]
) -> list[Payload]:
    """Albums as the per-field queries read them."""
    out = []
    for aid in album_ids:
        row = conn.execute(
            "SELECT public_id, title, artist_credit, release_date, album_type, label,"
            " original_release_date FROM albums WHERE id = ?",
            (aid,),
        ).fetchone()
        if row is None:
            continue
        pid, title, credit, date, album_type, label, original = row
        count, duration_ms = conn.execute(
            "SELECT count(*), coalesce(sum(coalesce(l.duration_ms, t.duration_ms)), 0)"
            " FROM tracks t LEFT JOIN ledger l ON l.track_id = t.id AND l.status = 'packed'"
            " WHERE t.album_id = ?",
            (aid,),
        ).fetchone()
        credits = conn.execute(
            "SELECT ar.public_id, coalesce(x.credited_as, ar.name) FROM album_artists x"
            " JOIN artists ar ON ar.id = x.artist_id WHERE x.album_id = ? ORDER BY x.position",
            (aid,),
        ).fetchall()
        names = [
            r[0]
            for r in conn.execute(
                "SELECT g.name FROM album_genres x JOIN genres g ON g.id = x.genre_id"
                " WHERE x.album_id = ? ORDER BY g.name",
                (aid,),
            )
        ]
        cover = conn.execute(
            "SELECT 1 FROM images WHERE album_id = ? AND blob_sha256 IS NOT NULL", (aid,)
        ).fetchone()
        mbids = conn.execute(
            "SELECT value FROM external_ids WHERE entity = 'album'"
            " AND scheme = 'musicbrainz_release' AND entity_id = ? ORDER BY value",
            (aid,),
        ).fetchall()
        out.append(
            {
                "id": f"al-{pid}",
                "name": title,
                "artist": credit or None,
                "artistId": f"ar-{credits[0][0]}" if credits else None,
                "coverArt": f"al-{pid}" if cover else None,
                "songCount": count,
                "duration": (duration_ms + 500) // 1000,
                "created": "2026-01-01T00:00:00Z",
                "starred": stars.get(pid),
                "year": items.year_of(date),
                "genre": names[0] if names else None,
                "musicBrainzId": mbids[-1][0] if mbids else "",
                "isCompilation": album_type == "compilation",
                "releaseTypes": [album_type.title()] if album_type else [],
                "recordLabels": [{"name": label}] if label else [],
                "genres": [{"name": g} for g in names],
                "artists": [{"id": f"ar-{p}", "name": n} for p, n in credits],
                "displayArtist": credit or "",
                "releaseDate": items.item_date(date),
                "originalReleaseDate": items.item_date(original),
            }
        )
    return out


def _reference_artists(
    conn: sqlite3.Connection, artist_ids: Sequence[int], stars: dict[str, str]
) -> list[Payload]:
    out = []
    for aid in artist_ids:
        row = conn.execute(
            "SELECT public_id, name, sort_name FROM artists WHERE id = ?", (aid,)
        ).fetchone()
        if row is None:
            continue
        (count,) = conn.execute(
            "SELECT count(*) FROM album_artists WHERE artist_id = ?", (aid,)
        ).fetchone()
        mbids = conn.execute(
            "SELECT value FROM external_ids WHERE entity = 'artist'"
            " AND scheme = 'musicbrainz_artist' AND entity_id = ? ORDER BY value",
            (aid,),
        ).fetchall()
        out.append(
            {
                "id": f"ar-{row[0]}",
                "name": row[1],
                "albumCount": count,
                "starred": stars.get(row[0]),
                "musicBrainzId": mbids[-1][0] if mbids else "",
                "sortName": row[2] or "",
            }
        )
    return out


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_albums_and_artists_render_as_the_per_field_queries_did(
    catalog: sqlite3.Connection, fmt: str
) -> None:
    albums = [r[0] for r in catalog.execute("SELECT id FROM albums ORDER BY id DESC")]
    artists = [r[0] for r in catalog.execute("SELECT id FROM artists ORDER BY id DESC")]
    album_stars = {
        r[0]: "2026-02-03T04:05:06Z"
        for r in catalog.execute("SELECT public_id FROM albums WHERE id % 2 = 0")
    }
    artist_stars = {
        r[0]: "2026-02-03T04:05:06Z"
        for r in catalog.execute("SELECT public_id FROM artists WHERE id % 2 = 1")
    }
    created = "2026-01-01T00:00:00Z"

    def body(found: Payload) -> bytes:
        return bytes(render({"searchResult3": found}, fmt).body)

    asked_albums, asked_artists = [*albums, 10**9, albums[0]], [10**9, *artists]
    # Album counts come from the library file (the callers'); here the reference's own.
    counts = dict(
        catalog.execute("SELECT artist_id, count(*) FROM album_artists GROUP BY artist_id")
    )
    new = {
        "artist": items.artists(catalog, asked_artists, counts, lambda p: artist_stars),
        "album": items.albums(catalog, asked_albums, created, album_stars),
    }
    reference = {
        "artist": _reference_artists(catalog, asked_artists, artist_stars),
        "album": _reference_albums(catalog, asked_albums, album_stars),
    }
    assert body(new) == body(reference)
    assert len(new["album"]) == len(albums) + 1 and len(new["artist"]) == len(artists)
