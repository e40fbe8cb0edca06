"""``torrents.json``: the list of an archive's torrents that mirrors read (docs/FORMAT.md §11).

This module is the one model of the file: ``publish`` writes it, ``torrents scrape``
updates its health figures, ``mirror`` and ``torrents suggest`` read it, the web
server shows it. Readers accept unknown keys (a newer writer may add some) but refuse
a newer major ``version``.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from phonotheca.durable import write_atomically
from phonotheca.torrents.remote import (
    DEFAULT_TIMEOUTS,
    MAX_LISTING_BYTES,
    FetchError,
    Timeouts,
    fetch_bytes,
)

FORMAT = "phonotheca-torrents"
VERSION = 1
LISTING_FILE = "torrents.json"

Kind = Literal["audio", "covers", "metadata"]
KINDS: tuple[Kind, ...] = ("metadata", "audio", "covers")
"""The kinds in listing order: the metadata release always comes first."""

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Hex40 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{40}$")]
Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Date = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
Timestamp = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
]
Name = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class ListingError(Exception):
    """``torrents.json`` cannot be read, or is not one this version understands."""


class Health(msgspec.Struct, kw_only=True):
    """What the trackers said last; all null until the first scrape."""

    seeders: NonNegative | None = None
    leechers: NonNegative | None = None
    completed: NonNegative | None = None
    scraped_at: Timestamp | None = None
    """UTC time of the scrape, ISO 8601 with ``Z``."""


class Band(msgspec.Struct, kw_only=True):
    """The popularity band of an audio collection, bounds included (0-100)."""

    low: Annotated[int, msgspec.Meta(ge=0, le=100)]
    high: Annotated[int, msgspec.Meta(ge=0, le=100)]


class TorrentEntry(msgspec.Struct, kw_only=True):
    name: Name
    """The torrent's name: its collection directory's name."""
    collection: Name
    kind: Kind
    infohash_v1: Hex40
    infohash_v2: Hex64 | None = None
    """Hybrid (v1+v2) torrents only."""
    magnet: Annotated[str, msgspec.Meta(pattern="^magnet:[?]xt=urn:btih:[0-9a-f]{40}")]
    torrent_url: str
    """Of the ``.torrent`` file, relative to the listing's ``base_url`` (or to the
    listing's own location when there is none)."""
    size: NonNegative
    """Payload bytes."""
    files: NonNegative
    tracks: NonNegative
    """Tracks (audio), images (covers) or tracks described (metadata)."""
    band: Band | None = None
    listens: NonNegative = 0
    """Listens of the tracks the torrent holds (audio only)."""
    share_of_listens: Share = 0.0
    """``listens`` over all listens of the catalog (the latest plan's total)."""
    added: Date
    """Date the torrent was first listed, ``YYYY-MM-DD`` (UTC)."""
    obsolete: bool = False
    """Superseded (a newer metadata release) or withdrawn: mirrors may drop it (a signed
    listing's word only, and an audio collection only when ``replaced_by`` names what
    replaces it)."""
    replaced_by: list[Name] = msgspec.field(default_factory=list)
    """Names of the listed torrents that replace this obsolete one (empty otherwise)."""
    web_seeds: list[str] = msgspec.field(default_factory=list)
    """BEP 19 URLs: the torrent's own and those of the settings."""
    trackers: list[list[str]] = msgspec.field(default_factory=list)
    """Tracker tiers (BEP 12): the torrent's own and those of the settings."""
    health: Health = msgspec.field(default_factory=Health)


class Totals(msgspec.Struct, kw_only=True):
    """Over the listed torrents that are not obsolete."""

    tracks: NonNegative
    """Tracks held by audio torrents."""
    bytes: NonNegative
    """Payload bytes of every torrent."""
    listens_covered: NonNegative
    listens_total: NonNegative
    share_of_listens: Share


class LocatorRef(msgspec.Struct, kw_only=True):
    """The track locator published beside ``torrents.json`` (FORMAT.md §17)."""

    url: str
    """Relative to ``base_url`` (or to the listing's own location), like ``torrent_url``."""
    size: NonNegative
    sha256: Hex64
    block_size: Annotated[int, msgspec.Meta(gt=0)]
    """The most bytes one block takes: what a lookup reads besides the index."""
    top_index: bytes | None = None
    """The locator's top index as stored in it (base64 in JSON, a few KB at 100 M tracks):
    with it, a lookup reads a leaf page and a block, the first lookup too."""


class Listing(msgspec.Struct, kw_only=True):
    format: str = FORMAT
    version: Annotated[int, msgspec.Meta(ge=1)] = VERSION
    archive: str
    generated_at: Timestamp
    base_url: str | None = None
    """URL of the directory holding ``torrents.json`` and ``torrents/``, when published."""
    seq: NonNegative | None = None
    """Strictly increasing with every signed publish: a mirror refuses a lower one than it
    last accepted (a replayed old listing). Null in unsigned listings."""
    expires: Timestamp | None = None
    """UTC time after which a mirror refuses this listing (a listing frozen by whoever
    serves it); ``[publish] valid_days`` after ``generated_at``. Null when unsigned."""
    publisher_key: str | None = None
    """The minisign public key (``RW…``) that signs this listing, for pinning on first use."""
    locator: LocatorRef | None = None
    """Where to find a track without reading any collection's index (absent in listings
    written before locators existed)."""
    totals: Totals
    torrents: list[TorrentEntry]

    def by_name(self) -> dict[str, TorrentEntry]:
        return {t.name: t for t in self.torrents}


_decoder = msgspec.json.Decoder(Listing)
_encoder = msgspec.json.Encoder(order="deterministic")


class _Head(msgspec.Struct):
    """What is read first: a newer version may change anything else."""

    format: str = FORMAT
    version: int = VERSION


_head_decoder = msgspec.json.Decoder(_Head)


def decode_listing(data: bytes, source: str = LISTING_FILE) -> Listing:
    try:
        head = _head_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ListingError(f"{source}: not a valid torrents.json: {exc}") from None
    if head.format != FORMAT:
        raise ListingError(f"{source}: format is {head.format!r}, expected {FORMAT!r}")
    if head.version > VERSION:
        raise ListingError(
            f"{source}: torrents.json version {head.version} is newer than this"
            f" phonotheca reads ({VERSION}): upgrade phonotheca"
        )
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ListingError(f"{source}: not a valid torrents.json: {exc}") from None


def encode_listing(listing: Listing) -> bytes:
    """Pretty-printed JSON (people read this file too), keys in a fixed order."""
    return msgspec.json.format(_encoder.encode(listing), indent=2) + b"\n"


def read_listing(source: str | Path, *, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Listing:
    """Read ``torrents.json`` from a path or an ``http(s)://`` / ``file://`` URL: at most
    :data:`~phonotheca.torrents.remote.MAX_LISTING_BYTES`, within ``timeouts``."""
    text = str(source)
    try:
        data = fetch_bytes(text, limit=MAX_LISTING_BYTES, what=LISTING_FILE, timeouts=timeouts)
    except FetchError as exc:
        raise ListingError(str(exc)) from None
    return decode_listing(data, text)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``torrents.json``, generated from this model.

    ``torrents.schema.json`` beside this module is this schema, written out for readers
    in other languages; a test keeps the two equal.
    """
    schema: dict[str, Any] = msgspec.json.schema(Listing)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Phonotheca torrents.json, version 1",
        **schema,
    }


SCHEMA_FILE = Path(__file__).with_name("torrents.schema.json")


def write_listing(listing: Listing, path: Path) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    write_atomically(path, encode_listing(listing))


def resolve_url(listing_source: str | Path, listing: Listing, relative: str) -> str:
    """The absolute location of a file the listing names (a ``.torrent``).

    A listing may name an ``http(s)://`` URL, or a path under its own directory
    (``base_url``, else where the listing was read from); anything else, such as a
    ``file:`` URL, an absolute path or ``..``, is refused with a :class:`ListingError`,
    so that a listing cannot make a mirror read files of the machine it runs on.
    """
    parts = urllib.parse.urlsplit(relative)
    if parts.scheme or parts.netloc:
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            return relative
        raise ListingError(
            f"{relative!r}: a listing may name http(s) URLs or paths under its directory,"
            " nothing else: refused"
        )
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/")]
    if (
        not parts.path
        or parts.path.startswith("/")
        or any(s in ("", ".", "..") or "/" in s or "\\" in s or "\0" in s for s in segments)
    ):
        raise ListingError(
            f"{relative!r}: not a path under the listing's directory (no '..', no absolute"
            " or empty parts): refused"
        )
    if listing.base_url:
        base = urllib.parse.urlsplit(listing.base_url)
        if base.scheme.lower() not in ("http", "https") or not base.netloc:
            raise ListingError(f"base_url {listing.base_url!r} is not an http(s) URL: refused")
        return urllib.parse.urljoin(listing.base_url, relative)
    text = str(listing_source)
    if urllib.parse.urlsplit(text).scheme.lower() in ("http", "https", "file"):
        return urllib.parse.urljoin(text, relative)
    return str(Path(text).resolve().parent.joinpath(*segments))
