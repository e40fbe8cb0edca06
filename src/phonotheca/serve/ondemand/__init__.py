"""On-demand streaming: a track this server does not hold, fetched from the swarm when played.

:mod:`.sources` finds the collection's torrent and its web seeds, :mod:`.pieces` fetches
pieces over HTTP ranges and checks each one's SHA-1 before any byte is used,
:mod:`.flight` runs one fetch per track that every reader of it shares, :mod:`.cache`
keeps whole tracks (sha256 checked) within a byte budget, and :mod:`.engine` ties them
together for the server.
"""

from phonotheca.serve.ondemand.engine import OnDemand, OnDemandError
from phonotheca.serve.ondemand.flight import TrackFetch

__all__ = ["OnDemand", "OnDemandError", "TrackFetch"]
