"""Where a mirror gets its listing and ``.torrent`` files: a path or an http(s) URL.

A ``.torrent`` is checked against the infohash the listing gives before it is used, so a
wrong or tampered file is refused rather than seeded.
"""

from __future__ import annotations

import libtorrent as lt

from phonotheca.durable import write_atomically
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.torrents.layout import MAX_TORRENT_BYTES
from phonotheca.torrents.listing import Listing, ListingError, TorrentEntry, resolve_url
from phonotheca.torrents.remote import fetch_bytes


def read_location(location: str) -> bytes:
    """The ``.torrent`` at a path or ``http(s)://`` / ``file://`` URL: at most
    :data:`~phonotheca.torrents.layout.MAX_TORRENT_BYTES`, with timeouts (FetchError)."""
    return fetch_bytes(location, limit=MAX_TORRENT_BYTES, what="the .torrent")


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
            try:
                data = read_location(str(local))
                if torrent_infohash(data) == entry.infohash_v1:
                    return data
            except (OSError, ValueError):
                pass  # fetched again below
    try:
        location = resolve_url(source, listing, entry.torrent_url)
    except ListingError as exc:
        raise MirrorError(f"{entry.name}: {exc}") from None
    try:
        data = read_location(location)
    except (OSError, ValueError) as exc:
        raise MirrorError(f"{entry.name}: {exc}") from None
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
