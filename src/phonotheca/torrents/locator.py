"""The track locator: public id → (collection, volume, offset, length, sha256), by range reads.

A sorted, block-compressed map (docs/FORMAT.md §17), read like an SSTable or a PMTiles
archive over HTTP: a fixed-size footer at the end of the file points to a small top index
(first key, offset, length and checksum of each leaf page), whose leaf pages give the same
for each data block; a block is an independent zstd frame of at most 64 KiB holding
MessagePack records sorted by id. A lookup reads the file's tail (footer and top index,
cached), one leaf page (cached) and one block: at most two range reads once the top index
is cached, whatever the number of tracks or collections. Every block and page carries a
checksum (the first 16 bytes of its SHA-256) in the level above, so a corrupt one is refused.

Blocks use no zstd dictionary: at 64 KiB a block is large enough for zstd to find the
repetition it holds (id prefixes, collection names), its 32-byte digests do not compress
anyway, and a dictionary would have to be read before the first block.

The same entries and settings give the same bytes (sorted input, single-threaded zstd at a
fixed level, canonical MessagePack).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import struct
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
import zstandard

from phonotheca.durable import sync_directory

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
TAIL_READ = 16 * 1024
"""What a reader asks for first: the footer, the top index and, in small files, more."""
LEVEL = 3
CHECKSUM = 16
_MARGIN = 64  # zstd's frame and block headers when it stores a block raw
_PAGE_LIMIT = 16 * 1024 * 1024  # decompressed size a top index or page may claim

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


class _Ref(msgspec.Struct, array_like=True, frozen=True):
    """An index entry: the first key of a block (or leaf page) and where it is."""

    first_id: str
    first_kind: int
    offset: int
    length: int
    checksum: bytes


_entry_encoder = msgspec.msgpack.Encoder()
_block_decoder = msgspec.msgpack.Decoder(list[LocatorEntry])
_page_decoder = msgspec.msgpack.Decoder(list[_Ref])


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
    def __init__(self, out: object, block_size: int, page_size: int, level: int) -> None:
        self.out = out
        self.block_size = block_size
        self.page_size = page_size
        self.compressor = zstandard.ZstdCompressor(level=level, write_checksum=False)
        self.hash = hashlib.sha256()
        self.pos = 0

    def write(self, data: bytes) -> int:
        at = self.pos
        self.out.write(data)  # type: ignore[attr-defined]
        self.hash.update(data)
        self.pos += len(data)
        return at

    def frame(self, items: list[bytes], first: tuple[str, int], limit: int) -> _Ref:
        data = self.compressor.compress(_array(items))
        if len(data) > limit:
            raise LocatorError(f"a compressed block of {len(data)} bytes exceeds {limit}")
        at = self.write(data)
        return _Ref(first[0], first[1], at, len(data), checksum(data))


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
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            w = _Writer(f, block_size, page_size, level)
            w.write(HEADER.pack(MAGIC, *VERSION))
            *summary, top = _write_body(w, entries, block_size, page_size)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)
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
            _entry_encoder.encode(_Ref(page_key[0], page_key[1], at, len(data), checksum(data)))
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


# -- reading --------------------------------------------------------------------------------


class RangeSource(Protocol):
    """Where a locator's bytes come from; counts its reads."""

    name: str
    reads: int
    bytes_read: int

    def tail(self, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes (all, if fewer) and the size of the whole file."""
        ...

    def read(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """A local locator file (e.g. a mirror's copy from the metadata torrent)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.path = Path(path)
        self.reads = 0
        self.bytes_read = 0

    def tail(self, length: int) -> tuple[bytes, int]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = os.pread(f.fileno(), min(length, size), max(0, size - length))
        except OSError as exc:
            raise LocatorError(f"{self.name}: cannot read the locator: {exc.strerror}") from None
        self._count(data)
        return data, size

    def read(self, offset: int, length: int) -> bytes:
        try:
            with open(self.path, "rb") as f:
                data = os.pread(f.fileno(), length, offset)
        except OSError as exc:
            raise LocatorError(f"{self.name}: cannot read the locator: {exc.strerror}") from None
        self._count(data)
        return data

    def _count(self, data: bytes) -> None:
        self.reads += 1
        self.bytes_read += len(data)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class HttpSource:
    """A locator over HTTP(S), read by ``Range`` requests (one request per read)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.name = url
        self.url = url
        self.timeout = timeout
        self.reads = 0
        self.bytes_read = 0

    def _get(self, spec: str, most: int) -> tuple[bytes, int]:
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={spec}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: bytes = response.read(most + 1)
                status = response.status
                content_range = response.headers.get("Content-Range", "")
        except (OSError, ValueError) as exc:
            raise LocatorError(f"{self.url}: cannot read the locator: {exc}") from None
        self.reads += 1
        self.bytes_read += len(data)
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        if status != 206 or match is None or len(data) > most:
            raise LocatorError(
                f"{self.url}: the server did not answer a range request (HTTP {status}):"
                " a locator must be served with Range support"
            )
        return data, int(match.group(3))

    def tail(self, length: int) -> tuple[bytes, int]:
        return self._get(f"-{length}", length)

    def read(self, offset: int, length: int) -> bytes:
        return self._get(f"{offset}-{offset + length - 1}", length)[0]


def open_source(location: str, timeout: float = 30.0) -> RangeSource:
    """A path or an ``http(s)://`` / ``file://`` URL."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme in ("http", "https"):
        return HttpSource(location, timeout)
    if parts.scheme == "file":
        return FileSource(Path(urllib.request.url2pathname(parts.path)))
    return FileSource(Path(location))


class Locator:
    """Lookups in a locator by range reads; the top index and leaf pages are cached.

    With ``top_index`` (and ``block_size``), as a listing carries them, the footer is not
    read: every lookup, the first included, is then a leaf page and a block at most.
    """

    def __init__(
        self,
        source: RangeSource,
        *,
        expected_size: int | None = None,
        top_index: bytes | None = None,
        block_size: int | None = None,
    ) -> None:
        self.source = source
        self.expected_size = expected_size
        self._given_top = top_index
        self._top_data = b""
        self._top: list[_Ref] | None = None
        self._top_keys: list[tuple[str, int]] = []
        self._tail = b""
        self._tail_at = 0
        self._pages: dict[int, tuple[list[tuple[str, int]], list[_Ref]]] = {}
        self.entries = 0
        self.blocks = 0
        self.block_size = block_size or BLOCK_SIZE

    @property
    def name(self) -> str:
        return self.source.name

    def open(self) -> Locator:
        """Read the footer and the top index now (a lookup does it when needed)."""
        self._open()
        return self

    def _open(self) -> list[_Ref]:
        if self._top is not None:
            return self._top
        if self._given_top is not None:
            self._top_data = self._given_top
            refs = _decode_page(self._given_top, checksum(self._given_top), self.name, "top index")
            return self._set_top(refs)
        tail, size = self.source.tail(TAIL_READ)
        if self.expected_size is not None and size != self.expected_size:
            raise LocatorError(
                f"{self.name}: {size} bytes where the listing says {self.expected_size}:"
                " the locator and torrents.json are out of step; fetch both again"
            )
        if size < HEADER.size + FOOTER.size or len(tail) < FOOTER.size:
            raise LocatorError(f"{self.name}: too short to be a track locator (truncated?)")
        fields = FOOTER.unpack(tail[-FOOTER.size :])
        count, blocks, top_at, top_len, block_size, top_sum, _pages, major, _minor, magic = fields
        if magic != MAGIC:
            raise LocatorError(
                f"{self.name}: not a track locator, or truncated (no footer at its end)"
            )
        if major > VERSION[0]:
            raise LocatorError(
                f"{self.name}: locator version {major} is newer than this phonotheca reads"
                f" ({VERSION[0]}): upgrade phonotheca"
            )
        if top_at + top_len != size - FOOTER.size or top_at < HEADER.size:
            raise LocatorError(f"{self.name}: damaged footer (its top index is out of the file)")
        self._tail, self._tail_at = tail, size - len(tail)
        self.entries, self.blocks, self.block_size = count, blocks, block_size
        self._top_data = self._bytes(top_at, top_len)
        return self._set_top(_decode_page(self._top_data, top_sum, self.name, "top index"))

    def _set_top(self, refs: list[_Ref]) -> list[_Ref]:
        self._top = refs
        self._top_keys = [(r.first_id, r.first_kind) for r in refs]
        return refs

    @property
    def top_index(self) -> bytes:
        """The top index as stored (after :meth:`open`)."""
        return self._top_data

    def _bytes(self, offset: int, length: int) -> bytes:
        """From the cached tail when it holds them, else one range read."""
        if offset >= self._tail_at and offset + length <= self._tail_at + len(self._tail):
            start = offset - self._tail_at
            return self._tail[start : start + length]
        data = self.source.read(offset, length)
        if len(data) != length:
            raise LocatorError(f"{self.name}: truncated (short read at offset {offset})")
        return data

    def _page(self, ref: _Ref) -> tuple[list[tuple[str, int]], list[_Ref]]:
        page = self._pages.get(ref.offset)
        if page is None:
            what = f"index page at offset {ref.offset}"
            if self._given_top is not None:
                what += " (or the listing's top index is not this locator's)"
            refs = _decode_page(self._bytes(ref.offset, ref.length), ref.checksum, self.name, what)
            page = ([(r.first_id, r.first_kind) for r in refs], refs)
            self._pages[ref.offset] = page
        return page

    def lookup(self, item_id: str, kind: int = TRACK) -> LocatorEntry | None:
        """The entry for ``item_id`` (a track's id, or an album's with :data:`COVER`)."""
        top = self._open()
        key = (item_id, kind)
        i = bisect.bisect_right(self._top_keys, key) - 1
        if i < 0:
            return None
        keys, refs = self._page(top[i])
        j = bisect.bisect_right(keys, key) - 1
        if j < 0:
            return None
        for entry in self._block(refs[j]):
            if entry.key == key:
                return entry
        return None

    def _block(self, ref: _Ref) -> list[LocatorEntry]:
        data = self._bytes(ref.offset, ref.length)
        where = f"{self.name}: block at offset {ref.offset}"
        if checksum(data) != ref.checksum:
            raise LocatorError(f"{where} is corrupt (checksum mismatch); fetch the locator again")
        try:
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=self.block_size)
            return _block_decoder.decode(raw)
        except (zstandard.ZstdError, msgspec.DecodeError) as exc:
            raise LocatorError(f"{where} cannot be decoded: {exc}") from None

    def __iter__(self) -> Iterator[LocatorEntry]:
        """Every entry in order (reads the whole file, block by block)."""
        for page_ref in self._open():
            for ref in self._page(page_ref)[1]:
                yield from self._block(ref)


def _decode_page(data: bytes, expected: bytes, name: str, what: str) -> list[_Ref]:
    if checksum(data) != expected:
        raise LocatorError(f"{name}: {what} is corrupt (checksum mismatch); fetch it again")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=_PAGE_LIMIT)
        return _page_decoder.decode(raw)
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise LocatorError(f"{name}: {what} cannot be decoded: {exc}") from None


def read_header(path: Path) -> tuple[int, int]:
    """(major, minor) version of a local locator file, checking its magic."""
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    if len(head) < HEADER.size or head[:8] != MAGIC:
        raise LocatorError(f"{path}: not a track locator (no header)")
    _, major, minor = HEADER.unpack(head)
    return major, minor
