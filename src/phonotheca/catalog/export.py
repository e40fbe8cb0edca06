"""Export the catalog as interchange JSONL, and catalog statistics.

A track loaded from JSONL is exported as the very line that was imported (kept
zstd-compressed in ``track_records``), so import → export → import is lossless.
A track from another source (MusicBrainz, local files) is written in the same
format from the catalog tables.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from phonotheca.catalog.batch import RECORD_REF_LINES
from phonotheca.catalog.playlist_record import playlist_record_of_jspf

_encoder = msgspec.json.Encoder()


class _Chunks:
    """Decompressed source chunks, a few at a time (tracks mostly point at recent ones)."""

    def __init__(self, conn: sqlite3.Connection, keep: int = 16) -> None:
        self.conn = conn
        self.keep = keep
        self.dctx = zstandard.ZstdDecompressor()
        self.cache: OrderedDict[int, tuple[str, list[bytes]]] = OrderedDict()

    def get(self, chunk_id: int) -> tuple[str, list[bytes]]:
        hit = self.cache.get(chunk_id)
        if hit is None:
            kind, data = self.conn.execute(
                "SELECT kind, data FROM source_chunks WHERE id=?", (chunk_id,)
            ).fetchone()
            hit = (kind, self.dctx.decompress(data).split(b"\n"))
            self.cache[chunk_id] = hit
            if len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(chunk_id)
        return hit


def source_record(conn: sqlite3.Connection, track_id: int) -> tuple[str, bytes] | None:
    """(format, bytes) of the source record a track was loaded from, if kept."""
    row = conn.execute("SELECT record_ref FROM tracks WHERE id=?", (track_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    chunk, line = divmod(row[0], RECORD_REF_LINES)
    kind, lines = _Chunks(conn, 1).get(chunk)
    return kind, lines[line]


def _credits(conn: sqlite3.Connection, table: str, key: str, owner: int) -> list[dict[str, Any]]:
    out = []
    for pid, name, sort_name, credited_as, join in conn.execute(
        f"SELECT ar.public_id, ar.name, ar.sort_name, c.credited_as, c.join_phrase"
        f" FROM {table} c JOIN artists ar ON ar.id = c.artist_id"
        f" WHERE c.{key} = ? ORDER BY c.position",
        (owner,),
    ):
        a: dict[str, Any] = {"id": pid, "name": name}
        if sort_name:
            a["sort_name"] = sort_name
        if credited_as:
            a["credited_as"] = credited_as
        if join:
            a["join_phrase"] = join
        out.append(a)
    return out


def _external_ids(conn: sqlite3.Connection, entity: str, owner: int) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT scheme, value FROM external_ids WHERE entity=? AND entity_id=?"
            " ORDER BY scheme, value",
            (entity, owner),
        ).fetchall()
    )


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}


def track_record(conn: sqlite3.Connection, track_id: int) -> dict[str, Any]:
    """The interchange record of a track, built from the catalog tables."""
    t = conn.execute(
        "SELECT public_id, title, album_id, disc_number, track_number, duration_ms, isrc,"
        " explicit, popularity, listens, markets, updated_at FROM tracks WHERE id=?",
        (track_id,),
    ).fetchone()
    rec: dict[str, Any] = {
        "id": t[0],
        "title": t[1],
        "artists": _credits(conn, "track_artists", "track_id", track_id),
        "disc_number": t[3],
        "track_number": t[4],
        "duration_ms": t[5],
        "isrc": t[6],
        "explicit": None if t[7] is None else bool(t[7]),
        "popularity": t[8],
        "listens": t[9],
        "markets": t[10].split() if t[10] else None,
        "updated_at": t[11],
        "genres": [
            g
            for (g,) in conn.execute(
                "SELECT g.name FROM track_genres tg JOIN genres g ON g.id = tg.genre_id"
                " WHERE tg.track_id=? ORDER BY g.name",
                (track_id,),
            )
        ],
        "external_ids": _external_ids(conn, "track", track_id),
        "aliases": [
            _drop_empty({"name": name, "sort_name": sort_name, "locale": locale})
            for name, sort_name, locale in conn.execute(
                "SELECT name, sort_name, locale FROM track_aliases WHERE track_id=? ORDER BY name",
                (track_id,),
            )
        ],
    }
    if t[2] is not None:
        a = conn.execute(
            "SELECT public_id, title, album_type, release_date, release_date_precision, label,"
            " upc, total_tracks, total_discs, markets FROM albums WHERE id=?",
            (t[2],),
        ).fetchone()
        rec["album"] = _drop_empty(
            {
                "id": a[0],
                "title": a[1],
                "artists": _credits(conn, "album_artists", "album_id", t[2]),
                "album_type": a[2],
                "release_date": a[3],
                "release_date_precision": a[4],
                "label": a[5],
                "upc": a[6],
                "total_tracks": a[7],
                "total_discs": a[8],
                "markets": a[9].split() if a[9] else None,
                "genres": [
                    g
                    for (g,) in conn.execute(
                        "SELECT g.name FROM album_genres ag JOIN genres g ON g.id = ag.genre_id"
                        " WHERE ag.album_id=? ORDER BY g.name",
                        (t[2],),
                    )
                ],
                "images": [
                    _drop_empty({"url": u, "width": w, "height": h, "kind": k})
                    for u, w, h, k in conn.execute(
                        "SELECT url, width, height, kind FROM images WHERE album_id=?"
                        " ORDER BY position",
                        (t[2],),
                    )
                ],
                "external_ids": _external_ids(conn, "album", t[2]),
            }
        )
    rec = _drop_empty(rec)
    rec.setdefault("artists", [])
    return rec


def iter_export_lines(conn: sqlite3.Connection) -> Iterator[bytes]:
    """Every track as one JSONL line (without the newline), in catalog order; then every
    playlist (:func:`iter_playlist_lines`)."""
    yield from iter_track_lines(conn)
    yield from iter_playlist_lines(conn)


def iter_track_lines(conn: sqlite3.Connection) -> Iterator[bytes]:
    """Every track as one JSONL line (without the newline), in catalog order."""
    chunks = _Chunks(conn)
    rows = conn.execute("SELECT id, record_ref FROM tracks ORDER BY id")
    for track_id, ref in rows:
        if ref is not None:
            chunk_id, line = divmod(ref, RECORD_REF_LINES)
            kind, lines = chunks.get(chunk_id)
            if kind == "jsonl":
                yield lines[line]
                continue
        yield _encoder.encode(track_record(conn, track_id))


def iter_playlist_lines(conn: sqlite3.Connection) -> Iterator[bytes]:
    """Every playlist as a playlist record (§1.9), in catalog order: the line imported, or
    the record made of the JSPF document imported (its ``playlist`` object, as it was,
    with ``"type": "playlist"`` first)."""
    chunks = _Chunks(conn)
    for (ref,) in conn.execute("SELECT record_ref FROM playlists ORDER BY id"):
        chunk_id, line = divmod(ref, RECORD_REF_LINES)
        kind, lines = chunks.get(chunk_id)
        yield lines[line] if kind == "jsonl" else playlist_record_of_jspf(lines[line])


@dataclass
class ExportSummary:
    path: str
    tracks: int
    bytes: int
    playlists: int = 0


def export_jsonl(
    conn: sqlite3.Connection, out: Path, progress: Callable[[int], None] | None = None
) -> ExportSummary:
    """Write the catalog to ``out`` (``.jsonl`` or ``.jsonl.zst``), atomically: its tracks,
    then its playlists (so that an import of the file matches their entries)."""
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("wb") as raw:
        writer: Any = raw
        if out.name.endswith(".zst"):
            writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
        buf = bytearray()
        counts = [0, 0]
        for kind, lines in enumerate((iter_track_lines(conn), iter_playlist_lines(conn))):
            for line in lines:
                buf += line
                buf += b"\n"
                counts[kind] += 1
                if len(buf) > 1 << 20:
                    writer.write(buf)
                    buf.clear()
                    if progress:
                        progress(sum(counts))
        writer.write(buf)
        if writer is not raw:
            writer.close()
        raw.flush()
        os.fsync(raw.fileno())
    tmp.replace(out)
    return ExportSummary(str(out), counts[0], out.stat().st_size, counts[1])


@dataclass
class CatalogStats:
    tracks: int
    albums: int
    artists: int
    unique_isrcs: int
    invalid_isrcs: int
    tracks_without_isrc: int
    tracks_with_listens: int
    tracks_with_popularity: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def catalog_stats(conn: sqlite3.Connection) -> CatalogStats:
    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return CatalogStats(
        tracks=one("SELECT count(*) FROM tracks"),
        albums=one("SELECT count(*) FROM albums"),
        artists=one("SELECT count(*) FROM artists"),
        unique_isrcs=one(
            "SELECT count(*) FROM (SELECT DISTINCT isrc FROM tracks"
            " WHERE isrc IS NOT NULL AND isrc_valid = 1)"
        ),
        invalid_isrcs=one("SELECT count(*) FROM tracks WHERE isrc_valid = 0"),
        tracks_without_isrc=one("SELECT count(*) FROM tracks WHERE isrc IS NULL"),
        tracks_with_listens=one("SELECT count(*) FROM tracks WHERE listens IS NOT NULL"),
        tracks_with_popularity=one("SELECT count(*) FROM tracks WHERE popularity IS NOT NULL"),
    )
