"""The zstd seekable format: independent frames plus a seek table, so any part decompresses alone.

A seekable file is a plain sequence of zstd frames, each holding at most ``frame_size``
bytes of the input, followed by one skippable frame holding the seek table (Facebook's
``contrib/seekable_format``, "Zstandard Seekable Format" v0.1). Every zstd decoder reads it
as an ordinary file (``zstd -d`` skips the skippable frame); a reader that knows the format
reads the table at the end and decompresses only the frames that hold the bytes it wants,
e.g. one page of the published ``catalog.sqlite3``.

Seek table (little-endian): magic ``0x184D2A5E``, frame size, then per frame
``compressed size`` (u32), ``decompressed size`` (u32) and ``checksum`` (u32: the low 32
bits of the XXH64 of the frame's content, the same value as the frame's own content
checksum), then the footer: number of frames (u32), descriptor (u8, bit 7 = checksums
present), magic ``0x8F92EAB1``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

FRAME_SIZE = 4 << 20
"""Input bytes per frame: 4 MiB costs little in ratio and bounds a random read."""
SKIPPABLE_MAGIC = 0x184D2A5E
SEEKABLE_MAGIC = 0x8F92EAB1
_FOOTER = struct.Struct("<IBI")
_ENTRY = struct.Struct("<III")
_CHECKSUM_FLAG = 0x80
_MAX_FRAME = 0x7FFFFFFF  # sizes are u32 in the table; zstd frames stay far below


class SeekableError(ValueError):
    """Not a seekable zstd file, or a damaged one."""


@dataclass(frozen=True, slots=True)
class Frame:
    """Where one frame is: in the compressed file and in the decompressed content."""

    compressed_offset: int
    compressed_size: int
    offset: int
    size: int
    checksum: int | None


def compress_file(
    source: Path,
    dest: BinaryIO,
    *,
    level: int = 9,
    frame_size: int = FRAME_SIZE,
    threads: int = 2,
) -> list[Frame]:
    """Compress ``source`` into ``dest`` as a seekable zstd file; return its frames.

    Frames are compressed on ``threads`` threads (zstd releases the GIL), at most two
    per thread in flight, so memory stays bounded whatever the file's size.
    """
    if not 0 < frame_size <= _MAX_FRAME:
        raise ValueError(f"frame size {frame_size} must be from 1 to {_MAX_FRAME} bytes")
    frames: list[Frame] = []
    position = offset = 0

    def compress(chunk: bytes) -> tuple[bytes, int]:
        data = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        ).compress(chunk)
        return data, len(chunk)

    def emit(future: Future[tuple[bytes, int]]) -> None:
        nonlocal position, offset
        data, size = future.result()
        dest.write(data)
        # With write_checksum the frame ends in the low 32 bits of its content's XXH64,
        # which is exactly the checksum the seek table carries.
        checksum = int.from_bytes(data[-4:], "little")
        frames.append(Frame(position, len(data), offset, size, checksum))
        position += len(data)
        offset += size

    pending: list[Future[tuple[bytes, int]]] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, open(source, "rb") as f:
        while chunk := f.read(frame_size):
            pending.append(pool.submit(compress, chunk))
            if len(pending) >= 2 * max(1, threads):
                emit(pending.pop(0))
        for future in pending:
            emit(future)
    dest.write(seek_table(frames))
    return frames


def seek_table(frames: list[Frame]) -> bytes:
    """The skippable frame that ends a seekable file."""
    body = b"".join(
        _ENTRY.pack(f.compressed_size, f.size, f.checksum or 0) for f in frames
    ) + _FOOTER.pack(len(frames), _CHECKSUM_FLAG, SEEKABLE_MAGIC)
    return struct.pack("<II", SKIPPABLE_MAGIC, len(body)) + body


def read_seek_table(stream: BinaryIO) -> list[Frame]:
    """The frames of a seekable file, read from the table at its end."""
    end = stream.seek(0, os.SEEK_END)
    if end < _FOOTER.size + 8:
        raise SeekableError("too short to be a seekable zstd file")
    stream.seek(end - _FOOTER.size)
    count, descriptor, magic = _FOOTER.unpack(stream.read(_FOOTER.size))
    if magic != SEEKABLE_MAGIC:
        raise SeekableError("no seek table at the end (not a seekable zstd file)")
    if descriptor & 0x7C:
        raise SeekableError(f"seek table descriptor {descriptor:#x} has reserved bits set")
    has_checksum = bool(descriptor & _CHECKSUM_FLAG)
    entry_size = 12 if has_checksum else 8
    body_size = count * entry_size + _FOOTER.size
    table_start = end - body_size - 8
    if table_start < 0:
        raise SeekableError(f"seek table of {count} frames is longer than the file")
    stream.seek(table_start)
    head = stream.read(8)
    skippable, size = struct.unpack("<II", head)
    if skippable != SKIPPABLE_MAGIC or size != body_size:
        raise SeekableError("seek table frame header does not match its footer")
    entries = stream.read(count * entry_size)
    frames: list[Frame] = []
    position = offset = 0
    for i in range(count):
        raw = entries[i * entry_size : (i + 1) * entry_size]
        compressed, size_ = struct.unpack_from("<II", raw)
        checksum = struct.unpack_from("<I", raw, 8)[0] if has_checksum else None
        frames.append(Frame(position, compressed, offset, size_, checksum))
        position += compressed
        offset += size_
    if position != table_start:
        raise SeekableError(
            f"frames add up to {position} bytes but the seek table starts at {table_start}"
        )
    return frames


def read_frame(stream: BinaryIO, frame: Frame) -> bytes:
    """Decompress one frame alone (its checksum is checked by zstd)."""
    stream.seek(frame.compressed_offset)
    data = stream.read(frame.compressed_size)
    if len(data) != frame.compressed_size:
        raise SeekableError(f"frame at {frame.compressed_offset} is cut short")
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=frame.size)
    except zstandard.ZstdError as exc:
        raise SeekableError(f"frame at {frame.compressed_offset}: {exc}") from None
    if len(out) != frame.size:
        raise SeekableError(f"frame at {frame.compressed_offset} has {len(out)} bytes")
    return out


def read_range(stream: BinaryIO, offset: int, length: int) -> bytes:
    """``length`` bytes of the content from ``offset``, decompressing only the frames needed."""
    return b"".join(_pieces(stream, read_seek_table(stream), offset, length))


def _pieces(stream: BinaryIO, frames: list[Frame], offset: int, length: int) -> Iterator[bytes]:
    end = offset + length
    for frame in frames:
        if frame.offset + frame.size <= offset or frame.offset >= end:
            continue
        data = read_frame(stream, frame)
        yield data[max(0, offset - frame.offset) : end - frame.offset]
