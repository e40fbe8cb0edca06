"""Piece hashing for BitTorrent v1 (BEP 3) and hybrid v1+v2 (BEP 52) torrents, in one pass.

:class:`PieceHasher` is fed the bytes of each file of a torrent in torrent order, as they are
produced (by a tar writer, or mapped from disk), so the build stage hashes while it writes and
never reads a volume twice. Pieces are hashed in a small thread pool, in batches of 1-4 MiB:
``hashlib`` releases the GIL on buffers over 2 KiB, so the workers use other cores while the
producer thread fills the next batch. Results are collected in submission order, so the output
does not depend on timing.

v1: SHA-1 of each piece, pieces running across file boundaries (what mktorrent computes).
Hybrid: every non-empty file starts on a piece boundary (the v1 list gets a BEP 47 pad file of
zeros after each non-empty file that does not end on one, the last file included, as
libtorrent writes them); each file gets a SHA-256 merkle tree over 16 KiB blocks, whose leaves
past the end of the file are 32 zero bytes, up to the next power of two leaves (BEP 52).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

BLOCK_SIZE = 16 * 1024
"""The BitTorrent v2 merkle leaf size."""
MIN_PIECE_LENGTH = 16 * 1024
SMALLEST_CHOSEN_PIECE_LENGTH = 32 * 1024
""":func:`piece_length_for` never picks less: mktorrent (1.1) cannot make 16 KiB pieces,
and every torrent we choose a piece length for should be reproducible with it."""
MAX_PIECE_LENGTH = 16 * 1024 * 1024
TARGET_PIECES = 2048
"""The piece length table doubles the piece length until a torrent has at most this many."""
BATCH_LENGTH = 1024 * 1024
"""Pieces are handed to the worker threads in batches of at least this many bytes."""
STABLE_BATCH_LENGTH = 4 * 1024 * 1024
"""Data hashed where it lies (``stable``) goes to the workers in batches of up to this many
bytes: no buffer to fill, so fewer and larger hand-overs cost less."""
PAD_DIRECTORY = ".pad"
"""BEP 47 pad files are listed as ``.pad/<size>`` with attribute ``p``."""

_ZERO_HASHES: list[bytes] = [bytes(32)]
"""``_ZERO_HASHES[k]`` is the root of a merkle subtree of ``2**k`` zero leaves."""
for _ in range(63):
    _ZERO_HASHES.append(hashlib.sha256(_ZERO_HASHES[-1] * 2).digest())


class Readable(Protocol):
    """A binary stream that can read into a buffer (an unbuffered ``open(path, "rb", 0)``)."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


def piece_length_for(total_size: int) -> int:
    """The piece length for a payload of ``total_size`` bytes (see docs/FORMAT.md, Torrents).

    The smallest power of two from 32 KiB to 16 MiB that gives at most 2,048 pieces, so a
    torrent has 1,025–2,048 pieces between 64 MiB and 32 GiB of payload, fewer below (32 KiB
    pieces, the least mktorrent makes) and more above (16 MiB pieces). Always a valid
    hybrid piece length.
    """
    if total_size < 0:
        raise ValueError(f"total size must not be negative, got {total_size}")
    length = SMALLEST_CHOSEN_PIECE_LENGTH
    while length < MAX_PIECE_LENGTH and total_size > TARGET_PIECES * length:
        length *= 2
    return length


def check_piece_length(piece_length: int) -> None:
    """Raise ValueError unless ``piece_length`` is a power of two from 16 KiB to 16 MiB."""
    if (
        piece_length < MIN_PIECE_LENGTH
        or piece_length > MAX_PIECE_LENGTH
        or piece_length & (piece_length - 1)
    ):
        raise ValueError(
            f"piece length must be a power of two from 16 KiB to 16 MiB, got {piece_length}"
        )


def merkle_root(hashes: Sequence[bytes], depth: int, level: int = 0) -> bytes:
    """The root of a SHA-256 merkle tree ``depth`` levels above ``hashes``.

    ``hashes`` are nodes at ``level`` (0 for leaves), at most ``2**depth`` of them; the missing
    nodes on the right are roots of all-zero subtrees of that level, as BEP 52 pads its trees.
    """
    if not hashes or len(hashes) > 1 << depth:
        raise ValueError(f"{len(hashes)} hashes do not fit a tree of depth {depth}")
    layer = list(hashes)
    sha256 = hashlib.sha256
    for height in range(level, level + depth):
        if len(layer) % 2:
            layer.append(_ZERO_HASHES[height])
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def order_key(path: Sequence[str], hybrid: bool) -> tuple[bytes, ...]:
    """The sort key that puts files in torrent order.

    v1: the UTF-8 bytes of the whole ``/``-joined path, as mktorrent sorts (so ``a-b`` comes
    before ``a/c``). Hybrid: the UTF-8 bytes of each path component in turn, the order of the
    v2 ``file tree`` dictionaries, which the v1 list of a hybrid torrent must follow.
    """
    if hybrid:
        return tuple(part.encode("utf-8") for part in path)
    return ("/".join(path).encode("utf-8"),)


def split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    """A torrent-relative path as its components, checked for what a torrent cannot hold."""
    parts = tuple(path.split("/")) if isinstance(path, str) else tuple(path)
    if not parts:
        raise ValueError("a file path in a torrent must not be empty")
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\0" in part:
            raise ValueError(f"invalid file path in a torrent: {'/'.join(parts)!r}")
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"file name is not valid UTF-8, which torrents require: {part!r}"
            ) from None
    return parts


@dataclass(frozen=True)
class FileHashes:
    """One file of a torrent, in torrent order, with its v2 hashes when the torrent is hybrid."""

    path: tuple[str, ...]
    length: int
    padding: int = 0
    """Bytes of the BEP 47 pad file that follows this file in the v1 list (hybrid only)."""
    pieces_root: bytes | None = None
    """The v2 merkle root (hybrid, non-empty files only)."""
    piece_layer: bytes = b""
    """The v2 piece layer: one 32-byte hash per piece, for files longer than one piece."""


@dataclass(frozen=True)
class PieceHashes:
    """Everything hashing a torrent's payload yields: what goes into its info dictionary."""

    piece_length: int
    hybrid: bool
    pieces: bytes
    """The concatenated SHA-1 hashes of the v1 pieces."""
    files: tuple[FileHashes, ...]

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    @property
    def total_size(self) -> int:
        """Payload bytes, without pad files."""
        return sum(f.length for f in self.files)


@dataclass
class _OpenFile:
    path: tuple[str, ...]
    length: int = 0
    pieces: int = 0
    padding: int = 0
    nodes: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class _Piece:
    """Where a piece lies in a batch buffer, and what to compute for it."""

    start: int
    size: int
    """Bytes hashed for v1: the piece with its padding (hybrid), or what there is (v1)."""
    data: int
    """Bytes of file data, before the padding."""
    depth: int | None
    """Height of its v2 merkle node above the 16 KiB leaves; None for v1 torrents."""
    file_index: int


def _hash_batch(buf: bytearray | memoryview, pieces: list[_Piece]) -> list[tuple[bytes, bytes]]:
    """SHA-1 and v2 merkle node of each piece in a buffer; runs in a worker thread.

    (Hashing each 16 KiB block with both SHA-1 and SHA-256 in turn, to read it while it is
    in the CPU cache, measured 1.5 % slower here than two passes over the piece.)
    """
    view = memoryview(buf)
    sha1 = hashlib.sha1
    sha256 = hashlib.sha256
    out = []
    for piece in pieces:
        start, data_end = piece.start, piece.start + piece.data
        # Over the pad file's zeros too, which the buffer holds after the data.
        v1 = sha1(view[start : start + piece.size]).digest()
        if piece.depth is None:
            out.append((v1, b""))
            continue
        leaves = [
            sha256(view[block : min(block + BLOCK_SIZE, data_end)]).digest()
            for block in range(start, data_end, BLOCK_SIZE)
        ]
        out.append((v1, merkle_root(leaves, piece.depth)))
    return out


_Batch = tuple["Future[list[tuple[bytes, bytes]]]", list[_Piece], "bytearray | None", int]
"""A batch handed to the workers: its result, its pieces, its buffer to reuse (None for data
hashed in place), and its length."""


class PieceHasher:
    """Hashes a torrent's payload as it is produced, file by file, in torrent order.

    Call :meth:`start_file`, then :meth:`update` (or :meth:`write`, so the hasher can stand
    in for a file object) with the file's bytes, then :meth:`end_file`; or :meth:`hash_stream`
    for a file that already exists. :meth:`finish` returns the hashes. Files must come in the
    order of :func:`order_key`; the hasher refuses any other, since the torrent would not
    match what other tools make for the same directory. Use from one thread; ``workers``
    threads hash behind it (0 hashes in the calling thread).

    ``lead``: bytes of data hashed in place that may wait for the workers beyond the two
    batches per worker (``bytes`` given to :meth:`update` are held until hashed). A caller
    that only feeds the hasher (:func:`~phonotheca.torrents.make.make_torrent`) lets it run
    far ahead, so the workers keep hashing while it waits for a CPU on a busy machine; the
    build's tar writer does not, so the three hashes of each byte stay close together
    (measured: a 64 MiB lead made packing slower, 0.86x in 5 alternating pairs).

    Pieces are hashed in batches of 1 MiB (or one piece, if larger), so that small pieces do
    not cost a thread hand-over each. Other data is copied into a batch buffer, but ``bytes``
    given to :meth:`update` (which cannot change), or data passed as ``stable`` (a mapping
    of a file), are hashed where they are, in the whole batches they hold (up to 4 MiB
    each): write a track's data in one call and it is never copied. Each worker hashes a
    batch piece by piece, SHA-1 over the piece, then (hybrid) SHA-256 over its 16 KiB
    blocks while the piece is still in the core's cache, so the data streams once through
    memory and both hashes of a piece run on the same core as the other worker hashes the
    next batch.
    """

    def __init__(
        self, piece_length: int, *, hybrid: bool = False, workers: int = 2, lead: int = 0
    ) -> None:
        check_piece_length(piece_length)
        if workers < 0:
            raise ValueError(f"workers must not be negative, got {workers}")
        self.piece_length = piece_length
        self.hybrid = hybrid
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="piece-hash") if workers else None
        )
        # Batches hashed but not yet collected: memory is (in_flight + 1) batch buffers.
        self._in_flight = 2 * workers
        # Batches hashed in place hold the caller's data (a mapping's pages belong to the
        # page cache), not buffers of ours, so up to ``lead`` bytes of them may wait.
        self._lead = lead
        self._pending_copies = 0
        self._pending_length = 0
        self._batch_length = max(piece_length, BATCH_LENGTH)
        self._stable_batch_length = max(piece_length, STABLE_BATCH_LENGTH)
        self._full_depth = _ceil_log2(piece_length // BLOCK_SIZE) if hybrid else None
        self._pending: deque[_Batch] = deque()
        self._free: list[bytearray] = []
        self._buf = bytearray(self._batch_length)
        self._fill = 0
        self._piece_start = 0
        self._pieces: list[_Piece] = []
        self._sha1: list[bytes] = []
        self._files: list[_OpenFile] = []
        self._current: _OpenFile | None = None
        self._last_key: tuple[bytes, ...] | None = None
        self._paths: set[tuple[str, ...]] = set()
        self._directories: set[tuple[str, ...]] = set()
        self._finished = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads; the hasher cannot be used afterwards."""
        self._finished = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def start_file(self, path: str | Sequence[str]) -> None:
        """Begin the next file; ``path`` is relative to the torrent's root directory."""
        if self._finished:
            raise RuntimeError("the hasher is finished")
        if self._current is not None:
            raise RuntimeError(f"file {'/'.join(self._current.path)!r} is not ended")
        parts = split_path(path)
        if self.hybrid and parts[0] == PAD_DIRECTORY:
            raise ValueError(f"{'/'.join(parts)!r}: {PAD_DIRECTORY}/ is reserved for pad files")
        if parts in self._paths:
            raise ValueError(f"{'/'.join(parts)!r} is already in the torrent")
        for end in range(1, len(parts) + 1):
            if parts[:end] in (self._directories if end == len(parts) else self._paths):
                raise ValueError(f"{'/'.join(parts[:end])!r} is both a file and a directory")
        key = order_key(parts, self.hybrid)
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(
                f"{'/'.join(parts)!r} given after {'/'.join(self._files[-1].path)!r}, which it "
                "sorts before: files must be given in torrent order (see order_key)"
            )
        self._directories.update(parts[:end] for end in range(1, len(parts)))
        self._last_key = key
        self._paths.add(parts)
        self._current = _OpenFile(parts)
        self._files.append(self._current)

    def update(self, data: bytes | bytearray | memoryview, *, stable: bool = False) -> None:
        """Add the next bytes of the current file.

        ``stable``: the caller promises the data will not change before :meth:`finish`
        (``bytes`` never do; a read-only mapping of a finished file region does not), so
        whole batches in it are hashed where they are, without a copy.
        """
        self._require_file()
        view = memoryview(data).cast("B")
        if stable or isinstance(data, bytes):
            # Data that cannot change under the workers: whole batches need no copy.
            open_piece = self._fill - self._piece_start
            head = self.piece_length - open_piece if open_piece else 0
            if len(view) - head >= self._batch_length:
                self._copy(view[:head])
                view = view[head:]
                if self._fill:
                    self._submit(self._buf)
                while len(view) >= self._batch_length:
                    whole = len(view) - len(view) % self._batch_length
                    n = min(whole, self._stable_batch_length)
                    self._hash_in_place(view[:n])
                    view = view[n:]
        self._copy(view)

    def _copy(self, view: memoryview) -> None:
        while view:
            n = min(len(view), self._batch_length - self._fill)
            self._buf[self._fill : self._fill + n] = view[:n]
            view = view[n:]
            self._advance(n)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """:meth:`update`, returning the byte count, as ``BinaryIO.write`` does."""
        self.update(data)
        return memoryview(data).nbytes

    def hash_stream(self, path: str | Sequence[str], stream: Readable) -> int:
        """Hash a whole file read from ``stream`` (to EOF) as ``path``; return its length.

        Reads straight into the batch buffers: with an unbuffered stream
        (``open(p, "rb", buffering=0)``) each byte is copied once, from the page cache.
        """
        self.start_file(path)
        current = self._require_file()
        while n := stream.readinto(memoryview(self._buf)[self._fill :]):
            self._advance(n)
        self.end_file()
        return current.length

    def end_file(self) -> None:
        """End the current file (in a hybrid torrent, pad its last piece with zeros)."""
        current = self._require_file()
        self._current = None
        data = self._fill - self._piece_start
        if not self.hybrid or data == 0:
            return
        current.padding = self.piece_length - data
        end = self._piece_start + self.piece_length
        self._buf[self._fill : end] = bytes(current.padding)
        # A file of one partial piece: its root spans only as many leaves as it needs.
        depth = _ceil_log2(-(-data // BLOCK_SIZE)) if current.pieces == 0 else self._full_depth
        self._add_piece(self.piece_length, data, depth)
        self._fill = end
        if self._fill == self._batch_length:
            self._submit(self._buf)

    def finish(self) -> PieceHashes:
        """Hash what remains, wait for the workers, and return all hashes."""
        if self._current is not None:
            raise RuntimeError(f"file {'/'.join(self._current.path)!r} is not ended")
        if self._finished:
            raise RuntimeError("the hasher is finished")
        try:
            if self._fill > self._piece_start:  # v1: the last piece is shorter
                data = self._fill - self._piece_start
                self._add_piece(data, data, None)
            if self._pieces:
                self._submit(self._buf)
            while self._pending:
                self._collect_oldest()
        finally:
            self.close()
        return PieceHashes(
            piece_length=self.piece_length,
            hybrid=self.hybrid,
            pieces=b"".join(self._sha1),
            files=tuple(self._file_hashes(f) for f in self._files),
        )

    def _file_hashes(self, f: _OpenFile) -> FileHashes:
        if not self.hybrid or f.length == 0:
            return FileHashes(f.path, f.length)
        if len(f.nodes) == 1:
            return FileHashes(f.path, f.length, f.padding, f.nodes[0])
        # The piece layer padded with roots of all-zero pieces up to a power of two.
        piece_level = _ceil_log2(self.piece_length // BLOCK_SIZE)
        root = merkle_root(f.nodes, _ceil_log2(len(f.nodes)), piece_level)
        return FileHashes(f.path, f.length, f.padding, root, b"".join(f.nodes))

    def _require_file(self) -> _OpenFile:
        if self._current is None:
            raise RuntimeError("no file started: call start_file first")
        return self._current

    def _add_piece(self, size: int, data: int, depth: int | None) -> None:
        file_index = len(self._files) - 1
        self._files[file_index].pieces += 1
        self._pieces.append(_Piece(self._piece_start, size, data, depth, file_index))
        self._piece_start += size

    def _advance(self, n: int) -> None:
        """Account for ``n`` bytes of the current file just put in the buffer."""
        self._require_file().length += n
        self._fill += n
        while self._fill - self._piece_start >= self.piece_length:
            self._add_piece(self.piece_length, self.piece_length, self._full_depth)
        if self._fill == self._batch_length:
            self._submit(self._buf)

    def _hash_in_place(self, view: memoryview) -> None:
        self._require_file().length += len(view)
        for _ in range(len(view) // self.piece_length):
            self._add_piece(self.piece_length, self.piece_length, self._full_depth)
        self._submit(view)

    def _submit(self, buf: bytearray | memoryview) -> None:
        pieces, self._pieces = self._pieces, []
        if self._pool is None:
            future: Future[list[tuple[bytes, bytes]]] = Future()
            future.set_result(_hash_batch(buf, pieces))
        else:
            future = self._pool.submit(_hash_batch, buf, pieces)
        copied = buf if buf is self._buf else None
        self._pending.append((future, pieces, copied, len(buf)))
        self._pending_copies += copied is not None
        self._pending_length += len(buf)
        while self._pending_copies > self._in_flight or (
            len(self._pending) > self._in_flight and self._pending_length > self._lead
        ):
            self._collect_oldest()
        if buf is self._buf:
            self._buf = self._free.pop() if self._free else bytearray(self._batch_length)
        self._fill = self._piece_start = 0

    def _collect_oldest(self) -> None:
        future, pieces, buf, length = self._pending.popleft()
        self._pending_copies -= buf is not None
        self._pending_length -= length
        for piece, (sha1, node) in zip(pieces, future.result(), strict=True):
            self._sha1.append(sha1)
            if self.hybrid:
                self._files[piece.file_index].nodes.append(node)
        if buf is not None:
            self._free.append(buf)
