"""Deterministic, uncompressed POSIX tar volumes (docs/FORMAT.md, "Collections").

Members are written in the caller's order with fixed headers (mode 0644, uid/gid 0, empty
owner names, one mtime), as POSIX ustar; a pax extended header precedes a member only when
its name is not printable ASCII or longer than 100 bytes, or its size needs more than 11
octal digits. Every byte written to a volume goes to an optional byte sink, so a piece
hasher sees each file as it is written, and volumes appear under their final name only
once complete (``<name>.partial``, fsync, rename).

Each source is read once, straight into a window of volume bytes in memory
(:mod:`phonotheca.build.volumewindow`); the window is written to the volume with direct
I/O where the filesystem allows (:mod:`phonotheca.build.volumeio`), and the same buffer
is hashed: the member and volume SHA-256 of each byte in one pass
(:mod:`phonotheca.sha256pair`) on a thread of their own, SHA-1 pieces on the piece
hasher's threads, while the next window is read. Every file gets one fsync, at its end.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from phonotheca import sha256pair
from phonotheca.build.volumeio import open_volume
from phonotheca.build.volumewindow import DigestThread, Window, WriteThread
from phonotheca.durable import sync_directory
from phonotheca.sha256pair import Digest

BLOCK = 512
"""Tar block size: headers, data and padding come in 512-byte blocks."""
RECORD = 20 * BLOCK
"""Volumes are padded to a multiple of the POSIX default record (blocking factor 20)."""
DEFAULT_VOLUME_SIZE = 4 * 2**30
COPY_CHUNK = 2**20
MAX_NAME_BYTES = 100
"""The ustar name field; :func:`member_name` stays within it so pax headers are rare."""
MAX_OCTAL_11 = 8**11 - 1
"""Largest size or mtime an 11-digit octal ustar field holds (8 GiB − 1; year 2242)."""
MAX_VOLUMES = 9999
PARTIAL_SUFFIX = ".partial"
PAX_HEADER_NAME = b"././@PaxHeader"
PAYLOAD_DIR = "data"


class ByteSink(Protocol):
    """Sees every file of a bag as it is written: ``start_file(path)`` (relative to the bag,
    ``/``-separated), ``update(chunk)`` for each chunk in order, ``end_file()``. A chunk
    passed with ``stable=True`` will not change while the sink holds it, so the sink may
    keep it and read it later instead of copying. The torrents' ``PieceHasher`` is
    one."""

    def start_file(self, path: str) -> None: ...
    def update(self, data: bytes | memoryview, *, stable: bool = False) -> None: ...
    def end_file(self) -> None: ...


_EXT = re.compile(r"[A-Za-z0-9]{1,16}")
_ESCAPED = frozenset("/\\%~")
_HASH_HEX = 16
_EOA = 2 * BLOCK


class PackError(Exception):
    """Packing cannot go on: a bad member name or size, a stream of the wrong length.

    ``member`` names the member whose data was wrong (changed, short, long), when the
    error is about one: the caller can set that track aside and pack again.
    """

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


def _padding(n: int, unit: int = BLOCK) -> int:
    return -n % unit


def _escape_all(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def _escape_char(ch: str) -> str:
    if ch in _ESCAPED or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
        return _escape_all(ch)
    return ch


def _truncate(text: str, budget: int) -> str:
    """The longest prefix of ``text`` within ``budget`` UTF-8 bytes, not cutting an escape."""
    used = 0
    end = 0
    for i, ch in enumerate(text):
        used += len(ch.encode("utf-8"))
        if used > budget:
            break
        end = i + 1
    head = text[:end]
    tail = head[-2:]
    if "%" in tail:  # a cut %XX escape would read as a different character
        head = head[: len(head) - len(tail) + tail.index("%")]
    return head


def member_name(public_id: str, ext: str) -> str:
    """A safe, unique, deterministic tar member name ``<id>.<ext>`` for a track.

    The id is NFC-normalised; ``/``, ``\\``, ``%``, ``~``, control and line-separator
    characters and a leading ``.`` are percent-encoded (UTF-8, upper-case hex). When the
    id was not NFC or the name would pass 100 bytes, the escaped id is cut and
    ``~`` plus the first 16 hex digits of the sha256 of the original id is appended, so
    distinct ids always give distinct names (plain names never contain ``~``).
    """
    if not public_id:
        raise ValueError("a member name needs a non-empty public id")
    if not _EXT.fullmatch(ext):
        raise ValueError(f"extension {ext!r} must be 1-16 ASCII letters or digits")
    suffix = "." + ext
    nfc = unicodedata.normalize("NFC", public_id)
    escaped = "".join(_escape_char(ch) for ch in nfc)
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    name = escaped + suffix
    if (
        nfc == public_id
        and len(name.encode("utf-8")) <= MAX_NAME_BYTES
        and unicodedata.normalize("NFC", name) == name
    ):
        return name
    digest = hashlib.sha256(public_id.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    budget = MAX_NAME_BYTES - len(suffix) - 1 - _HASH_HEX
    name = f"{_truncate(escaped, budget)}~{digest}{suffix}"
    if unicodedata.normalize("NFC", name) != name:
        # Escaping or cutting left a combining mark after a new base character: fall back
        # to an all-ASCII name, which is NFC by construction.
        ascii_id = "".join(c if c.isascii() else _escape_all(c) for c in escaped)
        name = f"{_truncate(ascii_id, budget)}~{digest}{suffix}"
    return name


def check_member_name(name: str) -> None:
    """Refuse names that are not one flat, NFC, printable file name."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name)
        or unicodedata.normalize("NFC", name) != name
    ):
        raise PackError(
            f"member name {name!r} must be one NFC file name without '/' or control"
            " characters (use member_name())"
        )


def _octal(value: int, width: int) -> bytes:
    """A NUL-terminated, zero-padded octal field of ``width`` bytes."""
    return b"%0*o\0" % (width - 1, value)


def _ustar_block(name: bytes, size: int, mtime: int, typeflag: bytes) -> bytes:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = _octal(0o644, 8)
    block[108:116] = _octal(0, 8)  # uid
    block[116:124] = _octal(0, 8)  # gid
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8  # the checksum is computed over spaces in its own field
    block[156:157] = typeflag
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    # uname, gname, devmajor, devminor and prefix stay NUL-filled.
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _pax_record(key: str, value: bytes) -> bytes:
    """``"<len> <key>=<value>\\n"`` where <len> counts the whole record, itself included."""
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) + len(body) != length:
        length += 1
    return b"%d" % length + body


def _ascii_fallback(name: str) -> bytes:
    text = "".join(c if " " <= c <= "~" else "_" for c in name)
    if len(text) > MAX_NAME_BYTES:
        text = text[:50] + text[-50:]
    return text.encode("ascii")


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The header blocks of one regular-file member: [pax header + records] and ustar."""
    if size < 0:
        raise PackError(f"{name}: negative size {size}")
    if not 0 <= mtime <= MAX_OCTAL_11:
        raise PackError(f"mtime {mtime} is outside 0..{MAX_OCTAL_11}")
    encoded = name.encode("utf-8")
    printable = all(" " <= c <= "~" for c in name)
    records = b""
    if not printable or len(encoded) > MAX_NAME_BYTES:
        records += _pax_record("path", encoded)
    if size > MAX_OCTAL_11:
        records += _pax_record("size", b"%d" % size)
    if not records:
        return _ustar_block(encoded, size, mtime, b"0")
    return (
        _ustar_block(PAX_HEADER_NAME, len(records), mtime, b"x")
        + records
        + bytes(_padding(len(records)))
        + _ustar_block(_ascii_fallback(name), 0 if size > MAX_OCTAL_11 else size, mtime, b"0")
    )


def member_span(name: str, size: int) -> int:
    """Bytes a member takes in a volume: its headers, its data and the data's padding."""
    return len(member_header(name, size, 0)) + size + _padding(size)


def volume_name(collection: str, number: int) -> str:
    if not 1 <= number <= MAX_VOLUMES:
        raise PackError(f"{collection}: more than {MAX_VOLUMES} volumes; raise the volume size")
    return f"{collection}.{number:04d}.tar"


def closed_size(used: int) -> int:
    """A volume's final size once ``used`` bytes of members get end-of-archive blocks."""
    end = used + _EOA
    return end + _padding(end, RECORD)


def fits(used: int, span: int, max_volume_size: int) -> bool:
    """Whether a member of ``span`` bytes goes into a volume with ``used`` bytes of members.

    An empty volume takes any member, so a member larger than the limit gets a volume of
    its own (the only case where a volume passes the limit).
    """
    return used == 0 or closed_size(used + span) <= max_volume_size


@dataclass(frozen=True, slots=True)
class MemberLocation:
    """Where a member's data lies: ``length`` bytes at ``offset`` in ``data/<volume>``."""

    name: str
    volume: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PackedMember:
    """A written member: its location and the sha256 (hex) of its data."""

    name: str
    volume: str
    offset: int
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """A finished volume: file name (in ``data/``), size, sha256 (hex), member count."""

    name: str
    size: int
    sha256: str
    members: int


@dataclass(frozen=True, slots=True)
class PlannedVolume:
    name: str
    size: int
    members: tuple[MemberLocation, ...]


def plan_volumes(
    collection: str, members: Iterable[tuple[str, int]], max_volume_size: int
) -> list[PlannedVolume]:
    """The volumes :class:`VolumeWriter` will write for these (name, size) members.

    Known before any data is read, so a build can compute every size and offset (and so
    where each file starts in the torrent) up front.
    """
    check_volume_size(max_volume_size)
    volumes: list[PlannedVolume] = []
    current: list[MemberLocation] = []
    used = 0
    for name, size in members:
        check_member_name(name)
        span = member_span(name, size)
        if not fits(used, span, max_volume_size):
            volumes.append(PlannedVolume(current[0].volume, closed_size(used), tuple(current)))
            current, used = [], 0
        vol = volume_name(collection, len(volumes) + 1)
        header = span - size - _padding(size)
        current.append(MemberLocation(name, vol, used + header, size))
        used += span
    if current:
        volumes.append(PlannedVolume(current[0].volume, closed_size(used), tuple(current)))
    return volumes


def check_volume_size(max_volume_size: int) -> None:
    if max_volume_size < RECORD:
        raise PackError(f"the volume size must be at least {RECORD} bytes")


def _reader(stream: BinaryIO) -> Callable[[memoryview], int]:
    """``readinto`` for any binary stream (not all have one)."""

    def readinto(view: memoryview) -> int:
        chunk = stream.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    return readinto


@dataclass
class _OpenVolume:
    name: str
    path: Path
    partial: Path
    fd: int
    window: Window
    used: int = 0
    """Bytes of the volume so far: written, or in the window."""
    members: int = 0
    digest: Digest = field(default_factory=sha256pair.sha256)


class VolumeWriter:
    """Writes members, in the order added, into ``<collection>.NNNN.tar`` in ``data_dir``.

    ``sink`` sees every byte of each volume in order (headers, data, padding,
    end-of-archive) as file ``data/<volume>``, a window at a time. Use the writer as a
    context manager: an exception deletes the unfinished ``.partial`` volume.
    """

    def __init__(
        self,
        data_dir: Path,
        collection: str,
        *,
        mtime: int,
        max_volume_size: int = DEFAULT_VOLUME_SIZE,
        sink: ByteSink | None = None,
    ) -> None:
        check_volume_size(max_volume_size)
        if not 0 <= mtime <= MAX_OCTAL_11:
            raise PackError(f"mtime {mtime} is outside 0..{MAX_OCTAL_11}")
        self.data_dir = data_dir
        self.collection = collection
        self.mtime = mtime
        self.max_volume_size = max_volume_size
        self.sink = sink
        self.volumes: list[VolumeFile] = []
        self._current: _OpenVolume | None = None
        self._names: set[str] = set()
        self._failed = False
        self._digests = DigestThread()
        self._writes = WriteThread(self._digests)
        self._mismatch: list[PackError] = []

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.abort()
            finally:
                self._stop_threads()

    def add(
        self, name: str, size: int, data: bytes | BinaryIO | Path, sha256: str | None = None
    ) -> PackedMember:
        """Write one member of ``size`` bytes from ``data``; return where it lies.

        ``data`` is bytes, a binary stream read for exactly ``size`` bytes, or a file path
        opened only now. When ``sha256`` (hex) is given, the data must have that hash:
        checked once the member is hashed, at the latest when its volume is finished.

        A failure while writing drops the unfinished volume and ends the writer: its
        earlier members in that volume are lost with it, so the caller must start over.
        """
        if self._failed:
            raise PackError("an earlier member failed; this writer cannot go on")
        check_member_name(name)
        if name in self._names:
            raise PackError(f"member {name!r} is added twice")
        header = member_header(name, size, self.mtime)
        span = len(header) + size + _padding(size)
        vol = self._current
        if vol is not None and not fits(vol.used, span, self.max_volume_size):
            self._finish()
            vol = None
        if vol is None:
            vol = self._open()
        if isinstance(data, bytes | bytearray | memoryview) and len(data) != size:
            raise PackError(f"{name}: {len(data)} bytes given for a size of {size}")
        self._names.add(name)
        try:
            self._put(vol, memoryview(header))
            offset = vol.used
            digest = sha256pair.sha256()
            if isinstance(data, bytes | bytearray | memoryview):
                self._put(vol, memoryview(data).cast("B"), digest)
            elif isinstance(data, Path):
                with data.open("rb", buffering=0) as stream:
                    self._read(vol, name, size, stream.readinto, stream, digest)
            else:
                self._read(vol, name, size, _reader(data), data, digest)
            if sha256 is None:
                self._skip(vol, _padding(size))
                self._flush(vol)
                self._drain()
                sha256 = digest.hexdigest()
            else:
                vol.window.checks.append(self._checker(name, digest, sha256))
                self._skip(vol, _padding(size))
        except BaseException:
            self._failed = True
            self.abort()
            raise
        vol.members += 1
        return PackedMember(name, vol.name, offset, size, sha256)

    def _checker(self, name: str, digest: Digest, expected: str) -> Callable[[], None]:
        def check() -> None:
            if digest.hexdigest() != expected:
                self._mismatch.append(
                    PackError(
                        f"{name}: the data's sha256 is {digest.hexdigest()}, not {expected}"
                        " (did the source change?)",
                        member=name,
                    )
                )

        return check

    def _read(
        self,
        vol: _OpenVolume,
        name: str,
        size: int,
        readinto: Callable[[memoryview], int | None],
        stream: BinaryIO | io.FileIO,
        digest: Digest,
    ) -> None:
        """Read exactly ``size`` bytes of ``stream`` (with ``readinto``) into the windows."""
        left = size
        while left:
            window = vol.window
            n = readinto(window.view[window.fill : window.fill + min(left, window.space)])
            if not n:
                raise PackError(
                    f"{name}: the data ended after {size - left} of {size} bytes", member=name
                )
            window.took(n, digest)
            vol.used += n
            left -= n
            if not window.space:
                self._flush(vol)
        if stream.read(1):
            raise PackError(
                f"{name}: the data is longer than its size of {size} bytes", member=name
            )

    def _put(self, vol: _OpenVolume, data: memoryview, member: Digest | None = None) -> None:
        while data:
            n = vol.window.put(data, member)
            vol.used += n
            data = data[n:]
            if not vol.window.space:
                self._flush(vol)

    def _skip(self, vol: _OpenVolume, n: int) -> None:
        """``n`` bytes of zeros (padding, end of archive)."""
        while n:
            take = vol.window.zeros(n)
            vol.used += take
            n -= take
            if not vol.window.space:
                self._flush(vol)

    def _flush(self, vol: _OpenVolume) -> None:
        """Write the window, hand it to the hashers, and start a new one after it."""
        if self._writes.error is not None:
            raise self._writes.error
        window = vol.window
        if window.fill and self.sink is not None:
            self.sink.update(window.lend(), stable=True)
        self._writes.write(vol.fd, vol.digest, window)
        vol.window = self._digests.window(vol.used)

    def _drain(self) -> None:
        """Wait until every window is written and hashed; raise a write's error."""
        self._writes.drain()
        if self._writes.error is not None:
            raise self._writes.error

    def _open(self) -> _OpenVolume:
        name = volume_name(self.collection, len(self.volumes) + 1)
        path = self.data_dir / name
        partial = path.with_name(name + PARTIAL_SUFFIX)
        # Truncates whatever a killed run left under the .partial name.
        self._current = _OpenVolume(
            name, path, partial, open_volume(partial), self._digests.window(0)
        )
        if self.sink is not None:
            self.sink.start_file(f"{PAYLOAD_DIR}/{name}")
        return self._current

    def _finish(self) -> None:
        vol = self._current
        assert vol is not None
        self._skip(vol, closed_size(vol.used) - vol.used)
        self._flush(vol)
        if self.sink is not None:
            self.sink.end_file()
        try:
            self._drain()
        except OSError:
            self._failed = True
            self.abort()
            raise
        if self._mismatch:
            self._failed = True
            self.abort()
            raise self._mismatch[0]
        os.fsync(vol.fd)
        os.close(vol.fd)
        os.replace(vol.partial, vol.path)
        sync_directory(self.data_dir)
        self.volumes.append(VolumeFile(vol.name, vol.used, vol.digest.hexdigest(), vol.members))
        self._current = None

    def close(self) -> list[VolumeFile]:
        """Finish the open volume (if any) and return every volume written."""
        try:
            if self._current is not None:
                self._finish()
        finally:
            self._stop_threads()
        return self.volumes

    def _stop_threads(self) -> None:
        self._writes.close()
        self._digests.close()

    def abort(self) -> None:
        """Drop the unfinished volume; finished ones stay."""
        vol = self._current
        if vol is not None:
            self._writes.drain()
            os.close(vol.fd)
            vol.partial.unlink(missing_ok=True)
            self._current = None
