"""Normalised rows ready to load, keyed by public ids: what every importer produces.

Importers (JSONL, MusicBrainz, local files) turn their input into a :class:`Batch`;
:mod:`phonotheca.catalog.load` writes batches into the catalog. Rows are tuples in
the column order of the SQL that inserts them, so the writer binds them as they are
(``executemany``) with no per-row Python work: the writer is the one process that
cannot be parallelised, so the parsing processes do everything they can.

Within a batch, a track is referred to by its index in :attr:`Batch.tracks`; the
writer turns indexes into rowids by adding the batch's first rowid in SQL.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Iterable
from typing import cast

import msgspec

from phonotheca.catalog.playlist_record import PlaylistRow

# (public id, title, artist credit, album public id, disc number, track number,
#  duration ms, isrc, explicit, popularity, listens, markets, updated_at,
#  fingerprint of the source record, record: chunk index in this batch * 1024 + line)
TrackTuple = tuple[
    str,
    str,
    str,
    str | None,
    int | None,
    int | None,
    int | None,
    str | None,
    bool | None,
    int | None,
    int | None,
    str | None,
    str | None,
    int,
    int | None,
]
RECORD_REF_LINES = 1024
"""A record reference is ``chunk * RECORD_REF_LINES + line``; chunks hold fewer lines."""
# (track index, position, artist public id, credited as, join phrase)
CreditTuple = tuple[int, int, str, str | None, str]
# (track index, genre) / (track index, scheme, value)
GenreTuple = tuple[int, str]
ExternalTuple = tuple[int, str, str]
# (track index, name, sort name, locale): another name of the track (track_aliases)
AliasTuple = tuple[int, str, str | None, str | None]
# (track index, public id of an album-less track this one takes the place of)
ClaimTuple = tuple[int, str]


class ArtistRow(msgspec.Struct, array_like=True, frozen=True):
    name: str
    sort_name: str | None = None
    disambiguation: str | None = None
    aliases: tuple[tuple[str, str | None, str | None], ...] = ()
    """(name, sort_name, locale) of each alias."""


class AlbumRow(msgspec.Struct, array_like=True, frozen=True):
    title: str
    artist_credit: str
    credits: tuple[tuple[str, str | None, str], ...]
    """(artist public id, credited as, join phrase), in credit order."""
    album_type: str | None = None
    release_date: str | None = None
    release_date_precision: str | None = None
    label: str | None = None
    upc: str | None = None
    total_tracks: int | None = None
    total_discs: int | None = None
    markets: str | None = None
    status: str | None = None
    packaging: str | None = None
    country: str | None = None
    genres: tuple[str, ...] = ()
    images: tuple[tuple[str, str | None, int | None, int | None], ...] = ()
    """(kind, url, width, height)"""
    external_ids: tuple[tuple[str, str], ...] = ()
    # Since schema v2 (MusicBrainz releases):
    original_release_date: str | None = None
    """First release of the release group (the album's original date)."""
    original_release_date_precision: str | None = None
    catalog_number: str | None = None
    disambiguation: str | None = None
    cover_art_count: int | None = None


_encoder = msgspec.msgpack.Encoder()


def fingerprint(row: msgspec.Struct) -> int:
    """A stable 63-bit hash of a row's values: equal rows need no rewrite."""
    return fingerprint_bytes(_encoder.encode(row))


def fingerprint_bytes(data: bytes) -> int:
    """63 bits from two checksums: enough to notice a change, and ~10x cheaper than a
    cryptographic hash on short records (this runs once per input line)."""
    return (zlib.crc32(data) << 31) ^ zlib.adler32(data)


class Reject(msgspec.Struct, array_like=True):
    line: int
    reason: str
    raw: bytes


class Batch(msgspec.Struct, array_like=True):
    """Rows from one stretch of an input.

    Track public ids are unique within a batch (the importer keeps the winning record
    of an id and counts the others in ``superseded``). ``artists`` and ``albums`` map
    public ids to (fingerprint, row). ``chunks`` are zstd frames of the source records
    the tracks were loaded from, so that export can reproduce them.
    """

    first_line: int
    last_line: int
    read: int = 0
    tracks: list[TrackTuple] = []
    credits: list[CreditTuple] = []
    genres: list[GenreTuple] = []
    external_ids: list[ExternalTuple] = []
    artists: dict[str, tuple[int, ArtistRow]] = {}
    albums: dict[str, tuple[int, AlbumRow]] = {}
    chunks: list[bytes] = []
    rejects: list[Reject] = []
    invalid_isrc: int = 0
    superseded: int = 0
    image: bytes = b""
    """When not empty: ``tracks``, ``credits``, ``genres``, ``external_ids`` and
    ``aliases`` moved into a serialized SQLite database (:func:`stage_rows`), and those
    lists are empty."""
    image_tracks: int = 0
    """The number of tracks in ``image``."""
    aliases: list[AliasTuple] = []
    claims: list[ClaimTuple] = []
    """A new track that claims the public id of an album-less track in the catalog takes
    over that track's row instead of getting a row of its own (a MusicBrainz release's
    track takes over the track of its standalone recording, docs/FORMAT.md §6.4). Only
    the first claimant of an id does; a track already in the catalog claims nothing."""
    playlists: list[PlaylistRow] = []
    """Playlists (docs/FORMAT.md §1.9), written after the batch's tracks: their entries
    are matched to tracks by the writer, which alone sees the catalog."""

    @property
    def track_count(self) -> int:
        return self.image_tracks if self.image else len(self.tracks)


# Python's sqlite3 binds int, float and str directly but passes any other value, None
# included, through its adapter protocol, which for None ends in two failed attribute
# lookups (~0.25 us each). Rows are full of None (a MusicBrainz track binds six), so None
# gets an adapter of its own: a dict hit and a C call returning None, bound as NULL.
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))

# The tables of a batch image, columns c1..cN in tuple order; a track's rowid is its
# index in the batch plus one (the tables are filled in order, from empty).
STAGE_TABLES = {"tracks": 15, "credits": 5, "genres": 2, "external_ids": 3, "aliases": 4}
# And the batch's albums, keyed by their public ids (c20 of ``albums``): their columns
# (:func:`album_values`), credits, genres, images and external ids, so that the writer
# inserts new albums set-wise, binding nothing (the rows stay in ``Batch.albums`` too,
# for the fingerprints and the rare rewrite of a changed album).
ALBUM_STAGE_TABLES = {
    "albums": 20,
    "album_credits": 5,
    "album_genres": 2,
    "album_images": 6,
    "album_external_ids": 3,
}


def album_values(pid: str, fp: int, a: AlbumRow) -> tuple[object, ...]:
    """An album's columns, in the order of the writer's statements: title,
    artist_credit, album_type, release_date, release_date_precision, label, upc,
    total_tracks, total_discs, markets, status, packaging, country,
    original_release_date, original_release_date_precision, catalog_number,
    disambiguation, cover_art_count, fingerprint, public_id."""
    return (
        a.title,
        a.artist_credit,
        a.album_type,
        a.release_date,
        a.release_date_precision,
        a.label,
        a.upc,
        a.total_tracks,
        a.total_discs,
        a.markets,
        a.status,
        a.packaging,
        a.country,
        a.original_release_date,
        a.original_release_date_precision,
        a.catalog_number,
        a.disambiguation,
        a.cover_art_count,
        fp,
        pid,
    )


Rows = list[tuple[object, ...]]


def album_links(
    pids: Iterable[str], albums: dict[str, tuple[int, AlbumRow]]
) -> tuple[Rows, list[tuple[str, str]], Rows, Rows]:
    """The credits, genres, images and external ids of albums ``pids`` (rows of the
    ``album_*`` stage tables), in album order."""
    credits: Rows = []
    genres: list[tuple[str, str]] = []
    images: Rows = []
    ext: Rows = []
    for pid in pids:
        a = albums[pid][1]
        credits += [(pid, pos, *c) for pos, c in enumerate(a.credits)]
        genres += [(pid, g) for g in dict.fromkeys(a.genres)]
        images += [(pid, pos, *img) for pos, img in enumerate(a.images)]
        ext += [(pid, s, v) for s, v in a.external_ids]
    return credits, genres, images, ext


def stage_rows(batch: Batch) -> Batch:
    """Move a batch's track rows and links into an in-memory SQLite database, serialized.

    A worker process does this, so the writer moves each table into the catalog with
    one ``INSERT ... SELECT`` (the database attached) and no Python per row: binding
    rows one by one, and decoding them before, were half of the writer's time. The
    albums are staged too (:data:`ALBUM_STAGE_TABLES`) but stay in ``albums``.
    """
    if batch.image:
        return batch
    db = sqlite3.connect(":memory:")
    try:
        db.isolation_level = None
        db.execute("BEGIN")
        albums = batch.albums
        entity_rows = (
            [album_values(pid, fp, a) for pid, (fp, a) in albums.items()],
            *album_links(albums, albums),
        )
        for (table, width), rows in zip(
            (*STAGE_TABLES.items(), *ALBUM_STAGE_TABLES.items()),
            (*(getattr(batch, t) for t in STAGE_TABLES), *entity_rows),
            strict=True,
        ):
            columns = ", ".join(f"c{i}" for i in range(1, width + 1))
            db.execute(f"CREATE TABLE {table}({columns})")
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
        db.execute("COMMIT")
        image = db.serialize()
    finally:
        db.close()
    batch.image, batch.image_tracks = image, len(batch.tracks)
    batch.tracks, batch.credits, batch.genres, batch.external_ids = [], [], [], []
    batch.aliases = []
    return batch


_batch_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> Batch:
    return _batch_decoder.decode(data)
