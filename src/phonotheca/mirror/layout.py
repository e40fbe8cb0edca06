"""Where the bytes of a torrent's files and tracks fall among its pieces.

Read from the ``.torrent`` itself (v1 file list, BEP 47 pad files of hybrid torrents
included), so ``verify`` and ``fetch`` map a piece to the files and tracks it holds, and a
track to the pieces that hold it, without a libtorrent session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import libtorrent as lt

from phonotheca.build.index import INDEX_FILE, IndexEntry
from phonotheca.build.tarvolume import PAYLOAD_DIR

INDEX_PATH = f"{PAYLOAD_DIR}/{INDEX_FILE}"


@dataclass(frozen=True, slots=True)
class LayoutFile:
    path: str
    """``/``-separated, relative to the torrent's directory."""
    offset: int
    """Of its first byte in the torrent's byte stream."""
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

    @property
    def num_pieces(self) -> int:
        return len(self.piece_hashes) // 20

    def piece_hash(self, index: int) -> bytes:
        return self.piece_hashes[index * 20 : index * 20 + 20]

    def piece_size(self, index: int) -> int:
        return min(self.piece_length, self.total - index * self.piece_length)

    def file(self, path: str) -> LayoutFile:
        for f in self.files:
            if f.path == path and not f.pad:
                return f
        raise KeyError(f"{self.name}: no file {path} in the torrent")

    def pieces(self, offset: int, length: int) -> range:
        """The pieces holding bytes ``[offset, offset + length)`` of the stream."""
        if length <= 0:
            return range(0)
        return range(offset // self.piece_length, (offset + length - 1) // self.piece_length + 1)

    def file_pieces(self, path: str) -> range:
        f = self.file(path)
        return self.pieces(f.offset, f.length)

    def files_in(self, piece: int) -> list[str]:
        start = piece * self.piece_length
        end = start + self.piece_size(piece)
        return [
            f.path
            for f in self.files
            if not f.pad and f.length and f.offset < end and f.offset + f.length > start
        ]

    def track_span(self, entry: IndexEntry) -> tuple[int, int]:
        """(stream offset, length) of a track's data."""
        volume = self.file(f"{PAYLOAD_DIR}/{entry.volume}")
        return volume.offset + entry.offset, entry.length

    def tracks_in(
        self, pieces: Iterable[int], entries: Iterable[IndexEntry]
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


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_layout(torrent_data: bytes) -> TorrentLayout:
    """The v1 layout of a ``.torrent``; raises ValueError when it is not a valid one."""
    meta: Any = lt.bdecode(torrent_data)
    if not isinstance(meta, dict) or not isinstance(meta.get(b"info"), dict):
        raise ValueError("not a .torrent: no info dictionary")
    info = meta[b"info"]
    try:
        name = _text(info[b"name"])
        piece_length = int(info[b"piece length"])
        hashes = bytes(info[b"pieces"])
        raw_files = info.get(b"files")
        if raw_files is None:  # single-file form: the file is the name
            raw_files = [{b"length": info[b"length"], b"path": []}]
        files = []
        offset = 0
        for f in raw_files:
            length = int(f[b"length"])
            path = "/".join(_text(p) for p in f[b"path"])
            files.append(LayoutFile(path, offset, length, b"p" in f.get(b"attr", b"")))
            offset += length
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed .torrent: {exc}") from None
    if len(hashes) % 20 or len(hashes) // 20 != -(-offset // piece_length):
        raise ValueError("malformed .torrent: piece hashes do not match the file sizes")
    return TorrentLayout(name, piece_length, hashes, tuple(files), offset)
