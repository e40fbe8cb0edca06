"""What went wrong in the swarm, in words a volunteer can act on.

libtorrent reports trouble as alerts; the mirror keeps, per torrent, the trackers that do
not answer and the bad data it received (:class:`SwarmHealth`), and turns each alert into
one plain message for the console and the status file. Messages are not repeated while
nothing changes: a tracker that stays down is reported once (and again when it answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libtorrent as lt

from phonotheca.mirror.state import utc_now

WATCHED = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.storage
    | lt.alert_category.tracker
    | lt.alert_category.peer
)
"""Alert categories the mirror listens to (``peer`` brings ``peer_ban_alert``)."""


@dataclass
class TrackerDown:
    url: str
    error: str
    failures: int
    since: str


@dataclass
class SwarmHealth:
    """Trouble one torrent met since the mirror started."""

    trackers_down: dict[str, TrackerDown] = field(default_factory=dict)
    hash_failures: int = 0
    """Pieces whose data failed the hash check (and was thrown away)."""
    failed_pieces: list[int] = field(default_factory=list)
    """The latest failed pieces (for naming them when a peer is banned)."""
    banned: list[str] = field(default_factory=list)
    """``ip:port`` of the peers banned for sending bad data."""
    unreported_bans: list[tuple[str, float]] = field(default_factory=list)
    """Bans (peer, monotonic time) not yet named in a message."""


def endpoint(alert: Any) -> str:
    """``ip:port`` of a peer alert (``[v6]:port`` for IPv6)."""
    try:
        ip, port = alert.endpoint
    except (AttributeError, TypeError, ValueError):
        return str(getattr(alert, "ip", "?"))
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def tracker_error(name: str, health: SwarmHealth, alert: Any) -> str | None:
    """Record a failed announce; the message when this tracker is newly down (or its
    error changed), None when it was already reported."""
    url = str(alert.tracker_url())
    reason = str(alert.failure_reason() or "") or str(alert.error.message())
    failures = int(alert.times_in_row)
    known = health.trackers_down.get(url)
    if known is not None:
        known.failures = max(known.failures + 1, failures)
        if known.error == reason:
            return None
        known.error = reason
    else:
        health.trackers_down[url] = TrackerDown(url, reason, max(failures, 1), utc_now())
    return (
        f"{name}: tracker {url} is unreachable ({reason}); the mirror keeps retrying it and"
        " meanwhile uses its web seeds, the other trackers and the peers it already knows"
    )


def tracker_reply(name: str, health: SwarmHealth, alert: Any) -> str | None:
    """A tracker answered: the message when it was down before."""
    url = str(alert.tracker_url())
    if health.trackers_down.pop(url, None) is None:
        return None
    return f"{name}: tracker {url} answers again ({alert.num_peers} peer(s))"


BAN_WAIT = 1.0
"""Seconds a ban waits for its hash failure before it is reported on its own."""


def peer_banned(health: SwarmHealth, peer: str, now: float) -> None:
    """Record a ban; it is reported with the hash failure libtorrent posts next to it
    (just before or after, in the same or the next batch of alerts)."""
    health.banned = [*health.banned, peer][-20:]
    health.unreported_bans.append((peer, now))


def hash_failed(name: str, health: SwarmHealth, pieces: list[int]) -> str:
    """One message for the pieces of one batch of alerts that failed their hash check,
    naming the peers banned for it."""
    health.hash_failures += len(pieces)
    health.failed_pieces = [*health.failed_pieces, *pieces][-10:]
    peers = ", ".join(dict.fromkeys(peer for peer, _ in health.unreported_bans))
    health.unreported_bans.clear()
    which = f"piece {pieces[0]}" if len(pieces) == 1 else f"pieces {', '.join(map(str, pieces))}"
    source = (
        f"peer {peers} sent the bad data and is banned"
        if peers
        else "a peer or web seed sent bad data (a peer is banned once it is identified)"
    )
    return (
        f"{name}: {which} failed the hash check: {source}; the data was thrown away and"
        " is downloaded again; verified pieces are untouched"
    )


def lone_bans(name: str, health: SwarmHealth, now: float) -> str | None:
    """Bans no hash failure came with (e.g. found out later by comparing data)."""
    if not health.unreported_bans or now - health.unreported_bans[0][1] < BAN_WAIT:
        return None
    peers = ", ".join(dict.fromkeys(peer for peer, _ in health.unreported_bans))
    health.unreported_bans.clear()
    last = f" (piece {health.failed_pieces[-1]})" if health.failed_pieces else ""
    return (
        f"{name}: peer {peers} banned: it sent data that failed the hash check{last};"
        " the mirror no longer downloads from it"
    )
