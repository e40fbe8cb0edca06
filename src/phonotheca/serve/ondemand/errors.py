"""The one error on-demand playing raises: its message is what the client is told."""

from __future__ import annotations


class OnDemandError(Exception):
    """A track could not be fetched from the swarm (or not in time); names the torrent."""

    def __init__(self, message: str, *, torrent: str | None = None, timeout: bool = False):
        super().__init__(message)
        self.torrent = torrent
        self.timeout = timeout
