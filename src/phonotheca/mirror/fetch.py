"""``phonotheca fetch``: one track out of the swarm, downloading only the pieces that hold it.

Where the track is comes from the archive's track locator (``tracks.locator``, named by
the listing or a local copy: two range reads, then only the track's pieces), or from a
catalog's ledger when one is given (then its collection's ``data/index.jsonl`` is read).
Listings written before locators existed fall back to the collections' own indexes, of
which only the pieces are fetched, every audio collection's. Every other piece has
priority 0; the needed ones get deadlines so libtorrent asks for them first, from peers or
from BEP 19 web seeds (HTTP Range). The track's sha256 from the index is checked before
the file is written (atomically) under its tar member name.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libtorrent as lt

from phonotheca.build.index import IndexEntry, read_index
from phonotheca.build.tarvolume import BLOCK, PAYLOAD_DIR, member_name
from phonotheca.durable import write_atomically
from phonotheca.mirror.session import SessionOptions, make_session
from phonotheca.mirror.sources import torrent_data
from phonotheca.mirror.state import MirrorError
from phonotheca.torrents.layout import INDEX_PATH, LayoutError, TorrentLayout, parse_layout
from phonotheca.torrents.listing import Listing, TorrentEntry, read_listing
from phonotheca.torrents.locator import LocatorEntry, LocatorError
from phonotheca.torrents.locator_catalog import open_locator

CODEC_EXTENSIONS = {"opus": "opus", "vorbis": "ogg", "flac": "flac", "mp3": "mp3", "aac": "m4a"}
"""Extension by index codec, used when the tar header cannot be read."""
DEADLINE_MS = 500
_EXT = re.compile(r"[A-Za-z0-9]{1,16}")


@dataclass(frozen=True)
class FetchResult:
    track_id: str
    collection: str
    path: Path
    size: int
    sha256: str
    downloaded: int
    """Payload bytes received from peers and web seeds, all torrents together."""
    pieces: int
    """Pieces fetched for the track (and the index, without a locator)."""
    piece_length: int
    found_by: str = "locator"
    """``locator``, ``catalog`` (then the collection's index) or ``indexes`` (every one)."""
    locator_reads: int = 0
    """Range reads of the locator (footer and top index, a leaf page, a block)."""
    locator_bytes: int = 0


def locate_in_catalog(catalog: Path, track_id: str) -> str | None:
    """The collection a catalog's ledger says holds ``track_id``, or None."""
    try:
        conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise MirrorError(f"{catalog}: cannot open the catalog: {exc}") from None
    try:
        row = conn.execute(
            "SELECT l.collection FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " WHERE t.public_id = ? AND l.status = 'packed'",
            (track_id,),
        ).fetchone()
    except sqlite3.Error as exc:
        raise MirrorError(f"{catalog}: not a catalog with a ledger: {exc}") from None
    finally:
        conn.close()
    return None if row is None else str(row[0])


@dataclass
class _Torrent:
    entry: TorrentEntry
    layout: TorrentLayout
    handle: lt.torrent_handle
    wanted: set[int]
    peers: set[tuple[str, int]] = field(default_factory=set)
    """Peers seen so far: dialled again when the torrent needs more pieces."""


class _Fetcher:
    def __init__(self, options: SessionOptions, workdir: Path, timeout: float) -> None:
        self.session = make_session(options)
        # Between the index and the track the torrent is "finished" for a moment: keep
        # the connections to seeds open instead of dropping them as redundant.
        # A fetch is short: a peer that dropped or refused a connection is tried again
        # after 2 s rather than libtorrent's default minute.
        self.session.apply_settings({"close_redundant_connections": False, "min_reconnect_time": 2})
        self.workdir = workdir
        self.deadline = time.monotonic() + timeout
        self.torrents: list[_Torrent] = []

    def add(self, entry: TorrentEntry, data: bytes) -> _Torrent:
        try:
            layout = parse_layout(data, f"{entry.name}.torrent")
        except LayoutError as exc:
            raise MirrorError(str(exc)) from None
        if layout.find(INDEX_PATH) is None:
            raise MirrorError(f"{entry.name}.torrent: has no {INDEX_PATH}, not a collection")
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(data)
        params.save_path = str(self.workdir)
        params.piece_priorities = [0] * layout.num_pieces
        params.url_seeds = list(entry.web_seeds)
        # Never queued behind another torrent, and not paused (the default flags are).
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        torrent = _Torrent(entry, layout, self.session.add_torrent(params), set())
        self.torrents.append(torrent)
        return torrent

    def want(self, torrent: _Torrent, pieces: Sequence[int]) -> None:
        finished = torrent.handle.status().is_finished
        for i in pieces:
            torrent.handle.piece_priority(i, 7)
            torrent.handle.set_piece_deadline(i, DEADLINE_MS)
            torrent.wanted.add(i)
        if finished:
            # A finished torrent tells its peers it wants nothing more (BEP 21), and seeds
            # close such connections; dial them again now rather than at the next announce.
            for peer in torrent.peers:
                torrent.handle.connect_peer(peer)
            torrent.handle.force_reannounce(0, -1, lt.torrent_handle.ignore_min_interval)

    def wait(
        self, torrents: Sequence[_Torrent], pieces: Callable[[_Torrent], Sequence[int]]
    ) -> _Torrent:
        """Wait until one of ``torrents`` has all its ``pieces``; return it."""
        while time.monotonic() < self.deadline:
            for t in torrents:
                t.peers.update(p.ip for p in t.handle.get_peer_info())
                if all(t.handle.have_piece(i) for i in pieces(t)):
                    return t
            self.session.wait_for_alert(100)
            self.session.pop_alerts()
        raise MirrorError(
            "timed out waiting for pieces: no peer or web seed sent them (is the swarm"
            " reachable? try again later or raise --timeout)"
        )

    def downloaded(self) -> int:
        return sum(t.handle.status().total_payload_download for t in self.torrents)

    def read(self, torrent: _Torrent, path: str, offset: int, length: int) -> bytes:
        """Bytes of a file of the torrent, read through libtorrent (``read_piece``): they
        may still be in its write cache or a part file, not yet in the file itself."""
        start = torrent.layout.file(path).offset + offset
        pieces = torrent.layout.pieces(start, length)
        for i in pieces:
            torrent.handle.read_piece(i)
        got: dict[int, bytes] = {}
        while len(got) < len(pieces):
            if time.monotonic() > self.deadline:
                raise MirrorError(f"{torrent.entry.name}: timed out reading pieces back")
            self.session.wait_for_alert(100)
            for alert in self.session.pop_alerts():
                if isinstance(alert, lt.read_piece_alert) and alert.handle == torrent.handle:
                    if alert.error.value():
                        raise MirrorError(
                            f"{torrent.entry.name}: cannot read piece {alert.piece}:"
                            f" {alert.error.message()}"
                        )
                    got[alert.piece] = bytes(alert.buffer)
        data = b"".join(got[i] for i in pieces)
        skip = start - pieces.start * torrent.layout.piece_length
        return data[skip : skip + length]


def _index_of(fetcher: _Fetcher, torrent: _Torrent) -> dict[str, IndexEntry]:
    f = torrent.layout.file(INDEX_PATH)
    data = fetcher.read(torrent, INDEX_PATH, 0, f.length)
    return {line.entry.id: line.entry for line in read_index(data) if line.entry is not None}


def _extension(header: bytes, entry: IndexEntry) -> str:
    if len(header) == BLOCK and header[257:262] == b"ustar":
        name = header[:100].split(b"\0", 1)[0].decode("ascii", "replace")
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        if _EXT.fullmatch(ext):
            return ext
    return CODEC_EXTENSIONS.get(entry.codec or "", "bin")


def _locate(
    source: str, listing: Listing, track_id: str, location: str | None, timeout: float
) -> tuple[LocatorEntry | None, tuple[int, int]]:
    """The track's entry in the locator and the (reads, bytes) it took; (None, (0, 0))
    when there is no locator (a listing from before locators existed)."""
    try:
        opened = open_locator(source, listing, location, timeout)
        if opened is None:
            return None, (0, 0)
        entry = opened.lookup(track_id)
    except LocatorError as exc:
        raise MirrorError(str(exc)) from None
    if entry is None:
        raise MirrorError(f"track {track_id} is not in the archive's locator ({opened.name})")
    return entry, (opened.source.reads, opened.source.bytes_read)


def _index_entry(entry: LocatorEntry) -> IndexEntry:
    return IndexEntry(
        id=entry.id,
        volume=entry.volume_name,
        offset=entry.offset,
        length=entry.length,
        sha256=entry.sha256.hex(),
        codec=entry.codec,
    )


def fetch_track(
    source: str,
    track_id: str,
    out: Path,
    options: SessionOptions,
    *,
    catalog: Path | None = None,
    timeout: float = 300.0,
    listing: Listing | None = None,
    locator: str | None = None,
) -> FetchResult:
    """Download one track; ``out`` is a directory (the file gets its member name) or a file.

    ``locator`` is a track locator's path or URL, instead of the one the listing names.
    """
    listing = listing or read_listing(source)
    audio = [e for e in listing.torrents if e.kind == "audio"]
    candidates = sorted(audio, key=lambda e: e.obsolete)  # current collections first
    if catalog is not None:
        collection = locate_in_catalog(catalog, track_id)
        if collection is None:
            raise MirrorError(f"{catalog}: track {track_id} is not packed in any collection")
        candidates = [e for e in candidates if e.collection == collection]
        if not candidates:
            raise MirrorError(f"{source}: no torrent for collection {collection}")
    located: LocatorEntry | None = None
    reads = (0, 0)
    if catalog is None:
        located, reads = _locate(source, listing, track_id, locator, timeout)
        if located is not None:
            collection = located.collection
            candidates = [e for e in candidates if e.collection == collection][:1]
            if not candidates:
                raise MirrorError(
                    f"{source}: no torrent for collection {collection}, where the locator says"
                    f" {track_id} is: the listing and its locator are out of step"
                )
    if not candidates:
        raise MirrorError(f"{source}: lists no audio torrents")
    workdir = Path(
        tempfile.mkdtemp(prefix=".phonotheca-fetch-", dir=out if out.is_dir() else out.parent)
    )
    fetcher = _Fetcher(options, workdir, timeout)
    try:
        pending = []
        found: tuple[_Torrent, IndexEntry] | None = None
        if located is not None:  # no index to read: straight to the track's pieces
            t = fetcher.add(candidates[0], torrent_data(source, listing, candidates[0]))
            found = (t, _index_entry(located))
        else:
            for entry in candidates:
                t = fetcher.add(entry, torrent_data(source, listing, entry))
                fetcher.want(t, t.layout.file_pieces(INDEX_PATH))
                pending.append(t)
        while pending and found is None:
            t = fetcher.wait(pending, lambda t: t.layout.file_pieces(INDEX_PATH))
            pending.remove(t)
            line = _index_of(fetcher, t).get(track_id)
            if line is not None:
                found = (t, line)
        if found is None:
            raise MirrorError(f"track {track_id} is in none of the {len(candidates)} collection(s)")
        torrent, line = found
        for other in pending:  # stop fetching indexes we no longer need
            other.handle.prioritize_pieces([0] * other.layout.num_pieces)
        volume = f"{PAYLOAD_DIR}/{line.volume}"
        try:
            offset, length = torrent.layout.track_span(line)
            fits = line.offset + line.length <= torrent.layout.file(volume).length
        except KeyError:
            fits = False
        if not fits:
            raise MirrorError(
                f"{torrent.entry.name}: has no {volume} holding bytes {line.offset}"
                f"+{line.length} of {track_id}: its locator or index is out of step with it"
            )
        header_at = max(0, offset - BLOCK)
        pieces = torrent.layout.pieces(header_at, offset + length - header_at)
        fetcher.want(torrent, pieces)
        fetcher.wait([torrent], lambda t: pieces)
        header = (
            fetcher.read(torrent, volume, line.offset - BLOCK, BLOCK)
            if line.offset >= BLOCK
            else b""
        )
        data = fetcher.read(torrent, volume, line.offset, line.length)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != line.length or digest != line.sha256:
            raise MirrorError(
                f"{track_id}: the bytes received do not match the index's sha256 (a peer sent"
                " bad data that passed the piece hash, or the torrent is damaged); not written"
            )
        target = out / member_name(track_id, _extension(header, line)) if out.is_dir() else out
        write_atomically(target, data)
        return FetchResult(
            track_id=track_id,
            collection=torrent.entry.collection,
            path=target,
            size=len(data),
            sha256=digest,
            downloaded=fetcher.downloaded(),
            pieces=len(torrent.wanted),
            piece_length=torrent.layout.piece_length,
            found_by="locator" if located else "catalog" if catalog else "indexes",
            locator_reads=reads[0],
            locator_bytes=reads[1],
        )
    finally:
        for t in fetcher.torrents:
            fetcher.session.remove_torrent(t.handle)
        del fetcher
        shutil.rmtree(workdir, ignore_errors=True)
