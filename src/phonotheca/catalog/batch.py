"""Normalised rows ready to load, keyed by public ids: what every importer produces.

Importers (JSONL, MusicBrainz, local files) turn their input into a :class:`Batch`;
:mod:`phonotheca.catalog.load` writes batches into the catalog. Rows are plain
tuples so a batch pickles cheaply between the parsing process and the writer.
"""

from __future__ import annotations

import hashlib
import msgspec

# (artist public id, credited_as, join_phrase), in credit order
Credit = tuple[str, str | None, str]
# (kind, url, width, height)
ImageRow = tuple[str, str | None, int | None, int | None]
# (scheme, value)
ExternalId = tuple[str, str]


class ArtistRow(msgspec.Struct, array_like=True, frozen=True):
    name: str
    sort_name: str | None = None
    disambiguation: str | None = None
    aliases: tuple[tuple[str, str | None, str | None], ...] = ()
    """(name, sort_name, locale) of each alias; aliases are searchable."""


class AlbumRow(msgspec.Struct, array_like=True, frozen=True):
    title: str
    artist_credit: str
    credits: tuple[Credit, ...]
    album_type: str | None = None
    release_date: str | None = None
    release_date_precision: str | None = None
    label: str | None = None
    upc: str | None = None
    total_tracks: int | None = None
    total_discs: int | None = None
    markets: str | None = None
    genres: tuple[str, ...] = ()
    images: tuple[ImageRow, ...] = ()
    external_ids: tuple[ExternalId, ...] = ()


class TrackRow(msgspec.Struct, array_like=True, frozen=True):
    public_id: str
    title: str
    artist_credit: str
    credits: tuple[Credit, ...]
    album_id: str | None = None
    disc_number: int | None = None
    track_number: int | None = None
    duration_ms: int | None = None
    isrc: str | None = None
    isrc_valid: bool | None = None
    explicit: bool | None = None
    popularity: int | None = None
    listens: int | None = None
    markets: str | None = None
    updated_at: str | None = None
    genres: tuple[str, ...] = ()
    external_ids: tuple[ExternalId, ...] = ()


_encoder = msgspec.msgpack.Encoder()


def fingerprint(row: msgspec.Struct) -> int:
    """A stable 63-bit hash of a row's values: equal rows need no rewrite."""
    digest = hashlib.blake2b(_encoder.encode(row), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Reject(msgspec.Struct, array_like=True):
    line: int
    reason: str
    raw: bytes


class Batch(msgspec.Struct):
    """Rows from one stretch of an input; tracks are in input order, the last one wins.

    A batch crosses from a parsing process to the writer as msgpack (:func:`encode_batch`),
    which is several times faster than pickle for these shapes.
    """

    first_line: int
    last_line: int
    artists: dict[str, ArtistRow] = {}
    albums: dict[str, AlbumRow] = {}
    tracks: list[TrackRow] = []
    records: list[bytes] = []
    """Compressed source record of each track (same order as ``tracks``); may be empty."""
    rejects: list[Reject] = []
    invalid_isrc: int = 0
    read: int = 0


_batch_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> Batch:
    return _batch_decoder.decode(data)
