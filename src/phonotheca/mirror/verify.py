"""``phonotheca verify``: recheck every piece a mirror holds, and its bags.

Each piece is hashed against the ``.torrent`` (a pure read: no libtorrent session, so it
works on any copy). A piece that fails and was verified before is **corrupted**; one that
fails and never was is only **missing** (still to download). Corrupted pieces are named
with the files and tracks they hold. A complete collection is also validated as a bag
(every track's sha256 from the index, the BagIt manifests). The verified-piece bitfield is
rewritten from what was found, so the web server stops serving bad bytes at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonotheca.build import read_index, validate_collection
from phonotheca.build.index import IndexEntry
from phonotheca.mirror.state import MirrorDir, read_json, read_verified, write_json, write_verified
from phonotheca.torrents.layout import INDEX_PATH, LayoutError, TorrentLayout, read_layout

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BadPiece:
    piece: int
    files: list[str]
    tracks: list[str]


@dataclass
class CollectionReport:
    name: str
    pieces: int
    good: int
    corrupted: list[BadPiece] = field(default_factory=list)
    missing: int = 0
    problems: list[str] = field(default_factory=list)
    """Bag and index problems of a complete collection, and unreadable files."""

    @property
    def complete(self) -> bool:
        return self.good == self.pieces

    @property
    def ok(self) -> bool:
        return not self.corrupted and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pieces": self.pieces,
            "good": self.good,
            "missing": self.missing,
            "complete": self.complete,
            "ok": self.ok,
            "corrupted": [
                {"piece": b.piece, "files": b.files, "tracks": b.tracks} for b in self.corrupted
            ],
            "problems": self.problems,
        }


Progress = Callable[[int], None]
"""Called with the number of bytes read since the last call."""


def hash_pieces(
    payload: Path, layout: TorrentLayout, progress: Progress | None = None
) -> list[bool]:
    """Which pieces of the payload under ``payload`` match the torrent's hashes.

    Reads files in torrent order; a missing or short file makes its pieces fail.
    """
    good = [True] * layout.num_pieces
    hasher = hashlib.sha1()
    piece = 0
    filled = 0  # bytes of the current piece fed so far

    def feed(data: bytes | memoryview, ok: bool) -> None:
        nonlocal piece, filled, hasher
        view = memoryview(data)
        while view:
            take = min(len(view), layout.piece_size(piece) - filled)
            hasher.update(view[:take])
            if not ok:
                good[piece] = False
            filled += take
            view = view[take:]
            if filled == layout.piece_size(piece):
                if good[piece] and hasher.digest() != layout.piece_hash(piece):
                    good[piece] = False
                piece += 1
                filled = 0
                hasher = hashlib.sha1()

    for f in layout.files:
        remaining = f.length
        if f.pad:
            feed(bytes(remaining), True)
            continue
        try:
            stream = open(payload / f.path, "rb")  # noqa: SIM115
        except OSError:
            stream = None
        with stream if stream is not None else open("/dev/null", "rb") as src:
            while remaining:
                data = src.read(min(CHUNK, remaining)) if stream is not None else b""
                if not data:  # missing or short: the rest of the file fails
                    while remaining:
                        n = min(CHUNK, remaining)
                        feed(bytes(n), False)
                        remaining -= n
                    break
                feed(data, True)
                remaining -= len(data)
                if progress is not None:
                    progress(len(data))
    return good


def read_index_entries(payload: Path, layout: TorrentLayout) -> list[IndexEntry]:
    """The entries of the payload's index, reading no more than the size the torrent lists
    for it (a longer file is damaged; its first bytes still name what they can)."""
    listed = layout.find(INDEX_PATH)
    if listed is None:
        return []
    try:
        with open(payload / INDEX_PATH, "rb") as f:
            data = f.read(listed.length)
    except OSError:
        return []
    return [line.entry for line in read_index(data) if line.entry is not None]


def verify_collection(
    mirror: MirrorDir, name: str, progress: Progress | None = None, *, bag: bool = True
) -> tuple[CollectionReport, list[bool]]:
    """Check one held torrent; returns the report and the pieces found good."""
    torrent_path = mirror.torrent_file(name)
    try:
        layout = read_layout(torrent_path)
    except LayoutError as exc:
        return CollectionReport(name, 0, 0, problems=[str(exc)]), []
    payload = mirror.payload(name)
    good = hash_pieces(payload, layout, progress)
    before = read_verified(mirror, name)
    known_bad = read_json(mirror.damaged_file(name))
    known_bad = set(known_bad) if isinstance(known_bad, list) else set()
    report = CollectionReport(name, layout.num_pieces, sum(good))
    bad = [i for i, ok in enumerate(good) if not ok]
    if before is not None and len(before) == len(good):
        corrupted = [i for i in bad if before[i] or i in known_bad]
    else:  # nothing known: only a piece with its files all present counts as damaged
        corrupted = [i for i in bad if all((payload / p).exists() for p in layout.files_in(i))]
    try:
        # Remembered until fixed: the bitfield below forgets that these pieces were good once.
        if corrupted:
            write_json(mirror.damaged_file(name), corrupted)
        else:
            mirror.damaged_file(name).unlink(missing_ok=True)
        write_verified(mirror, name, layout.piece_length, good)
    except OSError as exc:
        report.problems.append(f"{mirror.state}: cannot record the result: {exc.strerror}")
    report.missing = len(bad) - len(corrupted)
    listed = layout.find(INDEX_PATH)
    try:
        size = (payload / INDEX_PATH).stat().st_size
    except OSError:
        size = 0
    if listed is not None and size > listed.length:
        report.problems.append(
            f"{payload / INDEX_PATH}: {size} bytes, more than the {listed.length} the torrent"
            " lists; what lies past them is not read"
        )
    entries = read_index_entries(payload, layout) if corrupted else []
    tracks = layout.tracks_in(corrupted, entries)
    report.corrupted = [BadPiece(i, layout.files_in(i), tracks.get(i, [])) for i in corrupted]
    if report.complete and bag and (payload / "bagit.txt").exists():
        report.problems += [str(p) for p in validate_collection(payload)]
    return report, good
