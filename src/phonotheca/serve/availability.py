"""Which bytes a mirror holds: verified piece bitfields against the torrents' file layout.

A mirror directory (written by ``phonotheca mirror``) has ``.mirror/verified/<collection>.json``
per collection: ``{"piece_length", "num_pieces", "complete", "have", "verified_at"}`` where
``have`` is the base64 of the v1 piece bitfield, most significant bit first (as BEP 3's
``bitfield`` message). A track is playable when its collection is complete, or when every
piece overlapping its bytes is set; where its bytes lie in the torrent follows from the
``.torrent``'s file list (files in order, pieces running across file boundaries, pad
files included).

A builder's archive has no ``.mirror`` directory: what is on disk is what it built.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from phonotheca.torrents import bencode

MIRROR_DIR = ".mirror"
VERIFIED_DIR = "verified"


@dataclass(frozen=True, slots=True)
class TorrentLayout:
    """Where each payload file starts in a v1 torrent's byte stream."""

    piece_length: int
    num_pieces: int
    starts: dict[str, int]
    """``/``-separated path under the torrent's directory (e.g. ``data/x.0001.tar``) to the
    offset of its first byte in the concatenation of all files."""


@dataclass(frozen=True, slots=True)
class PieceBitfield:
    """A collection's verified pieces, as the mirror last recorded them."""

    piece_length: int
    num_pieces: int
    complete: bool
    have: bytes

    def has(self, piece: int) -> bool:
        byte = piece >> 3
        if piece < 0 or piece >= self.num_pieces or byte >= len(self.have):
            return False
        return bool(self.have[byte] & (0x80 >> (piece & 7)))


class LayoutError(ValueError):
    """A ``.torrent`` or verified file that cannot be read."""


def parse_layout(data: bytes) -> TorrentLayout:
    """The file layout of a v1 (or hybrid) torrent's info dictionary."""
    try:
        meta = bencode.decode(data)
    except ValueError as exc:
        raise LayoutError(f"not a torrent: {exc}") from None
    info = meta.get(b"info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        raise LayoutError("no info dictionary")
    piece_length = info.get(b"piece length")
    pieces = info.get(b"pieces")
    if not isinstance(piece_length, int) or piece_length <= 0 or not isinstance(pieces, bytes):
        raise LayoutError("no piece length or pieces")
    starts: dict[str, int] = {}
    position = 0
    files = info.get(b"files")
    if isinstance(files, list):
        for entry in files:
            if not isinstance(entry, dict):
                raise LayoutError("a files entry is not a dictionary")
            length = entry.get(b"length")
            parts = entry.get(b"path")
            if not isinstance(length, int) or not isinstance(parts, list):
                raise LayoutError("a files entry has no length or path")
            path = "/".join(p.decode("utf-8", "replace") for p in parts if isinstance(p, bytes))
            starts[path] = position
            position += length
    else:
        length = info.get(b"length")
        name = info.get(b"name")
        if not isinstance(length, int) or not isinstance(name, bytes):
            raise LayoutError("a single-file torrent without length or name")
        starts[name.decode("utf-8", "replace")] = 0
    return TorrentLayout(piece_length, len(pieces) // 20, starts)


def parse_verified(data: bytes) -> PieceBitfield:
    """A ``.mirror/verified/<collection>.json`` file."""
    try:
        doc = json.loads(data)
        have = base64.b64decode(doc.get("have") or "", validate=True)
        return PieceBitfield(
            int(doc["piece_length"]), int(doc["num_pieces"]), doc.get("complete") is True, have
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise LayoutError(f"not a verified-pieces file: {exc}") from None


def pieces_of(layout: TorrentLayout, path: str, offset: int, length: int) -> range | None:
    """The pieces holding ``length`` bytes at ``offset`` in payload file ``path``."""
    start = layout.starts.get(path)
    if start is None or length <= 0:
        return None
    first = start + offset
    last = first + length - 1
    return range(first // layout.piece_length, last // layout.piece_length + 1)


class MirrorState:
    """Cached reads of torrents (immutable) and verified bitfields (reread when changed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._layouts: dict[Path, TorrentLayout] = {}
        self._verified: dict[Path, tuple[int, int, PieceBitfield | None]] = {}

    def layout(self, torrent_path: Path) -> TorrentLayout | None:
        with self._lock:
            cached = self._layouts.get(torrent_path)
        if cached is not None:
            return cached
        try:
            layout = parse_layout(torrent_path.read_bytes())
        except (OSError, LayoutError):
            return None  # not cached: a torrent being fetched may appear later
        with self._lock:
            self._layouts[torrent_path] = layout
        return layout

    def verified(self, path: Path) -> PieceBitfield | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._verified.get(path)
        if cached is not None and cached[:2] == key:
            return cached[2]
        try:
            bits: PieceBitfield | None = parse_verified(path.read_bytes())
        except (OSError, LayoutError):
            bits = None
        with self._lock:
            self._verified[path] = (*key, bits)
        return bits


def is_mirror(root: Path) -> bool:
    return (root / MIRROR_DIR).is_dir()


def verified_path(root: Path, collection: str) -> Path:
    return root / MIRROR_DIR / VERIFIED_DIR / f"{collection}.json"
