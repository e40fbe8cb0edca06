"""What a running mirror is doing, as a file another shell can read.

The mirror rewrites ``.mirror/status.json`` every few seconds; ``phonotheca mirror
status`` reads it and asks the lock (:func:`~phonotheca.mirror.state.running_pid`)
whether the process that wrote it still runs, so a mirror killed by ``kill -9`` is
reported as stopped, with the time of its last word.
"""

from __future__ import annotations

from typing import Any

import msgspec

from phonotheca.durable import write_atomically
from phonotheca.mirror.state import MirrorDir, read_json, running_pid


class TrackerStatus(msgspec.Struct, kw_only=True):
    """A tracker that does not answer (the mirror keeps retrying it)."""

    url: str
    error: str
    failures: int
    """Failed announces in a row."""
    since: str
    """When it was first found down (UTC ISO 8601)."""


class TorrentStatus(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    state: str
    """libtorrent's state: checking_files, downloading, finished, seeding, ... or error."""
    progress: float
    size: int
    done: int
    """Verified bytes held."""
    pieces: int
    pieces_have: int
    download_rate: int
    upload_rate: int
    peers: int
    seeds: int
    uploaded: int
    downloaded: int
    ratio: float | None
    """All-time upload / payload size (how many copies this mirror has given away)."""
    checks: int = 0
    """Times libtorrent entered checking_files since the mirror started (re-hashing)."""
    error: str | None = None
    trackers_down: list[TrackerStatus] = msgspec.field(default_factory=list)
    hash_failures: int = 0
    """Pieces received with bad data since the mirror started (thrown away, fetched again)."""
    banned_peers: list[str] = msgspec.field(default_factory=list)
    """``ip:port`` of peers banned for sending bad data."""


class MirrorStatus(msgspec.Struct, kw_only=True):
    pid: int
    state: str
    """starting, running, stopping or stopped."""
    started_at: str
    updated_at: str
    listen_port: int | None = None
    budget: int | None = None
    torrents: list[TorrentStatus] = msgspec.field(default_factory=list)
    events: list[str] = msgspec.field(default_factory=list)
    """The latest messages (tracker down, bad data from a peer, disk full, ...)."""

    @property
    def download_rate(self) -> int:
        return sum(t.download_rate for t in self.torrents)

    @property
    def upload_rate(self) -> int:
        return sum(t.upload_rate for t in self.torrents)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MirrorStatus)


def write_status(mirror: MirrorDir, status: MirrorStatus) -> None:
    write_atomically(mirror.status_file, msgspec.json.format(_encoder.encode(status), indent=1))


def read_status(mirror: MirrorDir) -> MirrorStatus | None:
    try:
        return _decoder.decode(mirror.status_file.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None


def status_report(mirror: MirrorDir) -> dict[str, Any]:
    """The status file plus whether its writer still runs, and the pinned publisher key
    (``trust.json``), for ``mirror status --json``."""
    pid = running_pid(mirror)
    status = read_status(mirror)
    report: dict[str, Any] = {"directory": str(mirror.root), "running": pid is not None}
    report["pid"] = pid
    trust = read_json(mirror.trust_file)
    report["trust"] = trust if isinstance(trust, dict) else None
    if status is None:
        report["status"] = None
    else:
        data = msgspec.to_builtins(status)
        if pid is None and status.state != "stopped":
            data["state"] = "stopped"
            data["note"] = f"the mirror stopped without saying so (last update {status.updated_at})"
        report["status"] = data
    return report
