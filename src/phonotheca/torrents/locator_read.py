"""Reading a track locator (:mod:`phonotheca.torrents.locator`) by range reads.

A lookup takes the top index (from the listing, or from the file's last 32 KiB, cached),
one leaf page (cached) and one block; each is checked against the checksum the level above
gives before it is decoded. The bytes come from a local file or from an HTTP server that
answers ``Range`` requests; every source counts its reads and bytes, which is what the
tests and the benchmark measure.
"""

from __future__ import annotations

import bisect
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import msgspec
import zstandard

from phonotheca.torrents.locator import (
    BLOCK_SIZE,
    FOOTER,
    HEADER,
    MAGIC,
    TAIL_READ,
    TRACK,
    VERSION,
    IndexRef,
    LocatorEntry,
    LocatorError,
    checksum,
)

_block_decoder = msgspec.msgpack.Decoder(list[LocatorEntry])
_page_decoder = msgspec.msgpack.Decoder(list[IndexRef])
_PAGE_LIMIT = 16 * 1024 * 1024  # decompressed size a top index or page may claim


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
        self._top: list[IndexRef] | None = None
        self._top_keys: list[tuple[str, int]] = []
        self._tail = b""
        self._tail_at = 0
        self._pages: dict[int, tuple[list[tuple[str, int]], list[IndexRef]]] = {}
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

    def _open(self) -> list[IndexRef]:
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

    def _set_top(self, refs: list[IndexRef]) -> list[IndexRef]:
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

    def _page(self, ref: IndexRef) -> tuple[list[tuple[str, int]], list[IndexRef]]:
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

    def _block(self, ref: IndexRef) -> list[LocatorEntry]:
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


def _decode_page(data: bytes, expected: bytes, name: str, what: str) -> list[IndexRef]:
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
