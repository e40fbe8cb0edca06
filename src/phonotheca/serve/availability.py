"""Which bytes a mirror holds: verified piece bitfields against the torrents' file layout.

A mirror directory (written by ``phonotheca mirror``) has ``.mirror/verified/<collection>.json``
per collection: ``{"piece_length", "num_pieces", "complete", "have", "verified_at"}`` where
``have`` is the base64 of the v1 piece bitfield, most significant bit first (as BEP 3's
``bitfield`` message). A track is playable when its collection is complete, or when every
piece overlapping its bytes is set; where its bytes lie in the torrent follows from the
``.torrent``'s file list (files in order, pieces running across file boundaries, pad
files included), read by the one layout reader, :mod:`phonotheca.torrents.layout`.

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

from phonotheca.torrents.layout import LayoutError, TorrentLayout, read_layout

MIRROR_DIR = ".mirror"
VERIFIED_DIR = "verified"


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


class VerifiedError(ValueError):
    """A verified-pieces file that cannot be read."""


def parse_verified(data: bytes) -> PieceBitfield:
    """A ``.mirror/verified/<collection>.json`` file."""
    try:
        doc = json.loads(data)
        have = base64.b64decode(doc.get("have") or "", validate=True)
        return PieceBitfield(
            int(doc["piece_length"]), int(doc["num_pieces"]), doc.get("complete") is True, have
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise VerifiedError(f"not a verified-pieces file: {exc}") from None


def pieces_of(layout: TorrentLayout, path: str, offset: int, length: int) -> range | None:
    """The pieces holding ``length`` bytes at ``offset`` in payload file ``path``."""
    f = layout.find(path)
    if f is None or length <= 0:
        return None
    return layout.pieces(f.offset + offset, length)


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
            layout = read_layout(torrent_path)
        except LayoutError:
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
        except (OSError, VerifiedError):
            bits = None
        with self._lock:
            self._verified[path] = (*key, bits)
        return bits


def is_mirror(root: Path) -> bool:
    return (root / MIRROR_DIR).is_dir()


def verified_path(root: Path, collection: str) -> Path:
    return root / MIRROR_DIR / VERIFIED_DIR / f"{collection}.json"
