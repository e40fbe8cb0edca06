"""Helpers for the torrent tests: payload trees on disk, and libtorrent created the same way."""

from __future__ import annotations

import random
from pathlib import Path

import libtorrent as lt

# Sizes around the 16 KiB block and the piece lengths the tests use, and empty files.
SIZES = {
    "bag-info.txt": 300,
    "bagit.txt": 55,
    "data/empty": 0,
    "data/index.jsonl": 16_384,
    "data/vol.0001.tar": 3 * 65_536 + 7,
    "data/vol.0002.tar": 65_536,
    "data/zzz/deep/one-byte": 1,
    "data/zzz/deep/block-plus-one": 16_385,
    "data/Ünïcødé/日本語.ogg": 40_000,
    "manifest-sha256.txt": 16_383,
    "tagmanifest-sha256.txt": 0,
}

# Names whose order differs between sorting whole paths ("a-b" < "a/…", as mktorrent does) and
# sorting path components ("a" < "a-b", the v2 file tree order).
TRICKY_SIZES = {
    "a/b/x": 100_000,
    "a-c/y": 3,
    "a.txt": 2,
    "a/empty2": 0,
    "empty": 0,
    "zz": 40_000,
    "é/ü.txt": 2,
}


def make_tree(root: Path, sizes: dict[str, int], seed: int = 1) -> Path:
    """Write files of the given sizes with reproducible random bytes under ``root``."""
    rng = random.Random(seed)
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def libtorrent_make(directory: Path, piece_length: int, *, hybrid: bool) -> bytes:
    """libtorrent's own torrent of ``directory``, files sorted as ours (list_files does not)."""
    entries = lt.list_files(str(directory))
    if hybrid:
        entries.sort(key=lambda e: [p.encode() for p in e.filename.split("/")])
        flags = 0
    else:
        entries.sort(key=lambda e: e.filename.encode())
        flags = lt.create_torrent.v1_only
    creator = lt.create_torrent(entries, piece_length, flags)
    lt.set_piece_hashes(creator, str(directory.parent))
    return bytes(lt.bencode(creator.generate()))
