"""Check a payload directory against its ``.torrent``: files, lengths, every v1 piece.

Used by ``phonotheca validate`` (as an extra check of a collection) and by a mirror
that wants to know which pieces, and so which tracks, are damaged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phonotheca.build.validate import Problem
from phonotheca.torrents import bencode
from phonotheca.torrents.make import list_payload

READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PayloadFile:
    path: str
    """``/``-separated, relative to the torrent's directory."""
    length: int
    offset: int
    """Where the file starts in the torrent's v1 byte stream."""
    pad: bool


@dataclass(frozen=True)
class TorrentLayout:
    name: str
    piece_length: int
    pieces: bytes
    files: list[PayloadFile]
    hybrid: bool

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    @property
    def total_length(self) -> int:
        return sum(f.length for f in self.files)

    def files_of_piece(self, index: int) -> list[PayloadFile]:
        start = index * self.piece_length
        end = start + self.piece_length
        return [
            f for f in self.files if not f.pad and f.offset < end and f.offset + f.length > start
        ]


class TorrentError(Exception):
    """The ``.torrent`` file cannot be read."""


def read_layout(torrent_path: Path) -> TorrentLayout:
    try:
        meta: Any = bencode.decode(torrent_path.read_bytes())
    except (OSError, bencode.BencodeError) as exc:
        raise TorrentError(f"{torrent_path}: cannot read the torrent: {exc}") from None
    try:
        info: Any = meta[b"info"]
        name = info[b"name"].decode()
        piece_length = int(info[b"piece length"])
        pieces = bytes(info[b"pieces"])
        files: list[PayloadFile] = []
        offset = 0
        for f in info[b"files"]:
            path = "/".join(p.decode() for p in f[b"path"])
            length = int(f[b"length"])
            files.append(PayloadFile(path, length, offset, f.get(b"attr", b"") == b"p"))
            offset += length
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TorrentError(f"{torrent_path}: not a multi-file torrent: {exc!r}") from None
    return TorrentLayout(name, piece_length, pieces, files, b"meta version" in info)


def _stream(directory: Path, layout: TorrentLayout) -> Iterator[bytes]:
    for f in layout.files:
        if f.pad:
            yield bytes(f.length)
            continue
        left = f.length
        try:
            with open(directory / f.path, "rb", buffering=0) as stream:
                while left:
                    chunk = stream.read(min(READ_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
        except OSError:
            pass
        if left:
            yield bytes(left)  # missing bytes hash as zeros: their pieces fail


def bad_pieces(directory: Path, layout: TorrentLayout) -> list[int]:
    """Indexes of the v1 pieces whose data on disk does not match the torrent."""
    bad: list[int] = []
    digest = hashlib.sha1()
    filled = 0
    index = 0
    for chunk in _stream(directory, layout):
        view = memoryview(chunk)
        while view:
            take = min(len(view), layout.piece_length - filled)
            digest.update(view[:take])
            filled += take
            view = view[take:]
            if filled == layout.piece_length:
                if digest.digest() != layout.pieces[index * 20 : index * 20 + 20]:
                    bad.append(index)
                index += 1
                digest = hashlib.sha1()
                filled = 0
    if filled and digest.digest() != layout.pieces[index * 20 : index * 20 + 20]:
        bad.append(index)
    return bad


def check_torrent(directory: Path, torrent_path: Path) -> list[Problem]:
    """Problems of the payload in ``directory`` against ``torrent_path``."""
    try:
        layout = read_layout(torrent_path)
    except TorrentError as exc:
        return [Problem(".", str(exc))]
    problems: list[Problem] = []
    if layout.name != directory.name:
        problems.append(
            Problem(".", f"the torrent names the directory {layout.name!r}, not {directory.name!r}")
        )
    listed = {f.path: f for f in layout.files if not f.pad}
    try:
        on_disk = {"/".join(parts): p for parts, p in list_payload(directory, hybrid=layout.hybrid)}
    except (OSError, ValueError) as exc:
        return [*problems, Problem(".", f"cannot list the payload: {exc}")]
    for path in sorted(set(on_disk) - set(listed)):
        problems.append(Problem(path, "a file the torrent does not list"))
    for path, f in listed.items():
        disk = on_disk.get(path)
        if disk is None:
            problems.append(Problem(path, "listed in the torrent but missing"))
        elif disk.stat().st_size != f.length:
            problems.append(
                Problem(path, f"{disk.stat().st_size} bytes, the torrent says {f.length}")
            )
    for index in bad_pieces(directory, layout):
        names = ", ".join(f.path for f in layout.files_of_piece(index))
        problems.append(
            Problem(
                names or ".",
                f"piece {index} does not match the torrent's hash"
                f" (bytes {index * layout.piece_length} to"
                f" {min((index + 1) * layout.piece_length, layout.total_length) - 1})",
            )
        )
    return problems
