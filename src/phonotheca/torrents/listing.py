"""``torrents.json``: the list of an archive's torrents that mirrors read (docs/FORMAT.md §11).

This module is the one model of the file: ``publish`` writes it, ``torrents scrape``
updates its health figures, ``mirror`` and ``torrents suggest`` read it, the web
server shows it. Readers accept unknown keys (a newer writer may add some) but refuse
a newer major ``version``.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal

import msgspec

FORMAT = "phonotheca-torrents"
VERSION = 1
LISTING_FILE = "torrents.json"

Kind = Literal["audio", "covers", "metadata"]


class ListingError(Exception):
    """``torrents.json`` cannot be read, or is not one this version understands."""


class Health(msgspec.Struct, kw_only=True):
    """What the trackers said last; all null until the first scrape."""

    seeders: int | None = None
    leechers: int | None = None
    completed: int | None = None
    scraped_at: str | None = None
    """UTC time of the scrape, ISO 8601 with ``Z``."""


class Band(msgspec.Struct, kw_only=True):
    low: int
    high: int


class TorrentEntry(msgspec.Struct, kw_only=True):
    name: str
    """The torrent's name: its collection directory's name."""
    collection: str
    kind: Kind
    infohash_v1: str
    infohash_v2: str | None = None
    magnet: str
    torrent_url: str
    """Of the ``.torrent`` file, relative to the listing's ``base_url`` (or to the
    listing's own location when there is none)."""
    size: int
    """Payload bytes."""
    files: int
    tracks: int
    """Tracks (audio), images (covers) or tracks described (metadata)."""
    band: Band | None = None
    listens: int = 0
    share_of_listens: float = 0.0
    added: str
    """Date the torrent was published, ``YYYY-MM-DD``."""
    obsolete: bool = False
    web_seeds: list[str] = msgspec.field(default_factory=list)
    trackers: list[list[str]] = msgspec.field(default_factory=list)
    health: Health = msgspec.field(default_factory=Health)


class Totals(msgspec.Struct, kw_only=True):
    tracks: int
    bytes: int
    listens_covered: int
    listens_total: int
    share_of_listens: float


class Listing(msgspec.Struct, kw_only=True):
    format: str = FORMAT
    version: int = VERSION
    archive: str
    generated_at: str
    base_url: str | None = None
    totals: Totals
    torrents: list[TorrentEntry]

    def by_name(self) -> dict[str, TorrentEntry]:
        return {t.name: t for t in self.torrents}


_decoder = msgspec.json.Decoder(Listing)
_encoder = msgspec.json.Encoder(order="deterministic")


def decode_listing(data: bytes, source: str = LISTING_FILE) -> Listing:
    try:
        listing = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ListingError(f"{source}: not a valid torrents.json: {exc}") from None
    if listing.format != FORMAT:
        raise ListingError(f"{source}: format is {listing.format!r}, expected {FORMAT!r}")
    if listing.version > VERSION:
        raise ListingError(
            f"{source}: torrents.json version {listing.version} is newer than this"
            f" phonotheca reads ({VERSION}): upgrade phonotheca"
        )
    return listing


def encode_listing(listing: Listing) -> bytes:
    """Pretty-printed JSON (people read this file too), keys in a fixed order."""
    return msgspec.json.format(_encoder.encode(listing), indent=2) + b"\n"


def read_listing(source: str | Path, *, timeout: float = 30.0) -> Listing:
    """Read ``torrents.json`` from a path or an ``http(s)://`` / ``file://`` URL."""
    text = str(source)
    scheme = urllib.parse.urlsplit(text).scheme
    if scheme in ("http", "https", "file"):
        try:
            with urllib.request.urlopen(text, timeout=timeout) as response:
                data = response.read()
        except (OSError, ValueError) as exc:
            raise ListingError(f"{text}: cannot fetch torrents.json: {exc}") from None
    else:
        try:
            data = Path(text).read_bytes()
        except OSError as exc:
            raise ListingError(f"{text}: cannot read torrents.json: {exc.strerror}") from None
    return decode_listing(data, text)


def write_listing(listing: Listing, path: Path) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(encode_listing(listing))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def resolve_url(listing_source: str | Path, listing: Listing, relative: str) -> str:
    """The absolute location of a file the listing names (a ``.torrent``)."""
    if listing.base_url:
        return urllib.parse.urljoin(listing.base_url, relative)
    text = str(listing_source)
    if urllib.parse.urlsplit(text).scheme in ("http", "https", "file"):
        return urllib.parse.urljoin(text, relative)
    return str(Path(text).resolve().parent / relative)
