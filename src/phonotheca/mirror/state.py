"""A mirror directory on disk: where everything is, and crash-safe writes of its state.

```
DIR/torrents.json                      the last listing accepted (its bytes as published)
DIR/torrents.json.minisig              and its signature
DIR/torrents/<name>.torrent
DIR/torrents/<collection>/...          payloads, the same layout as a builder's archive
DIR/catalog.sqlite3                    unpacked from the metadata torrent when complete
DIR/tracks.locator                     the same torrent's track locator (a hard link to it)
DIR/.mirror/                           resume data, status, settings, lock
DIR/.mirror/verified/<collection>.json the pieces known good (see :func:`write_verified`)
DIR/.mirror/trust.json                 the pinned publisher key and last seq (mirror/trust.py)
DIR/.mirror/events.log                 every drop and refused listing, with its reason
```

Every file here is written as ``<name>.partial``, fsynced and renamed, so a ``kill -9``
at any moment leaves either the old or the new file.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from phonotheca.durable import write_atomically
from phonotheca.torrents.listing import LISTING_FILE
from phonotheca.torrents.locator import LOCATOR_FILE

STATE_DIR = ".mirror"


class MirrorError(Exception):
    """A problem the user can fix (directory, budget, disk, listing), with what to do."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1).encode() + b"\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (a state file that
    cannot be read is rebuilt, never a reason to stop)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class MirrorDir:
    """The paths of a mirror directory."""

    root: Path

    @property
    def listing(self) -> Path:
        return self.root / LISTING_FILE

    @property
    def torrents(self) -> Path:
        """Save path of every torrent: payloads are ``torrents/<name>/``."""
        return self.root / "torrents"

    def torrent_file(self, name: str) -> Path:
        return self.torrents / f"{name}.torrent"

    def payload(self, name: str) -> Path:
        return self.torrents / name

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def locator(self) -> Path:
        """The held metadata release's ``tracks.locator``, where ``ARCHIVE/tracks.locator``
        is in a builder's archive (``fetch --locator`` reads it)."""
        return self.root / LOCATOR_FILE

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    def resume_file(self, name: str) -> Path:
        return self.state / "resume" / f"{name}.resume"

    def verified_file(self, name: str) -> Path:
        return self.state / "verified" / f"{name}.json"

    def damaged_file(self, name: str) -> Path:
        """Pieces ``verify`` found corrupted and no repair has fixed yet."""
        return self.state / "damaged" / f"{name}.json"

    @property
    def status_file(self) -> Path:
        return self.state / "status.json"

    @property
    def settings_file(self) -> Path:
        """The options of the last ``mirror`` run, reused when a flag is not given."""
        return self.state / "settings.json"

    @property
    def events_log(self) -> Path:
        """Every held torrent dropped (and every listing refused), one line each, appended."""
        return self.state / "events.log"

    @property
    def trust_file(self) -> Path:
        """The publisher key this mirror pinned and the last ``seq`` it accepted."""
        return self.state / "trust.json"

    @property
    def lock_file(self) -> Path:
        return self.state / "mirror.pid"

    @property
    def catalog_source(self) -> Path:
        """Which metadata torrent ``catalog.sqlite3`` was unpacked from."""
        return self.state / "catalog.json"

    def held(self) -> list[str]:
        """Names of the torrents this mirror holds: those with a ``.torrent`` here."""
        if not self.torrents.is_dir():
            return []
        return sorted(p.name[: -len(".torrent")] for p in self.torrents.glob("*.torrent"))

    def create(self) -> None:
        for d in (self.torrents, self.state / "resume", self.state / "verified"):
            d.mkdir(parents=True, exist_ok=True)


# -- the verified-piece bitfield ---------------------------------------------------------------


def pack_bitfield(have: Sequence[bool]) -> str:
    """Base64 of the bitfield, piece 0 in the most significant bit of the first byte."""
    out = bytearray((len(have) + 7) // 8)
    for i, bit in enumerate(have):
        if bit:
            out[i >> 3] |= 0x80 >> (i & 7)
    return base64.b64encode(bytes(out)).decode("ascii")


def unpack_bitfield(text: str, num_pieces: int) -> list[bool]:
    data = base64.b64decode(text)
    return [bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(num_pieces)]


def write_verified(mirror: MirrorDir, name: str, piece_length: int, have: Sequence[bool]) -> None:
    """Record which pieces of ``name`` are known good (hash-checked), for the web server
    and ``mirror status``: only these pieces' bytes may be served."""
    write_json(
        mirror.verified_file(name),
        {
            "piece_length": piece_length,
            "num_pieces": len(have),
            "complete": bool(have) and all(have),
            "have": pack_bitfield(have),
            "verified_at": utc_now(),
        },
    )


def read_verified(mirror: MirrorDir, name: str) -> list[bool] | None:
    data = read_json(mirror.verified_file(name))
    if not isinstance(data, dict):
        return None
    try:
        return unpack_bitfield(data["have"], int(data["num_pieces"]))
    except (KeyError, ValueError, TypeError, IndexError):
        return None


# -- one mirror process per directory -----------------------------------------------------------


class MirrorLock:
    """An exclusive ``flock`` on ``.mirror/mirror.pid`` holding the owner's pid.

    The kernel drops the lock when the process dies, even by ``kill -9``, so
    :func:`running_pid` never mistakes a stale pid file (or a reused pid) for a live mirror.
    """

    def __init__(self, mirror: MirrorDir) -> None:
        self.path = mirror.lock_file
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise MirrorError(
                f"{self.path.parent.parent}: another mirror (pid {pid}) is running on this"
                " directory; stop it first (Ctrl-C or kill it) or choose another directory"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)


def running_pid(mirror: MirrorDir) -> int | None:
    """The pid of the mirror running on this directory, or None when none is."""
    try:
        f = open(mirror.lock_file)  # noqa: SIM115
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None
