"""Make the ``.torrent`` of a collection directory: BitTorrent v1, or hybrid v1+v2 on request.

The bytes depend only on the payload and the arguments: no creation date, a fixed
``created by``, files in a fixed order, canonical bencoding. So anyone who makes the torrent of
the same directory with the same settings gets the same file and joins the same swarm; the v1
infohash equals ``mktorrent -l <log2 piece length>``'s for the same directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from phonotheca.durable import write_atomically
from phonotheca.filemap import map_range
from phonotheca.torrents import bencode
from phonotheca.torrents.pieces import (
    PAD_DIRECTORY,
    FileHashes,
    PieceHasher,
    PieceHashes,
    check_piece_length,
    order_key,
    piece_length_for,
    split_path,
)

MAP_MIN = 1024 * 1024
"""Files from this size on are hashed through mappings; smaller ones are read into the
hasher's buffers (a mapping costs more than copying a few pages)."""
MAP_WINDOW = 64 * 1024 * 1024
"""Bytes of a file mapped at a time, so the address space used stays bounded."""
LEAD = 64 * 1024 * 1024
"""Mapped bytes that may wait for the hashing threads (see PieceHasher's ``lead``): v1
1.14x, hybrid 1.07x faster at a load of 18-20 on 2 cores, the same CPU time."""
CREATED_BY = "phonotheca"
"""The fixed ``created by`` value: no version, so releases do not change the bytes."""

Trackers: TypeAlias = Sequence[str | Sequence[str]]
"""Announce URLs, one element per tier (BEP 12): a URL, or a list of URLs of equal rank."""

_URL = re.compile(r"^(?:https?|udp|wss?)://\S+$")
_WEB_SEED = re.compile(r"^(?:https?|ftp)://\S+/$")


@dataclass(frozen=True)
class TorrentFile:
    """A payload file: its ``/``-separated path under the torrent's directory, and length."""

    path: str
    length: int


@dataclass(frozen=True)
class Torrent:
    """A made torrent: its identity, its layout and its bencoded bytes."""

    name: str
    infohash_v1: str
    """SHA-1 of the bencoded info dictionary, hex."""
    infohash_v2: str | None
    """SHA-256 of the same dictionary, hex (hybrid torrents only)."""
    piece_length: int
    num_pieces: int
    """v1 pieces (counting pad files in a hybrid torrent)."""
    total_size: int
    """Payload bytes, without pad files."""
    files: tuple[TorrentFile, ...]
    """In torrent order, without pad files."""
    data: bytes
    """The ``.torrent`` file."""

    @property
    def magnet(self) -> str:
        """A magnet link (BEP 9, with the v2 ``btmh`` topic of BEP 52 when hybrid)."""
        topics = [f"xt=urn:btih:{self.infohash_v1}"]
        if self.infohash_v2 is not None:
            topics.append(f"xt=urn:btmh:1220{self.infohash_v2}")
        return f"magnet:?{'&'.join(topics)}&dn={urllib.parse.quote(self.name, safe='')}"


def assemble_torrent(
    hashes: PieceHashes,
    name: str,
    *,
    trackers: Trackers = (),
    web_seeds: Sequence[str] = (),
    comment: str | None = None,
) -> Torrent:
    """The torrent of a payload hashed by :class:`PieceHasher`, whose root directory is ``name``.

    ``web_seeds`` are BEP 19 URLs ending in ``/``: a client fetches ``<url><name>/<path>``.
    """
    (name,) = split_path([name])
    if hashes.total_size == 0:
        raise ValueError(f"torrent {name!r} has no data: every file is empty")
    info: dict[str, bencode.Bencodable] = {
        "name": name,
        "piece length": hashes.piece_length,
        "pieces": hashes.pieces,
        "files": _v1_files(hashes),
    }
    metainfo: dict[str, bencode.Bencodable] = {"created by": CREATED_BY, "info": info}
    if hashes.hybrid:
        info["meta version"] = 2
        info["file tree"] = _file_tree(hashes.files)
        metainfo["piece layers"] = {
            f.pieces_root: f.piece_layer
            for f in hashes.files
            if f.piece_layer and f.pieces_root is not None
        }
    tiers = _tracker_tiers(trackers)
    if tiers:
        metainfo["announce"] = tiers[0][0]
        metainfo["announce-list"] = tiers
    for url in web_seeds:
        if not _WEB_SEED.match(url):
            raise ValueError(f"web seed {url!r} must be an http(s) or ftp URL ending in '/'")
    if web_seeds:
        metainfo["url-list"] = list(web_seeds)
    if comment:
        metainfo["comment"] = comment
    info_bytes = bencode.encode(info)
    return Torrent(
        name=name,
        infohash_v1=hashlib.sha1(info_bytes).hexdigest(),
        infohash_v2=hashlib.sha256(info_bytes).hexdigest() if hashes.hybrid else None,
        piece_length=hashes.piece_length,
        num_pieces=hashes.num_pieces,
        total_size=hashes.total_size,
        files=tuple(TorrentFile("/".join(f.path), f.length) for f in hashes.files),
        data=bencode.encode(metainfo),
    )


def _v1_files(hashes: PieceHashes) -> list[bencode.Bencodable]:
    files: list[bencode.Bencodable] = []
    for f in hashes.files:
        files.append({"length": f.length, "path": list(f.path)})
        if f.padding:
            files.append(
                {"attr": "p", "length": f.padding, "path": [PAD_DIRECTORY, str(f.padding)]}
            )
    return files


def _file_tree(files: Sequence[FileHashes]) -> dict[str, bencode.Bencodable]:
    tree: dict[str, bencode.Bencodable] = {}
    for f in files:
        node = tree
        for part in f.path[:-1]:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        leaf: dict[str, bencode.Bencodable] = {"length": f.length}
        if f.pieces_root is not None:
            leaf["pieces root"] = f.pieces_root
        node[f.path[-1]] = {"": leaf}
    return tree


def _tracker_tiers(trackers: Trackers) -> list[list[str]]:
    tiers: list[list[str]] = []
    for tier in trackers:
        urls = [tier] if isinstance(tier, str) else list(tier)
        for url in urls:
            if not _URL.match(url):
                raise ValueError(f"tracker {url!r} is not an http(s), udp or ws(s) URL")
        if urls:
            tiers.append(urls)
    return tiers


def list_payload(directory: Path, *, hybrid: bool = False) -> list[tuple[tuple[str, ...], Path]]:
    """Every regular file under ``directory`` as (path in the torrent, path on disk), in
    torrent order. Empty directories are left out (a torrent cannot hold them); symbolic
    links and special files are refused, so the payload is exactly what is on disk.
    """
    found: list[tuple[tuple[str, ...], Path]] = []
    pending: list[tuple[tuple[str, ...], Path]] = [((), directory)]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                parts = (*prefix, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    pending.append((parts, Path(entry.path)))
                elif entry.is_file(follow_symlinks=False):
                    found.append((split_path(parts), Path(entry.path)))
                else:
                    raise ValueError(
                        f"{entry.path}: not a regular file or directory (symbolic links and "
                        "special files cannot go into a torrent)"
                    )
    found.sort(key=lambda item: order_key(item[0], hybrid))
    return found


def make_torrent(
    directory: Path,
    *,
    hybrid: bool = False,
    piece_length: int | None = None,
    trackers: Trackers = (),
    web_seeds: Sequence[str] = (),
    comment: str | None = None,
    workers: int = 2,
    output: Path | None = None,
) -> Torrent:
    """Read and hash every file under ``directory`` and make its torrent, named after it.

    ``piece_length`` defaults to :func:`piece_length_for` the payload size. With ``output``
    the torrent is also written there atomically.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    files = list_payload(directory, hybrid=hybrid)
    sizes = [disk.stat().st_size for _, disk in files]
    if piece_length is None:
        piece_length = piece_length_for(sum(sizes))
    check_piece_length(piece_length)
    with PieceHasher(piece_length, hybrid=hybrid, workers=workers, lead=LEAD) as hasher:
        for (parts, disk), size in zip(files, sizes, strict=True):
            with open(disk, "rb", buffering=0) as stream:
                if size < MAP_MIN:
                    length = hasher.hash_stream(parts, stream)
                else:
                    length = _hash_mapped(hasher, parts, stream.fileno(), size)
            if length != size:
                raise ValueError(f"{disk}: changed while it was hashed ({size} → {length} bytes)")
        hashes = hasher.finish()
    name = Path(os.path.abspath(directory)).name  # "." has a name; a symlink keeps its own
    torrent = assemble_torrent(
        hashes, name, trackers=trackers, web_seeds=web_seeds, comment=comment
    )
    if output is not None:
        write_torrent(torrent, output)
    return torrent


def _hash_mapped(hasher: PieceHasher, parts: tuple[str, ...], fd: int, size: int) -> int:
    """Hash a file of ``size`` bytes (by its ``stat``) through read-only mappings, so each
    byte is read once, from the page cache, by the hashing threads; return its length now
    (the caller refuses a file whose length changed)."""
    hasher.start_file(parts)
    for offset in range(0, size, MAP_WINDOW):
        length = os.fstat(fd).st_size
        if length < size:  # mapping past the end would crash the process (SIGBUS)
            return length
        window = map_range(fd, offset, min(MAP_WINDOW, size - offset))
        hasher.update(window, stable=True)
        del window  # unmapped once the hashing threads are done with its batches
    hasher.end_file()
    return os.fstat(fd).st_size


def write_torrent(torrent: Torrent, path: Path) -> None:
    """Write ``torrent.data`` to ``path`` atomically: ``<path>.partial``, fsync, rename."""
    write_atomically(Path(path), torrent.data)
