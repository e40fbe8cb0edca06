"""The server's on-demand player: a cached file, or the one running fetch of a track.

:meth:`OnDemand.open` answers a played track with its cache file when the cache holds
it (checked), else with the :class:`~phonotheca.serve.ondemand.flight.TrackFetch` of that
track, started if none runs: concurrent plays of one track share one fetch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from phonotheca.build.tarvolume import PAYLOAD_DIR
from phonotheca.config import ServeSettings
from phonotheca.mirror.session import SessionOptions
from phonotheca.serve.ondemand.cache import TrackCache
from phonotheca.serve.ondemand.errors import OnDemandError
from phonotheca.serve.ondemand.flight import TrackFetch
from phonotheca.serve.ondemand.peers import SwarmPeers
from phonotheca.serve.ondemand.pieces import WebSeedPieces
from phonotheca.serve.ondemand.sources import TorrentFinder

__all__ = ["OnDemand", "OnDemandError", "SwarmTrack"]

CACHE_DIR = ".ondemand-cache"


@dataclass(frozen=True)
class SwarmTrack:
    """Where a track's bytes are in its collection (from the catalog's ledger)."""

    id: str
    collection: str
    volume: str
    offset: int
    """In the volume file."""
    length: int
    sha256: str


class OnDemand:
    """Fetches tracks this server does not hold; one per server process."""

    def __init__(
        self,
        roots: list[Path],
        settings: ServeSettings,
        peer_options: SessionOptions | None = None,
    ) -> None:
        """``peer_options``: the libtorrent session asking peers (None: web seeds only)."""
        directory = Path(settings.cache_dir) if settings.cache_dir else roots[0] / CACHE_DIR
        self.cache = TrackCache(directory, settings.cache_budget)
        self.finder = TorrentFinder(roots, directory)
        self.peers = SwarmPeers(peer_options, directory / "peers") if peer_options else None
        self.pieces = WebSeedPieces(settings.on_demand_timeout, self.peers)
        self.timeout = settings.on_demand_timeout
        self._lock = threading.Lock()
        self._flights: dict[str, TrackFetch] = {}
        self.fetches_started = 0

    def open(self, track: SwarmTrack) -> Path | TrackFetch:
        """The track's cache file, or the fetch that is getting it (OnDemandError when
        its torrent cannot be found or read)."""
        with self._lock:
            flight = self._flights.get(track.sha256)
        if flight is not None:
            return flight
        cached = self.cache.lookup(track.sha256, track.length)
        if cached is not None:
            return cached
        torrent = self.finder.find(track.collection)
        volume = torrent.layout.find(f"{PAYLOAD_DIR}/{track.volume}")
        if volume is None or track.offset + track.length > volume.length:
            raise OnDemandError(
                f"torrent {torrent.name}.torrent has no {track.volume} holding this track:"
                " the catalog and the torrent are out of step",
                torrent=f"{torrent.name}.torrent",
            )
        with self._lock:
            flight = self._flights.get(track.sha256)
            if flight is None:
                flight = TrackFetch(
                    torrent,
                    torrent.layout.track_span(track)[0],
                    track.length,
                    track.sha256,
                    self.cache.new_partial(),
                    self.pieces,
                    self.timeout,
                    self._done,
                )
                self._flights[track.sha256] = flight
                self.fetches_started += 1
                if self.peers is not None:
                    self.peers.use(torrent, torrent.layout.pieces(flight.offset, flight.length))
                flight.start()
        return flight

    def close(self) -> None:
        """Stop the peers' session (fetches running end on their own)."""
        if self.peers is not None:
            self.peers.close()

    def fetching(self) -> int:
        """Fetches running now."""
        with self._lock:
            return len(self._flights)

    def _done(self, flight: TrackFetch) -> None:
        try:
            if flight.error is None:
                flight.cached = self.cache.add(flight.partial, flight.sha256)
        finally:
            with self._lock:
                self._flights.pop(flight.sha256, None)
            if self.peers is not None:
                self.peers.release(flight.torrent)
