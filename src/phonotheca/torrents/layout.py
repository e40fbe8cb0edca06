"""The one reader of a ``.torrent``'s layout: its files, where they lie among the pieces.

``check`` (``phonotheca validate``), the mirror (``verify``, ``fetch``) and the server
(which tracks of a mirror are playable) all read torrents through :func:`parse_layout`,
so they agree on what a torrent says and refuse the same bad ones: the strict decoder of
:mod:`phonotheca.torrents.bencode`, the v1 file list in order with BEP 47 pad files
included, paths checked (no ``..``, no empty or absolute parts), piece hashes that match
the total length, and at most :data:`MAX_TORRENT_BYTES` read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from phonotheca.build.index import INDEX_FILE
from phonotheca.build.tarvolume import PAYLOAD_DIR
from phonotheca.torrents import bencode

MAX_TORRENT_BYTES = 16 << 20
"""Largest ``.torrent`` read (16 MiB): 800,000 pieces' hashes; ours are far smaller."""
INDEX_PATH = f"{PAYLOAD_DIR}/{INDEX_FILE}"
"""Where a collection's index lies in its torrent."""


class LayoutError(ValueError):
    """A ``.torrent`` that cannot be read or is not a valid one; the message says why."""


class TrackSpan(Protocol):
    """Where a track's bytes lie in its collection (an index entry)."""

    @property
    def id(self) -> str: ...
    @property
    def volume(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LayoutFile:
    path: str
    """``/``-separated, relative to the torrent's directory."""
    offset: int
    """Of its first byte in the torrent's v1 byte stream."""
    length: int
    pad: bool = False


@dataclass(frozen=True)
class TorrentLayout:
    name: str
    piece_length: int
    piece_hashes: bytes
    files: tuple[LayoutFile, ...]
    total: int
    """Bytes in the v1 stream, pad files included."""
    hybrid: bool = False
    """A v1+v2 torrent (its info dictionary has ``meta version``)."""

    @property
    def num_pieces(self) -> int:
        return len(self.piece_hashes) // 20

    def piece_hash(self, index: int) -> bytes:
        return self.piece_hashes[index * 20 : index * 20 + 20]

    def piece_size(self, index: int) -> int:
        return min(self.piece_length, self.total - index * self.piece_length)

    def find(self, path: str) -> LayoutFile | None:
        """The payload file at ``path`` (never a pad file), or None."""
        for f in self.files:
            if f.path == path and not f.pad:
                return f
        return None

    def file(self, path: str) -> LayoutFile:
        found = self.find(path)
        if found is None:
            raise KeyError(f"{self.name}: no file {path} in the torrent")
        return found

    def pieces(self, offset: int, length: int) -> range:
        """The pieces holding bytes ``[offset, offset + length)`` of the stream."""
        if length <= 0:
            return range(0)
        return range(offset // self.piece_length, (offset + length - 1) // self.piece_length + 1)

    def file_pieces(self, path: str) -> range:
        f = self.file(path)
        return self.pieces(f.offset, f.length)

    def files_in(self, piece: int) -> list[str]:
        """The paths of the payload files (no pad files) with bytes in ``piece``."""
        start = piece * self.piece_length
        end = start + self.piece_size(piece)
        return [
            f.path
            for f in self.files
            if not f.pad and f.length and f.offset < end and f.offset + f.length > start
        ]

    def track_span(self, entry: TrackSpan) -> tuple[int, int]:
        """(stream offset, length) of a track's data; KeyError when its volume is not here."""
        volume = self.file(f"{PAYLOAD_DIR}/{entry.volume}")
        return volume.offset + entry.offset, entry.length

    def tracks_in(
        self, pieces: Iterable[int], entries: Iterable[TrackSpan]
    ) -> dict[int, list[str]]:
        """For each piece, the ids of the tracks with bytes in it."""
        wanted = set(pieces)
        found: dict[int, list[str]] = {p: [] for p in sorted(wanted)}
        for entry in entries:
            try:
                offset, length = self.track_span(entry)
            except KeyError:
                continue
            for p in self.pieces(offset, length):
                if p in wanted:
                    found[p].append(entry.id)
        return found


def read_layout(path: Path) -> TorrentLayout:
    """The layout of the ``.torrent`` at ``path``; LayoutError names the file and why."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TORRENT_BYTES + 1)
    except OSError as exc:
        raise LayoutError(f"{path}: cannot read the torrent: {exc.strerror or exc}") from None
    return parse_layout(data, str(path))


def parse_layout(data: bytes, source: str = "torrent") -> TorrentLayout:
    """The v1 layout of a ``.torrent``'s bytes; LayoutError (naming ``source``) when they
    are not a valid torrent."""
    if len(data) > MAX_TORRENT_BYTES:
        raise LayoutError(f"{source}: larger than {MAX_TORRENT_BYTES >> 20} MiB, not a torrent")
    try:
        meta = bencode.decode(data)
    except bencode.BencodeError as exc:
        raise LayoutError(f"{source}: not a torrent: {exc}") from None
    info = meta.get(b"info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        raise LayoutError(f"{source}: not a torrent: no info dictionary")
    name = _text(info.get(b"name"), source, "name")
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise LayoutError(f"{source}: malformed torrent: unsafe name {name!r}")
    piece_length = info.get(b"piece length")
    hashes = info.get(b"pieces")
    if not isinstance(piece_length, int) or piece_length <= 0 or not isinstance(hashes, bytes):
        raise LayoutError(f"{source}: malformed torrent: no piece length or pieces")
    raw_files = info.get(b"files")
    if raw_files is None:  # single-file form: the file is the name
        raw_files = [{b"length": info.get(b"length", -1), b"path": [info[b"name"]]}]
    if not isinstance(raw_files, list):
        raise LayoutError(f"{source}: malformed torrent: 'files' is not a list")
    files: list[LayoutFile] = []
    offset = 0
    for entry in raw_files:
        if not isinstance(entry, dict):
            raise LayoutError(f"{source}: malformed torrent: a files entry is not a dictionary")
        length = entry.get(b"length")
        parts = entry.get(b"path")
        if not isinstance(length, int) or length < 0 or not isinstance(parts, list) or not parts:
            raise LayoutError(f"{source}: malformed torrent: a files entry has no length or path")
        texts = [_text(p, source, "path") for p in parts]
        if any(p in ("", ".", "..") or "/" in p or "\\" in p or "\0" in p for p in texts):
            raise LayoutError(f"{source}: malformed torrent: unsafe file path {texts!r}")
        attr = entry.get(b"attr", b"")
        pad = isinstance(attr, bytes) and b"p" in attr
        files.append(LayoutFile("/".join(texts), offset, length, pad))
        offset += length
    if len(hashes) % 20 or len(hashes) // 20 != -(-offset // piece_length):
        raise LayoutError(f"{source}: malformed torrent: piece hashes do not match the file sizes")
    return TorrentLayout(name, piece_length, hashes, tuple(files), offset, b"meta version" in info)


def _text(value: object, source: str, what: str) -> str:
    if not isinstance(value, bytes):
        raise LayoutError(f"{source}: malformed torrent: {what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise LayoutError(f"{source}: malformed torrent: {what} is not UTF-8") from None
