"""Where a mirror gets its listing and ``.torrent`` files: a path or an http(s) URL.

A ``.torrent`` is checked against the infohash the listing gives before it is used, so a
wrong or tampered file is refused rather than seeded.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

import libtorrent as lt

from phonotheca.durable import write_atomically
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.torrents.listing import Listing, TorrentEntry, resolve_url


def read_location(location: str, timeout: float = 30.0) -> bytes:
    """The bytes at a path or ``http(s)://`` / ``file://`` URL."""
    if urllib.parse.urlsplit(location).scheme in ("http", "https", "file"):
        with urllib.request.urlopen(location, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    return Path(location).read_bytes()


def torrent_infohash(data: bytes) -> str:
    """The v1 infohash (hex) of a ``.torrent``; raises ValueError when it is not one."""
    try:
        return str(lt.torrent_info(data).info_hashes().v1)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None


def torrent_data(
    source: str, listing: Listing, entry: TorrentEntry, mirror: MirrorDir | None = None
) -> bytes:
    """The ``.torrent`` of ``entry``: the mirror's copy when it has a good one, else fetched
    (and, with ``mirror``, saved to ``DIR/torrents/<name>.torrent``)."""
    if mirror is not None:
        local = mirror.torrent_file(entry.name)
        if local.exists():
            data = local.read_bytes()
            try:
                if torrent_infohash(data) == entry.infohash_v1:
                    return data
            except ValueError:
                pass
    location = resolve_url(source, listing, entry.torrent_url)
    try:
        data = read_location(location)
    except (OSError, ValueError) as exc:
        raise MirrorError(
            f"{entry.name}: cannot fetch its .torrent from {location}: {exc}"
        ) from None
    try:
        got = torrent_infohash(data)
    except ValueError as exc:
        raise MirrorError(f"{location}: not a valid .torrent ({exc})") from None
    if got != entry.infohash_v1:
        raise MirrorError(
            f"{location}: infohash {got} differs from {entry.infohash_v1} in torrents.json;"
            " the listing and the .torrent files are out of step, ask the publisher"
        )
    if mirror is not None:
        write_atomically(mirror.torrent_file(entry.name), data)
    return data
