"""The track locator of a catalog: made for each metadata release, published beside
``torrents.json``, opened by ``fetch`` from a listing.

Entries come from the ledger's packed tracks and the covers collections' images, merged
on the fly in public id order, with memory bounded at any scale. Packed tracks are read
in ledger order (which is the tracks' rowid order, so both tables are read sequentially)
and put in id order by SQLite's external merge sort (temporary files where the archive
puts them, ``ARCHIVE/work/sqlite/``): at 86 M packed tracks in a catalog larger than RAM,
walking ``tracks_public_id`` instead would cost one random ledger read per catalog track.
Albums are few next to tracks and are read through ``albums_public_id``.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from phonotheca.durable import sync_directory
from phonotheca.torrents.listing import Listing, LocatorRef, resolve_url
from phonotheca.torrents.locator import (
    COVER,
    LOCATOR_FILE,
    TRACK,
    LocatorEntry,
    LocatorError,
    LocatorSummary,
    write_locator,
)
from phonotheca.torrents.locator_read import Locator, open_source

_TRACKS_SQL = """
    SELECT t.public_id, l.collection, l.volume, l.offset, l.length, l.sha256, l.codec
    FROM ledger l INDEXED BY ledger_status CROSS JOIN tracks t ON t.id = l.track_id
    WHERE l.status = 'packed' ORDER BY t.public_id
"""
# Per album, its front cover first (then by position) among the images a covers
# collection holds: the cover the web server shows (serve/media.py).
_COVERS_SQL = """
    SELECT a.public_id, (
        SELECT p.collection || ' ' || p.volume || ' ' || p.offset || ' ' || p.length
               || ' ' || p.sha256
        FROM images i JOIN packed_images p ON p.sha256 = i.blob_sha256
        WHERE i.album_id = a.id AND p.volume IS NOT NULL
        ORDER BY i.kind != 'front', i.position LIMIT 1)
    FROM albums a INDEXED BY albums_public_id ORDER BY a.public_id
"""
_VOLUME = re.compile(r"(.+)\.(\d{4})\.tar")


def _volume_number(collection: str, volume: str, item: str) -> int:
    match = _VOLUME.fullmatch(volume)
    if match is None or match.group(1) != collection:
        raise LocatorError(
            f"{item}: volume {volume!r} is not a volume of collection {collection!r}"
        )
    return int(match.group(2))


def _sha(value: str, item: str) -> bytes:
    try:
        digest = bytes.fromhex(value)
    except (TypeError, ValueError):
        digest = b""
    if len(digest) != 32:
        raise LocatorError(f"{item}: packed without a valid sha256 ({value!r})")
    return digest


def _tracks(conn: sqlite3.Connection) -> Iterator[LocatorEntry]:
    for public_id, collection, volume, offset, length, sha, codec in conn.execute(_TRACKS_SQL):
        item = f"track {public_id}"
        yield LocatorEntry(
            public_id,
            TRACK,
            collection,
            _volume_number(collection, volume, item),
            offset,
            length,
            _sha(sha, item),
            codec,
        )


def _covers(conn: sqlite3.Connection) -> Iterator[LocatorEntry]:
    for public_id, where in conn.execute(_COVERS_SQL):
        if where is None:
            continue
        collection, volume, offset, length, sha = where.split(" ")
        item = f"cover of album {public_id}"
        yield LocatorEntry(
            public_id,
            COVER,
            collection,
            _volume_number(collection, volume, item),
            int(offset),
            int(length),
            _sha(sha, item),
        )


def catalog_entries(conn: sqlite3.Connection) -> Iterator[LocatorEntry]:
    """Every packed track and every album's packed cover, sorted by (id, kind).

    SQLite compares text bytewise (``BINARY``), which for UTF-8 is code point order: the
    order Python compares the ids in, so the two streams merge without re-encoding.
    """
    return heapq.merge(_tracks(conn), _covers(conn), key=lambda e: (e.id, e.kind))


def build_locator(catalog: Path, path: Path) -> LocatorSummary:
    """Write the locator of the catalog at ``catalog`` (opened read-only) to ``path``."""
    conn = sqlite3.connect(f"{Path(catalog).resolve().as_uri()}?mode=ro", uri=True)
    try:
        # The sort's memory: runs of 64 MiB, merged from temporary files.
        conn.execute("PRAGMA temp_store=FILE")
        conn.execute("PRAGMA cache_size=-65536")
        return write_locator(catalog_entries(conn), path)
    except sqlite3.Error as exc:
        raise LocatorError(f"{catalog}: cannot read the packed tracks: {exc}") from None
    finally:
        conn.close()


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def publish_locator(release_dir: Path, catalog: Path, archive_root: Path) -> LocatorRef:
    """``ARCHIVE/tracks.locator``: the metadata release's file (a hard link when it can:
    the same bytes mirrors get), or, for a release made before locators existed, one
    built from ``catalog`` (whose packed tracks are the release's: a change would have
    made a new release)."""
    target = archive_root / LOCATOR_FILE
    partial = target.with_name(target.name + ".partial")
    released = release_dir / LOCATOR_FILE
    try:
        if released.is_file():
            partial.unlink(missing_ok=True)
            try:
                # Both files are immutable: one copy on disk (7 GB at 100 M tracks).
                os.link(released, partial)
            except OSError:
                shutil.copyfile(released, partial)
                with open(partial, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(partial, target)
            sync_directory(archive_root)
        else:
            build_locator(catalog, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise LocatorError(f"{target}: cannot write the locator: {exc.strerror}") from None
    locator = Locator(open_source(str(target))).open()
    return LocatorRef(
        url=LOCATOR_FILE,
        size=target.stat().st_size,
        sha256=_sha256_of(target),
        block_size=locator.block_size,
        top_index=locator.top_index,
    )


def open_locator(
    source: str, listing: Listing, location: str | None = None, timeout: float = 30.0
) -> Locator | None:
    """The locator a listing names (``locator.url``, beside ``torrents.json``), or the one
    at ``location`` (a local copy, e.g. from the metadata torrent); None when neither."""
    if location is None:
        if listing.locator is None:
            return None
        ref = listing.locator
        return Locator(
            open_source(resolve_url(source, listing, ref.url), timeout),
            expected_size=ref.size,
            top_index=ref.top_index,
            block_size=ref.block_size,
        )
    return Locator(open_source(location, timeout))
