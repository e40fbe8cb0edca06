"""Reading input files, plain or compressed, and noticing when they are cut short or damaged.

Every importer opens its input through :func:`open_input`: a ``.zst``, ``.gz``, ``.bz2``
or ``.xz`` file is decompressed on the fly (chosen by its name), anything else is read as
it is. The reader decodes the stream itself, frame by frame (zstd frames, gzip members,
bzip2 and xz streams, one after the other as ``pzstd``, ``pigz``, ``pbzip2`` or ``cat``
write them), so it knows where each one ends. When the file ends inside a stream (a
download or copy cut short), or a decoder rejects the data (a bad block, a checksum that
does not match), it raises :class:`DamagedInput`, which names the file and the offset in
the compressed file where reading stopped. The libraries' own readers do not all do that:
python-zstandard's stream reader returns a truncated frame's data and then a clean end of
file, and :mod:`lzma` and :mod:`bz2` end quietly at data after the first stream that
starts no valid stream.

The data decoded before the break is delivered first and the error is raised by the next
read, so a caller keeps every whole record before it. Memory stays bounded: compressed
data goes to a decoder a few KiB at a time, and each read returns at most what was asked.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zstandard

CODECS = {".zst": "zstd", ".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
"""File name endings of the compressed formats an importer reads, and their names."""
_MAGIC = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_MAGIC_OF = {codec: magic for magic, codec in _MAGIC}
_MAGIC_BYTES = max(len(m) for m, _ in _MAGIC)
FEED = 4096
"""Compressed bytes given to a decoder at a time (its output is capped by the read size)."""
ZSTD_FEED = 1024
"""For zstd, whose decoder returns everything a piece decodes to: at most ~32 MiB (zstd's
largest ratio is ~32,000:1), where a 64 KiB piece of a hostile file could give 2 GiB."""
RAW_BUFFER = 1 << 20
_ZSTD_WINDOW = 1 << 31  # the largest window zstd --long writes
# Between gzip members and after xz streams, zero bytes are padding (gzip -t accepts
# them, and xz's format defines stream padding); zstd and bzip2 have none.
_PADDED = frozenset({"gzip", "xz"})


class Readable(Protocol):
    """What line readers need of a stream of bytes."""

    def read(self, size: int = -1, /) -> bytes: ...


class SourceError(Exception):
    """An input file that cannot be read as asked (missing, of an unknown format, ...)."""


class DamagedInput(SourceError):
    """A compressed input that ends early (truncated) or holds data its decoder rejects.

    ``offset`` is the byte of the compressed file where reading stopped: for a truncated
    file its size; for damaged data how far the decoder had read when it gave up (the
    damage is before it: some is noticed only at a checksum, at a frame's end). An
    importer that catches it sets ``summary`` to what it did before the break.
    """

    def __init__(
        self, path: Path, codec: str, offset: int, size: int, reason: str, *, truncated: bool
    ) -> None:
        self.path = path
        self.codec = codec
        self.offset = offset
        self.size = size
        self.reason = reason
        self.truncated = truncated
        self.summary: Any = None
        if truncated and size == 0:
            message = f"empty {codec} file (0 bytes): nothing was read"
        elif truncated:
            message = (
                f"truncated {codec} file: it ends at byte {offset:,}, inside a compressed"
                " stream; the rest was not read"
            )
        else:
            message = (
                f"damaged {codec} data: the stream breaks at byte {offset:,} of {size:,}"
                f" ({reason}); the rest of the file was not read"
            )
        super().__init__(f"{path}: {message}")


def codec_of(path: Path) -> str | None:
    """The compression of ``path`` by its name (``.zst``, ``.gz``, ``.bz2``, ``.xz``), or None."""
    return CODECS.get(path.suffix.lower())


def sniff(head: bytes) -> str | None:
    """The compression whose magic number ``head`` starts with, or None."""
    if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
        return "zstd"  # a skippable frame (pzstd starts with one)
    return next((codec for magic, codec in _MAGIC if head.startswith(magic)), None)


def stem(path: Path) -> str:
    """The file name without a compression ending, in lower case: ``a.jsonl.zst`` -> ``a.jsonl``."""
    name = path.name.lower()
    return name[: -len(path.suffix)] if codec_of(path) else name


# -- decoders: one stream (frame, member) each ----------------------------------------------


class _Decoder:
    """One compressed stream: ``pull`` returns output (b"" when it needs input or is at its
    end), ``push`` gives it input, ``eof`` tells the stream ended, ``leftover`` what was
    given past its end."""

    @property
    def eof(self) -> bool:
        raise NotImplementedError

    def push(self, data: bytes) -> None:
        raise NotImplementedError

    def pull(self, size: int) -> bytes:
        raise NotImplementedError

    def leftover(self) -> bytes:
        raise NotImplementedError


class _Zstd(_Decoder):
    def __init__(self) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
        self._d = dctx.decompressobj(read_across_frames=False)
        self._out = b""
        self._at = 0

    def push(self, data: bytes) -> None:
        self._out = b""  # the next output is allocated while the last would still be held
        self._out, self._at = self._d.decompress(data), 0

    def pull(self, size: int) -> bytes:
        piece = self._out[self._at : self._at + size]
        self._at += len(piece)
        return piece

    @property
    def eof(self) -> bool:
        return bool(self._d.eof) and self._at >= len(self._out)

    def leftover(self) -> bytes:
        return bytes(self._d.unused_data)


class _Gzip(_Decoder):
    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)  # a gzip header and trailer (CRC-32, size)
        self._in = b""

    def push(self, data: bytes) -> None:
        self._in += data

    def pull(self, size: int) -> bytes:
        out = self._d.decompress(self._in, size)
        self._in = self._d.unconsumed_tail
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof

    def leftover(self) -> bytes:
        return self._d.unused_data


class _Std(_Decoder):
    """bzip2 and xz: the standard library's decoders take ``max_length`` and keep the rest."""

    def __init__(self, decoder: bz2.BZ2Decompressor | lzma.LZMADecompressor) -> None:
        self._d = decoder
        self._in = b""

    def push(self, data: bytes) -> None:
        self._in = data

    def pull(self, size: int) -> bytes:
        if self._d.eof or (not self._in and self._d.needs_input):
            return b""
        data, self._in = self._in, b""
        return self._d.decompress(data, size)

    @property
    def eof(self) -> bool:
        return self._d.eof

    def leftover(self) -> bytes:
        return self._d.unused_data


def _decoder(codec: str) -> _Decoder:
    if codec == "zstd":
        return _Zstd()
    if codec == "gzip":
        return _Gzip()
    if codec == "bzip2":
        return _Std(bz2.BZ2Decompressor())
    return _Std(lzma.LZMADecompressor(format=lzma.FORMAT_XZ))


_DECODER_ERRORS = (zstandard.ZstdError, zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)


# -- the reader -----------------------------------------------------------------------------


class InputStream(io.RawIOBase):
    """The decompressed bytes of an input file (or its bytes, when it is not compressed).

    ``position`` is how far into the file as stored reading has gone (for progress bars
    and error messages), ``size`` the file's size.
    """

    def __init__(self, path: Path, codec: str | None) -> None:
        super().__init__()
        self.path = path
        self.codec = codec
        try:
            self._raw = io.BufferedReader(io.FileIO(path, "r"), RAW_BUFFER)
            self.size = os.fstat(self._raw.fileno()).st_size
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        self.position = 0
        self.streams = 0
        """Streams (frames, members) read to their end."""
        self._feed = ZSTD_FEED if codec == "zstd" else FEED
        self._dec: _Decoder | None = None
        self._unused = b""
        self._started = False
        self._error: DamagedInput | None = None

    def readable(self) -> bool:
        return True

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes of the file as stored (before reading anything)."""
        return self._raw.peek(size)[:size]

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); b"" at the end.

        Raises :class:`DamagedInput` where the stream breaks: the bytes decoded before the
        break are returned first, and the next read raises.
        """
        if self._error is not None:
            raise self._error
        if self.codec is None:
            data = self._raw.read(-1 if size is None else size)
            self.position += len(data)
            return data
        data, error = read_pieces(self._next, size, 1 << 24)
        if error is not None:
            self._error = error
            if not data:
                raise error
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def damage_ahead(self, limit: int | None = 16 << 20) -> DamagedInput | None:
        """Read on (discarding) up to ``limit`` more bytes of the file as stored (None: to
        its end), and return the :class:`DamagedInput` met there, if any.

        For a reader of the decompressed bytes that found them malformed (a tar header
        that is not one): the compressed stream may be damaged where a decoder does not
        check it at once (bzip2 checks a block, xz a block, when it ends), and then that
        is the error to report.
        """
        if self.codec is None:
            return None
        stop = self.size + 1 if limit is None else self.position + limit
        try:
            while self.position < stop and self.read(1 << 20):
                pass
        except DamagedInput as exc:
            return exc
        return None

    # -- decoding -------------------------------------------------------------------------

    def _read_raw(self) -> bytes:
        data = self._raw.read(self._feed)
        self.position += len(data)
        return data

    def _damaged(self, reason: str, *, truncated: bool, at: int | None = None) -> DamagedInput:
        assert self.codec is not None
        offset = self.position if at is None else at
        return DamagedInput(self.path, self.codec, offset, self.size, reason, truncated=truncated)

    def _start(self) -> bool:
        """Begin the next stream; False at a clean end of the file."""
        assert self.codec is not None
        data, self._unused = self._unused, b""
        while True:  # enough bytes to tell a stream's start, past any padding
            if self.codec in _PADDED and self._started:
                data = data.lstrip(b"\0")
            if len(data) >= _MAGIC_BYTES:
                break
            more = self._read_raw()
            if not more:
                break
            data += more
        if not data:
            if not self._started:
                raise self._damaged("empty", truncated=True)
            return False
        seen = sniff(data)
        if seen != self.codec:
            if _MAGIC_OF[self.codec].startswith(data):
                raise self._damaged("ends early", truncated=True)
            if self._started:
                reason = f"not {self.codec} data after the end of stream {self.streams}"
            else:
                reason = f"not {self.codec} data"
                reason += f": it starts like {seen} data" if seen else ""
            raise self._damaged(reason, truncated=False, at=self.position - len(data))
        self._started = True
        self._dec = _decoder(self.codec)
        self._push(data)
        return True

    def _push(self, data: bytes) -> None:
        assert self._dec is not None
        try:
            self._dec.push(data)
        except _DECODER_ERRORS as exc:
            raise self._damaged(_reason(exc), truncated=False) from exc

    def _next(self, size: int) -> bytes:
        """Some decoded bytes (at most ``size``), b"" at a clean end of the file."""
        while True:
            if self._dec is None and not self._start():
                return b""
            assert self._dec is not None
            try:
                out = self._dec.pull(size)
            except _DECODER_ERRORS as exc:
                raise self._damaged(_reason(exc), truncated=False) from exc
            if out:
                return out
            if self._dec.eof:
                self._unused = self._dec.leftover()
                self._dec = None
                self.streams += 1
                continue
            data = self._read_raw()
            if not data:
                raise self._damaged("ends early", truncated=True)
            self._push(data)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def open_input(path: Path) -> InputStream:
    """Open ``path`` for reading its decompressed bytes, by its name (:data:`CODECS`).

    A file named as uncompressed whose content starts like a compressed format is
    refused: a ``.jsonl`` holding zstd data would otherwise become a file of rejected
    lines.
    """
    stream = InputStream(path, codec_of(path))
    if stream.codec is None:
        seen = sniff(stream.peek(8))
        if seen is not None:
            stream.close()
            ending = next(k for k, v in CODECS.items() if v == seen)
            raise SourceError(
                f"{path}: the file holds {seen}-compressed data but its name does not say so:"
                f" name it {path.name}{ending}"
            )
    return stream


def read_pieces(
    next_piece: Callable[[int], bytes], size: int | None, chunk: int
) -> tuple[bytes, DamagedInput | None]:
    """Up to ``size`` bytes (all when negative) from ``next_piece``, ``chunk`` at a time,
    and the :class:`DamagedInput` that stopped it, if any: the bytes read before a break
    come first, so a reader can hand them out and raise the error on its next read."""
    want = (1 << 62) if size is None or size < 0 else size
    parts: list[bytes] = []
    got = 0
    try:
        while got < want:
            piece = next_piece(min(want - got, chunk))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except DamagedInput as exc:
        return b"".join(parts), exc
    return (parts[0] if len(parts) == 1 else b"".join(parts)), None
