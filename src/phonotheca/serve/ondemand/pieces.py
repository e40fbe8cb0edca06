"""Pieces of a torrent from its BEP 19 web seeds, each checked against its SHA-1.

A piece's bytes may lie in several files (a piece runs across file boundaries; BEP 47
pad files are zeros and never asked for); each part is one HTTP ``Range`` request to the
seed's URL of that file, on a kept-alive connection per seed. A piece whose SHA-1 does
not match the torrent's is never handed out, and the seed that sent it is dropped for
that torrent: the next seed is asked, and when none is left the error says so. With a
peers' session (:mod:`.peers`), connected peers are asked first.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
import urllib.parse
from dataclasses import dataclass, field

from phonotheca.serve.ondemand.errors import OnDemandError
from phonotheca.serve.ondemand.peers import SwarmPeers
from phonotheca.serve.ondemand.sources import SwarmTorrent

PEER_WAIT = 5.0
"""Seconds a piece asked of connected peers may take before the web seeds are asked."""

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class SeedFailed(Exception):
    """A seed did not answer the request as asked (down, wrong status, short body)."""


@dataclass
class WebSeedPieces:
    """Fetches verified pieces; shared by every fetch of the server (thread-safe)."""

    timeout: float
    peers: SwarmPeers | None = None
    """Asked first when set; the web seeds when no peer is connected or sends the piece."""
    bytes_fetched: int = 0
    """Payload bytes received, good or bad: what the benchmark compares to track sizes."""
    _dropped: dict[str, set[str]] = field(default_factory=dict)
    """Seeds that sent bad data, by torrent name: never asked for that torrent again."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def dropped(self, torrent: str) -> set[str]:
        with self._lock:
            return set(self._dropped.get(torrent, ()))

    def piece(self, torrent: SwarmTorrent, index: int, connections: SeedConnections) -> bytes:
        """Piece ``index`` of ``torrent``, its SHA-1 checked; OnDemandError when no seed
        sends it."""
        failures: list[str] = []
        if self.peers is not None:
            # Without web seeds, wait for peers as long as a client would wait.
            patience = 0.0 if torrent.web_seeds else self.timeout
            wait = min(self.timeout, PEER_WAIT) if torrent.web_seeds else self.timeout
            data = self.peers.piece(torrent, index, wait, patience)
            if data is not None and hashlib.sha1(data).digest() == torrent.layout.piece_hash(index):
                return data
            failures.append("no peer sent it" if data is None else "a peer sent bad data")
        bad = self.dropped(torrent.name)
        for seed in torrent.web_seeds:
            if seed in bad:
                continue
            try:
                data = self._read(torrent, index, seed, connections)
            except SeedFailed as exc:
                failures.append(f"{seed}: {exc}")
                continue
            if hashlib.sha1(data).digest() == torrent.layout.piece_hash(index):
                return data
            with self._lock:
                self._dropped.setdefault(torrent.name, set()).add(seed)
            bad.add(seed)
        why = "; ".join(failures) if failures else "no web seed left"
        if bad:
            why += f"; dropped for sending bad data: {', '.join(sorted(bad))}"
        raise OnDemandError(
            f"no source sent piece {index} of torrent {torrent.name}.torrent ({why})",
            torrent=f"{torrent.name}.torrent",
        )

    def _read(
        self, torrent: SwarmTorrent, index: int, seed: str, connections: SeedConnections
    ) -> bytes:
        layout = torrent.layout
        start = index * layout.piece_length
        end = start + layout.piece_size(index)
        parts = []
        for f in layout.files:
            lo, hi = max(start, f.offset), min(end, f.offset + f.length)
            if lo >= hi:
                continue
            if f.pad:
                parts.append(bytes(hi - lo))
                continue
            url = torrent.file_url(seed, f.path)
            parts.append(connections.get_range(url, lo - f.offset, hi - lo))
            with self._lock:
                self.bytes_fetched += hi - lo
        return b"".join(parts)


class SeedConnections:
    """Kept-alive HTTP connections of one fetch, one per seed host (not thread-safe)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._open: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def get_range(self, url: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of ``url``; one retry on a fresh connection (a
        kept-alive one the server closed)."""
        for attempt in (0, 1):
            try:
                return self._get(url, offset, length)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(url)
                if attempt:
                    raise SeedFailed(str(exc) or type(exc).__name__) from None
        raise AssertionError("unreachable")

    def _get(self, url: str, offset: int, length: int) -> bytes:
        parts = urllib.parse.urlsplit(url)
        conn = self._connection(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        response = conn.getresponse()
        body = response.read(length + 1)
        if response.status != 206:
            response.close()
            raise SeedFailed(f"HTTP {response.status} for a range of {url}")
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset or len(body) != length:
            self._drop(url)
            raise SeedFailed(f"{url} answered another range than asked")
        return body

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._open.get(key)
        if conn is None:
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            conn = kind(netloc, timeout=self.timeout)
            self._open[key] = conn
        return conn

    def _drop(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        conn = self._open.pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()
