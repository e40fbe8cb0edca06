"""Check a payload directory against its ``.torrent``: files, lengths, every v1 piece.

Used by ``phonotheca validate`` (as an extra check of a collection) and by a mirror
that wants to know which pieces, and so which tracks, are damaged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from phonotheca.build.validate import Problem
from phonotheca.torrents.layout import LayoutError, TorrentLayout, read_layout
from phonotheca.torrents.make import list_payload

READ_CHUNK = 1 << 20


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
                if digest.digest() != layout.piece_hash(index):
                    bad.append(index)
                index += 1
                digest = hashlib.sha1()
                filled = 0
    if filled and digest.digest() != layout.piece_hash(index):
        bad.append(index)
    return bad


def check_torrent(directory: Path, torrent_path: Path) -> list[Problem]:
    """Problems of the payload in ``directory`` against ``torrent_path``."""
    try:
        layout = read_layout(torrent_path)
    except LayoutError as exc:
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
        names = ", ".join(layout.files_in(index))
        problems.append(
            Problem(
                names or ".",
                f"piece {index} does not match the torrent's hash"
                f" (bytes {index * layout.piece_length} to"
                f" {min((index + 1) * layout.piece_length, layout.total) - 1})",
            )
        )
    return problems
