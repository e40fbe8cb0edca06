"""Where a collection's torrent and its web seeds are, for a server that does not hold it.

The ``.torrent`` is the one under a root's ``torrents/`` when there is one (a builder's
archive, or a mirror holding it), else the copy this server saved in its cache, else the
one the root's ``torrents.json`` names, fetched (bounded, and checked against the
listing's infohash by :func:`phonotheca.mirror.sources.torrent_data`) from where the
mirror read its listing. Web seeds are the listing's and the torrent's own (BEP 19).
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from phonotheca.durable import write_atomically
from phonotheca.mirror.sources import read_location, torrent_data
from phonotheca.mirror.state import MirrorDir, MirrorError, read_json
from phonotheca.serve.ondemand.errors import OnDemandError
from phonotheca.torrents import bencode
from phonotheca.torrents.layout import LayoutError, TorrentLayout, parse_layout
from phonotheca.torrents.listing import Listing, ListingError, TorrentEntry, read_listing
from phonotheca.torrents.remote import FetchError


@dataclass(frozen=True)
class SwarmTorrent:
    """A collection's torrent as the fetch needs it."""

    name: str
    """``<collection>``; the torrent file is ``<name>.torrent``."""
    layout: TorrentLayout
    web_seeds: tuple[str, ...]
    metainfo: bytes
    """The ``.torrent`` itself (for the peers' session)."""

    def file_url(self, seed: str, path: str) -> str:
        """The URL of payload file ``path`` at web seed ``seed`` (BEP 19: the seed names
        the directory holding the torrent's directory)."""
        base = seed if seed.endswith("/") else seed + "/"
        parts = [self.layout.name, *path.split("/")]
        return base + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def without_web_seeds(data: bytes) -> bytes:
    """A ``.torrent``'s bytes without its web seeds (BEP 19 ``url-list``, BEP 17
    ``httpseeds``), which lie outside the info dictionary: the infohash is the same."""
    meta = bencode.decode(data)
    if not isinstance(meta, dict):
        raise bencode.BencodeError("a torrent is a dictionary")
    return bencode.encode({k: v for k, v in meta.items() if k not in (b"url-list", b"httpseeds")})


def _url_list(data: bytes) -> list[str]:
    """The ``url-list`` (BEP 19) of a ``.torrent``'s bytes."""
    try:
        meta = bencode.decode(data)
    except bencode.BencodeError:
        return []
    raw = meta.get(b"url-list") if isinstance(meta, dict) else None
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, bytes) else []
    urls = []
    for item in items:
        if isinstance(item, bytes):
            text = item.decode("utf-8", "replace")
            if urllib.parse.urlsplit(text).scheme in ("http", "https"):
                urls.append(text)
    return urls


class TorrentFinder:
    """Finds (and remembers) the torrent of each collection played from the swarm."""

    def __init__(self, roots: list[Path], cache_dir: Path) -> None:
        self.roots = roots
        self.saved = cache_dir / "torrents"
        self._lock = threading.Lock()
        self._found: dict[str, SwarmTorrent] = {}
        self._listing: tuple[str, Listing] | None = None

    def find(self, collection: str) -> SwarmTorrent:
        with self._lock:
            found = self._found.get(collection)
        if found is not None:
            return found
        found = self._load(collection)
        with self._lock:
            self._found[collection] = found
        return found

    def _load(self, collection: str) -> SwarmTorrent:
        name = f"{collection}.torrent"
        seeds: list[str] = []
        data: bytes | None = None
        for path in [root / "torrents" / name for root in self.roots] + [self.saved / name]:
            if path.is_file():
                try:
                    data = read_location(str(path))
                    break
                except FetchError:
                    continue
        listed = self._listed(collection)
        if listed is not None:
            source, listing, entry = listed
            seeds.extend(entry.web_seeds)
            if data is None:
                try:
                    data = torrent_data(source, listing, entry)
                except MirrorError as exc:
                    raise OnDemandError(str(exc), torrent=name) from None
                write_atomically(self.saved / name, data)
        if data is None:
            raise OnDemandError(
                f"torrent {name} is neither here nor in this server's torrents.json:"
                " cannot fetch from the swarm",
                torrent=name,
            )
        try:
            layout = parse_layout(data, name)
        except LayoutError as exc:
            raise OnDemandError(str(exc), torrent=name) from None
        seeds.extend(_url_list(data))
        return SwarmTorrent(collection, layout, tuple(dict.fromkeys(seeds)), data)

    def _listed(self, collection: str) -> tuple[str, Listing, TorrentEntry] | None:
        """(where the listing came from, the listing, its audio entry) or None."""
        listing = self._read_listing()
        if listing is None:
            return None
        source, doc = listing
        entries = [e for e in doc.torrents if e.collection == collection and e.kind == "audio"]
        entries.sort(key=lambda e: e.obsolete)
        return (source, doc, entries[0]) if entries else None

    def _read_listing(self) -> tuple[str, Listing] | None:
        with self._lock:
            if self._listing is not None:
                return self._listing
        root = self.roots[0]
        mirror = MirrorDir(root)
        if not mirror.listing.is_file():
            return None
        try:
            doc = read_listing(mirror.listing)
        except ListingError:
            return None
        # A mirror's torrent URLs are relative to where it read the listing from.
        settings = read_json(mirror.settings_file)
        source = settings.get("torrents") if isinstance(settings, dict) else None
        found = (source if isinstance(source, str) else str(mirror.listing), doc)
        with self._lock:
            self._listing = found
        return found
