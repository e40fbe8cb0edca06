"""The track locator: public id → (collection, volume, offset, length, sha256), by range reads.

A sorted, block-compressed map (docs/FORMAT.md §17), read like an SSTable or a PMTiles
archive over HTTP: a fixed-size footer at the end of the file points to a small top index
(first key, offset, length and checksum of each leaf page), whose leaf pages give the same
for each data block; a block is an independent zstd frame of at most 64 KiB holding
MessagePack records sorted by id. A lookup (:mod:`phonotheca.torrents.locator_read`) takes
the top index from ``torrents.json`` (or the file's tail, then cached), reads one leaf page
(cached) and one block: at most two range reads, whatever the number of tracks or
collections. Every block and page carries a checksum (the first 16 bytes of its SHA-256)
in the level above, so a corrupt one is refused. This module defines the format and
writes it.

Blocks use no zstd dictionary: at 64 KiB a block is large enough for zstd to find the
repetition it holds (id prefixes, collection names), its 32-byte digests do not compress
anyway, and a dictionary would have to be read before the first block.

The same entries and settings give the same bytes (sorted input, single-threaded zstd at a
fixed level, canonical MessagePack).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec
import zstandard

from phonotheca.durable import atomic_file

LOCATOR_FILE = "tracks.locator"
MAGIC = b"PHONOLOC"
VERSION = (1, 0)
"""(major, minor): a reader refuses a newer major version."""
HEADER = struct.Struct("<8sHH4x")
FOOTER = struct.Struct("<QQQII16sIHH8s")
"""entries, blocks, top offset, top length, block size, top checksum, leaf pages,
major, minor, magic: 64 bytes at the very end of the file."""
BLOCK_SIZE = 64 * 1024
"""The most bytes a block takes, compressed or not (its records are cut to fit)."""
PAGE_SIZE = 32 * 1024
"""The most bytes a leaf page of the block index takes."""
TAIL_READ = 32 * 1024
"""What a reader without the listing's top index asks for first: the footer and the top
index (21 KB at 100 M tracks) and, in small files, more. With a leaf page (<= 32 KiB) and
a block (<= 64 KiB), a first lookup stays within 128 KiB."""
LEVEL = 3
CHECKSUM = 16
_MARGIN = 64  # zstd's frame and block headers when it stores a block raw

TRACK = 0
"""Kind of an entry keyed by a track's public id: where its audio is."""
COVER = 1
"""Kind of an entry keyed by an album's public id: where its front cover is."""
_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class LocatorError(Exception):
    """The locator cannot be read or written: missing, truncated, corrupt, out of order."""


class LocatorEntry(msgspec.Struct, array_like=True, frozen=True):
    """One record: where the bytes of a track (or an album's cover) lie in the archive."""

    id: str
    """The track's (or, for a cover, the album's) public id."""
    kind: int
    """:data:`TRACK` or :data:`COVER`."""
    collection: str
    volume: int
    """The tar volume's number: the file is ``data/<collection>.<volume:04d>.tar``."""
    offset: int
    length: int
    sha256: bytes
    """The 32-byte SHA-256 of the ``length`` bytes at ``offset``."""
    codec: str | None = None
    """The track's codec (``opus``, ``flac``, ...), when known."""

    @property
    def volume_name(self) -> str:
        return f"{self.collection}.{self.volume:04d}.tar"

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.kind)


class IndexRef(msgspec.Struct, array_like=True, frozen=True):
    """An index entry: the first key of a block (or leaf page) and where it is."""

    first_id: str
    first_kind: int
    offset: int
    length: int
    checksum: bytes


_entry_encoder = msgspec.msgpack.Encoder()


def checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:CHECKSUM]


def _array(items: list[bytes]) -> bytes:
    """A MessagePack array of already encoded items (its header in the shortest form)."""
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big") if n < 65536 else None
    if head is None:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(items)


@dataclass(frozen=True)
class LocatorSummary:
    path: Path
    entries: int
    blocks: int
    leaf_pages: int
    size: int
    sha256: str
    block_size: int
    top_index: bytes
    """The top index as stored (what a listing may carry so a lookup need not read it)."""


class _Writer:
    def __init__(self, out: BinaryIO, block_size: int, page_size: int, level: int) -> None:
        self.out = out
        self.block_size = block_size
        self.page_size = page_size
        self.compressor = zstandard.ZstdCompressor(level=level, write_checksum=False)
        self.hash = hashlib.sha256()
        self.pos = 0

    def write(self, data: bytes) -> int:
        at = self.pos
        self.out.write(data)
        self.hash.update(data)
        self.pos += len(data)
        return at

    def frame(self, items: list[bytes], first: tuple[str, int], limit: int) -> IndexRef:
        data = self.compressor.compress(_array(items))
        if len(data) > limit:
            raise LocatorError(f"a compressed block of {len(data)} bytes exceeds {limit}")
        at = self.write(data)
        return IndexRef(first[0], first[1], at, len(data), checksum(data))


def _check(entry: LocatorEntry, collections: set[str]) -> None:
    """Refuse what a reader could not use; ``collections`` caches the names seen good."""
    if entry.collection not in collections:
        if not _COLLECTION.fullmatch(entry.collection):
            raise LocatorError(f"entry {entry.id!r}: bad collection name {entry.collection!r}")
        collections.add(entry.collection)
    if (
        not entry.id
        or entry.kind not in (TRACK, COVER)
        or not 1 <= entry.volume <= 9999
        or entry.offset < 0
        or entry.length < 0
        or len(entry.sha256) != 32
    ):
        raise LocatorError(
            f"entry {entry.id!r}: empty id, or bad kind, volume, offset, length or sha256"
        )


def write_locator(
    entries: Iterable[LocatorEntry],
    path: Path,
    *,
    block_size: int = BLOCK_SIZE,
    page_size: int = PAGE_SIZE,
    level: int = LEVEL,
) -> LocatorSummary:
    """Write ``entries`` (sorted by id bytewise, then kind; no key twice) to ``path``.

    Written as ``<name>.partial``, fsynced and renamed. Memory holds one block, one leaf
    page and the finished leaf pages' references (about 1/2000 of the file).
    """
    path = Path(path)
    with atomic_file(path) as f:
        w = _Writer(f, block_size, page_size, level)
        w.write(HEADER.pack(MAGIC, *VERSION))
        *summary, top = _write_body(w, entries, block_size, page_size)
    count, blocks, pages = summary
    return LocatorSummary(path, count, blocks, pages, w.pos, w.hash.hexdigest(), block_size, top)


def _write_body(
    w: _Writer, entries: Iterable[LocatorEntry], block_size: int, page_size: int
) -> tuple[int, int, int, bytes]:
    block: list[bytes] = []
    block_bytes = 5
    first: tuple[str, int] = ("", -1)
    prev: tuple[str, int] | None = None
    block_refs: list[bytes] = []  # encoded refs of the leaf page being filled
    page_bytes = 5
    page_first: tuple[str, int] = ("", -1)
    pages: list[tuple[tuple[str, int], bytes]] = []  # first key, compressed leaf page
    count = blocks = 0

    def flush_page() -> None:
        nonlocal block_refs, page_bytes
        data = w.compressor.compress(_array(block_refs))
        if len(data) > page_size:
            raise LocatorError(f"a compressed index page of {len(data)} bytes exceeds {page_size}")
        pages.append((page_first, data))
        block_refs, page_bytes = [], 5

    def flush_block() -> None:
        nonlocal block, block_bytes, blocks, page_first, page_bytes
        ref = w.frame(block, first, block_size)
        blocks += 1
        encoded = _entry_encoder.encode(ref)
        if block_refs and page_bytes + len(encoded) > page_size - _MARGIN:
            flush_page()
        if not block_refs:
            page_first = first
        block_refs.append(encoded)
        page_bytes += len(encoded)
        block, block_bytes = [], 5

    collections: set[str] = set()
    for entry in entries:
        key = (entry.id, entry.kind)
        if prev is not None and key <= prev:
            raise LocatorError(
                f"entries out of order: {entry.id!r} (kind {entry.kind}) after {prev[0]!r}"
                f" (kind {prev[1]}); they must be sorted by id, then kind, each key once"
            )
        _check(entry, collections)
        prev = key
        encoded = _entry_encoder.encode(entry)
        if block and block_bytes + len(encoded) > block_size - _MARGIN:
            flush_block()
        if not block:
            first = key
        block.append(encoded)
        block_bytes += len(encoded)
        count += 1
    if block:
        flush_block()
    if block_refs:
        flush_page()
    top: list[bytes] = []
    for page_key, data in pages:
        at = w.write(data)
        top.append(
            _entry_encoder.encode(IndexRef(page_key[0], page_key[1], at, len(data), checksum(data)))
        )
    top_data = w.compressor.compress(_array(top))
    top_at = w.write(top_data)
    w.write(
        FOOTER.pack(
            count,
            blocks,
            top_at,
            len(top_data),
            block_size,
            checksum(top_data),
            len(pages),
            *VERSION,
            MAGIC,
        )
    )
    return count, blocks, len(pages), top_data
