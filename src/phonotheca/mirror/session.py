"""The mirror's libtorrent session: download and seed torrents until told to stop.

Crash safety: every :data:`SAVE_INTERVAL` seconds, a torrent that got new pieces has its
resume data saved and its verified-piece bitfield rewritten; resume data is also saved
every :data:`RESUME_INTERVAL` seconds for any other change (upload counters), at once when
a torrent completes, and for all on a graceful stop; every state file is written
atomically. A restart loads the resume data and trusts the pieces it lists, so verified
data is not hashed again; a ``kill -9`` loses at most the pieces downloaded in the last
``SAVE_INTERVAL`` seconds, which are fetched again. Without resume data (killed before
the first save) libtorrent hashes the files on disk and keeps every good piece.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libtorrent as lt

from phonotheca.config import MirrorSettings
from phonotheca.durable import sync_files, write_atomically
from phonotheca.mirror import alerts
from phonotheca.mirror.alerts import WATCHED, SwarmHealth
from phonotheca.mirror.state import MirrorDir, utc_now, write_verified
from phonotheca.mirror.status import MirrorStatus, TorrentStatus, TrackerStatus, write_status
from phonotheca.torrents.layout import LayoutError, read_layout

RESUME_INTERVAL = 60.0
"""Seconds between saves of resume data for torrents that changed in any way."""
STATUS_INTERVAL = 2.0
"""Seconds between rewrites of the status file."""
SAVE_INTERVAL = 10.0
"""Seconds between saves (resume data and verified bitfield) of a downloading torrent:
the most download progress a ``kill -9`` can lose."""
STOP_TIMEOUT = 4.0
"""Seconds a graceful stop waits for libtorrent to hand over resume data."""


DISK_FULL_MARGIN = 1 << 20
"""Free bytes under which a file error is taken for a full disk."""


@dataclass(frozen=True)
class SessionOptions:
    """Where the session listens, which discovery it uses, how fast it may go."""

    listen: str = "0.0.0.0:6881"
    dht: bool = True
    lsd: bool = True
    upnp: bool = True
    natpmp: bool = True
    max_up: int = 0
    """Bytes per second; 0 is unlimited."""
    max_down: int = 0
    save_interval: float = SAVE_INTERVAL
    """Seconds between saves of download progress (see :data:`SAVE_INTERVAL`)."""

    @classmethod
    def from_settings(
        cls,
        settings: MirrorSettings,
        *,
        listen: str | None = None,
        max_up: int = 0,
        max_down: int = 0,
        save_interval: float = SAVE_INTERVAL,
    ) -> SessionOptions:
        return cls(
            listen=listen or settings.listen,
            dht=settings.dht,
            lsd=settings.lsd,
            upnp=settings.upnp,
            natpmp=settings.natpmp,
            max_up=max_up,
            max_down=max_down,
            save_interval=save_interval,
        )


def session_settings(options: SessionOptions) -> dict[str, Any]:
    """libtorrent settings; passed at construction so no discovery starts unless asked."""
    settings: dict[str, Any] = {
        "listen_interfaces": options.listen,
        "enable_dht": options.dht,
        "enable_lsd": options.lsd,
        "enable_upnp": options.upnp,
        "enable_natpmp": options.natpmp,
        "upload_rate_limit": options.max_up,
        "download_rate_limit": options.max_down,
        "alert_mask": int(WATCHED),
        # Several peers behind one address (a LAN, or 127.0.0.1 in tests) must all connect.
        "allow_multiple_connections_per_ip": True,
        # A mirror seeds everything it holds, not five torrents at a time.
        "active_downloads": 8,
        "active_seeds": -1,
        "active_limit": -1,
        "user_agent": "phonotheca-mirror",
    }
    if not options.dht:
        settings["dht_bootstrap_nodes"] = ""
    return settings


def make_session(options: SessionOptions) -> lt.session:
    session: lt.session = lt.session(session_settings(options))  # type: ignore[call-overload]
    return session


def infohash(handle: lt.torrent_handle) -> str:
    return str(handle.info_hashes().v1)


@dataclass
class Held:
    """A torrent in the session."""

    name: str
    kind: str
    handle: lt.torrent_handle
    piece_length: int
    num_pieces: int
    size: int
    checks: int = 0
    error: str | None = None
    verified_count: int = -1
    verified_at: float = 0.0
    saved_pieces: int = -1
    """Pieces held when its resume data was last asked for (-1: not yet)."""
    completed: bool = False
    """Whether :meth:`MirrorSession._complete` ran for it in this session."""
    health: SwarmHealth = field(default_factory=SwarmHealth)
    on_disk: list[bool] | None = None
    """After a file error: which pieces hash right as they are on the disk (None: not
    checked since the error)."""


@dataclass
class MirrorSession:
    """A libtorrent session over a mirror directory; see :meth:`run`."""

    mirror: MirrorDir
    options: SessionOptions
    on_complete: Callable[[Held], None] | None = None
    """Called when a torrent completes (e.g. to unpack the catalog)."""
    budget: int | None = None
    session: lt.session = field(init=False)
    held: dict[str, Held] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    on_event: Callable[[str], None] | None = None
    started_at: str = field(default_factory=utc_now)
    _pending_resume: set[str] = field(default_factory=set)
    _write_failed: bool = False
    _by_hash: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mirror.create()
        self.session = make_session(self.options)

    # -- torrents ------------------------------------------------------------------------------

    def add(self, name: str, kind: str, torrent_data: bytes, web_seeds: Sequence[str] = ()) -> Held:
        """Add a torrent; its resume data, when saved before, spares a re-hash."""
        ti = lt.torrent_info(torrent_data)
        params: lt.add_torrent_params | None = None
        resume = self.mirror.resume_file(name)
        if resume.exists():
            try:
                params = lt.read_resume_data(resume.read_bytes())
            except RuntimeError:
                self.event(f"{name}: resume data unreadable, checking the files instead")
        if params is None:
            params = lt.add_torrent_params()
        # A mirror wants every piece, whatever priorities an earlier session left behind.
        params.piece_priorities = []
        params.file_priorities = []
        params.ti = ti
        params.save_path = str(self.mirror.torrents)
        if web_seeds:
            params.url_seeds = sorted(set(params.url_seeds) | set(web_seeds))
        handle = self.session.add_torrent(params)
        held = Held(name, kind, handle, ti.piece_length(), ti.num_pieces(), ti.total_size())
        if resume.exists():
            held.saved_pieces = sum(params.have_pieces)
        self.held[name] = held
        self._by_hash[infohash(handle)] = name
        return held

    def remove(self, name: str, *, delete_files: bool) -> None:
        """Stop seeding ``name``; with ``delete_files`` its payload and state go too."""
        held = self.held.pop(name, None)
        if held is not None:
            self._by_hash.pop(infohash(held.handle), None)
            flags = lt.session.delete_files if delete_files else 0
            self.session.remove_torrent(held.handle, flags)
        if delete_files:
            for path in (
                self.mirror.resume_file(name),
                self.mirror.verified_file(name),
                self.mirror.torrent_file(name),
            ):
                path.unlink(missing_ok=True)

    # -- the loop ------------------------------------------------------------------------------

    def event(self, message: str) -> None:
        self.events.append(f"{utc_now()} {message}")
        if self.on_event is not None:
            self.on_event(message)

    def run(
        self,
        stop: threading.Event,
        on_status: Callable[[MirrorStatus], None] | None = None,
    ) -> None:
        """Download and seed until ``stop`` is set, then save everything and return."""
        next_status = next_resume = 0.0
        self._write_status("running", on_status)
        while not stop.is_set():
            self._handle_alerts()
            now = time.monotonic()
            if now >= next_resume:
                if next_resume:
                    self.save_resume(only_changed=True)
                next_resume = now + RESUME_INTERVAL
            self._save_progress(now)
            if now >= next_status:
                self._check_completed()
                self._write_status("running", on_status)
                next_status = now + STATUS_INTERVAL
            self.session.wait_for_alert(200)
        self.close(on_status)

    def close(self, on_status: Callable[[MirrorStatus], None] | None = None) -> None:
        """Graceful stop: pause, save resume data and bitfields, say so in the status."""
        self._write_status("stopping", on_status)
        self._handle_alerts()
        self._check_completed()
        self.session.pause()
        self.save_resume(only_changed=False)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._pending_resume and time.monotonic() < deadline:
            self.session.wait_for_alert(100)
            self._handle_alerts()
        if self._pending_resume:
            self.event(
                f"resume data not saved in time for: {', '.join(sorted(self._pending_resume))}"
            )
        self._write_verified()
        self._write_status("stopped", on_status)

    def save_resume(self, *, only_changed: bool) -> None:
        for held in self.held.values():
            handle = held.handle
            if not handle.is_valid():
                continue
            if only_changed and not handle.need_save_resume_data():
                continue
            self._save_one(held)

    def _save_one(self, held: Held) -> None:
        """Ask for resume data (written when its alert comes) with the pieces held now."""
        held.saved_pieces = held.handle.status(0).num_pieces
        held.handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
        self._pending_resume.add(held.name)

    def _save_progress(self, now: float) -> None:
        """Every ``save_interval``: torrents with new pieces get their resume data and
        verified bitfield saved, so a ``kill -9`` loses at most that much progress."""
        for held in self.held.values():
            if now - held.verified_at < self.options.save_interval or held.completed:
                continue
            pieces = held.handle.status(0).num_pieces
            if pieces != held.verified_count:
                self._keep(self._write_one_verified, held)
            if pieces != held.saved_pieces and held.name not in self._pending_resume:
                self._save_one(held)
            held.verified_at = now

    def _name(self, alert: Any) -> str | None:
        try:
            return self._by_hash.get(infohash(alert.handle))
        except RuntimeError:  # the handle went away with its torrent
            return None

    def _handle_alerts(self) -> None:
        failed: dict[str, list[int]] = {}
        now = time.monotonic()
        for alert in self.session.pop_alerts():
            name = self._name(alert) if hasattr(alert, "handle") else None
            if isinstance(alert, lt.save_resume_data_alert):
                if name is not None:
                    self._pending_resume.discard(name)
                    self._keep(
                        write_atomically,
                        self.mirror.resume_file(name),
                        lt.write_resume_data_buf(alert.params),
                    )
            elif isinstance(alert, lt.save_resume_data_failed_alert):
                if name is not None:
                    self._pending_resume.discard(name)
            elif isinstance(alert, lt.torrent_finished_alert) and name in self.held:
                self._complete(self.held[name])
            elif isinstance(alert, lt.state_changed_alert) and name in self.held:
                if alert.state == lt.torrent_status.states.checking_files:
                    self.held[name].checks += 1
            elif isinstance(alert, lt.file_error_alert):
                self._file_error(name, alert)
            elif isinstance(alert, lt.tracker_error_alert) and name in self.held:
                self._say(alerts.tracker_error(name, self.held[name].health, alert))
            elif isinstance(alert, lt.tracker_reply_alert) and name in self.held:
                self._say(alerts.tracker_reply(name, self.held[name].health, alert))
            elif isinstance(alert, lt.hash_failed_alert) and name in self.held:
                # Named after the whole batch: the ban of the peer that sent it comes
                # next to it (before or after).
                failed.setdefault(name, []).append(int(alert.piece_index))
            elif isinstance(alert, lt.peer_ban_alert) and name in self.held:
                alerts.peer_banned(self.held[name].health, alerts.endpoint(alert), now)
            elif isinstance(alert, lt.torrent_error_alert):
                self.event(f"{name}: {alert.error.message()}")
        for name, pieces in failed.items():
            self.event(alerts.hash_failed(name, self.held[name].health, pieces))
        for held in self.held.values():
            self._say(alerts.lone_bans(held.name, held.health, now))

    def _say(self, message: str | None) -> None:
        if message is not None:
            self.event(message)

    def _complete(self, held: Held) -> None:
        """A torrent has every piece: save its state now, and let the owner act on it."""
        if held.completed:
            return
        held.completed = True
        self._save_one(held)
        self._keep(self._write_one_verified, held)
        if held.kind != "metadata" or self.on_complete is None:
            self.event(f"{held.name}: complete, seeding")
        if self.on_complete is not None:
            self._wait_on_disk(held)
            self.on_complete(held)

    def _wait_on_disk(self, held: Held, timeout: float = 30.0) -> None:
        """Wait (bounded) until every file of ``held`` is on disk at its full size.

        libtorrent hashes a piece from the blocks it holds in memory and may say the
        torrent is finished while the last writes are still queued: a file can be missing
        for a moment after the alert (seen with a one-piece metadata torrent). The owner
        reads the files next, so it must not act before they are written."""
        try:
            layout = read_layout(self.mirror.torrent_file(held.name))
        except (OSError, LayoutError):
            return  # nothing to wait on: the owner reports what it cannot read
        held.handle.flush_cache()
        base = self.mirror.payload(held.name)
        wanted = [(base / f.path, f.length) for f in layout.files if not f.pad]
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            try:
                if all(os.path.getsize(path) == size for path, size in wanted):
                    return
            except OSError:
                pass  # not created yet
            time.sleep(0.05)

    def _check_completed(self) -> None:
        """Catch completions whose alert was missed (e.g. complete from resume data).

        Every piece must be there: libtorrent calls a torrent "finished" for a moment
        after it is added, before it has read its resume data or files."""
        for held in self.held.values():
            if held.completed:
                continue
            status = held.handle.status(0)
            if status.is_finished and status.num_pieces == held.num_pieces:
                self._complete(held)

    def _disk_full(self, code: int) -> bool:
        """ENOSPC, or an error a full disk causes indirectly: a directory that could not be
        created makes libtorrent's open fail with ENOENT."""
        if code in (errno.ENOSPC, errno.EDQUOT):
            return True
        if code not in (errno.ENOENT, errno.EIO):
            return False
        try:
            return shutil.disk_usage(self.mirror.root).free < DISK_FULL_MARGIN
        except OSError:
            return False

    def _file_error(self, name: str | None, alert: Any) -> None:
        code = alert.error.value()
        path = alert.filename()
        if self._disk_full(code):
            message = (
                f"{name}: disk full while writing {path}; the torrent is paused and what is"
                f" already verified is kept. Free space on {self.mirror.root} or lower --budget,"
                " then start the mirror again"
            )
        else:
            message = f"{name}: cannot use {path}: {alert.error.message()}"
        if name in self.held:
            self.held[name].error = message
            self.held[name].on_disk = None
        self.event(message)

    # -- state files ---------------------------------------------------------------------------

    def _write_one_verified(self, held: Held) -> None:
        status = held.handle.status(lt.torrent_handle.query_pieces)
        have = list(status.pieces)
        if len(have) != held.num_pieces:  # still checking: nothing known yet
            return
        if held.error is not None:
            # A write failed (a full disk): libtorrent hashes a piece from the blocks it
            # still holds in memory, so it may count one whose write then failed. Only
            # pieces that hash right on the disk are vouched for (read once per error).
            if held.on_disk is None:
                held.on_disk = self._pieces_on_disk(held)
            have = [h and d for h, d in zip(have, held.on_disk, strict=True)]
        # The pieces the bitfield calls good must be on the disk before it says so: after
        # a power cut a piece still in the page cache would read as zeros, yet count as
        # verified. (A kill -9 loses nothing: the page cache outlives the process.)
        sync_files(self.mirror.payload(held.name))
        write_verified(self.mirror, held.name, held.piece_length, have)
        held.verified_count = sum(have)
        held.verified_at = time.monotonic()

    def _pieces_on_disk(self, held: Held) -> list[bool]:
        from phonotheca.mirror.verify import hash_pieces
        from phonotheca.torrents.layout import read_layout

        layout = read_layout(self.mirror.torrent_file(held.name))
        return hash_pieces(self.mirror.payload(held.name), layout)

    def _write_verified(self) -> None:
        for held in self.held.values():
            self._keep(self._write_one_verified, held)

    def snapshot(self, state: str) -> MirrorStatus:
        torrents = []
        for held in self.held.values():
            s = held.handle.status()
            error = held.error or (s.errc.message() if s.errc.value() else None)
            torrents.append(
                TorrentStatus(
                    name=held.name,
                    kind=held.kind,
                    state="error" if error else str(s.state),
                    progress=s.progress,
                    size=held.size,
                    done=s.total_wanted_done,
                    pieces=held.num_pieces,
                    pieces_have=s.num_pieces,
                    download_rate=s.download_payload_rate,
                    upload_rate=s.upload_payload_rate,
                    peers=s.num_peers,
                    seeds=s.num_seeds,
                    uploaded=s.all_time_upload,
                    downloaded=s.all_time_download,
                    ratio=s.all_time_upload / held.size if held.size else None,
                    checks=held.checks,
                    error=error,
                    trackers_down=[
                        TrackerStatus(url=t.url, error=t.error, failures=t.failures, since=t.since)
                        for t in held.health.trackers_down.values()
                    ],
                    hash_failures=held.health.hash_failures,
                    banned_peers=list(held.health.banned),
                )
            )
        return MirrorStatus(
            pid=os.getpid(),
            state=state,
            started_at=self.started_at,
            updated_at=utc_now(),
            listen_port=self.session.listen_port(),
            budget=self.budget,
            torrents=torrents,
            events=list(self.events),
        )

    def _keep(self, write: Callable[..., None], *args: Any) -> None:
        """Write a state file; when the disk refuses, say so once and keep seeding (the
        previous file stays intact: writes go through ``.partial``)."""
        try:
            write(*args)
        except OSError as exc:
            if not self._write_failed:
                self.event(
                    f"cannot write mirror state under {self.mirror.state}: {exc.strerror};"
                    " the last saved state is kept. Free some space"
                )
            self._write_failed = True
        else:
            self._write_failed = False

    def _write_status(self, state: str, on_status: Callable[[MirrorStatus], None] | None) -> None:
        status = self.snapshot(state)
        self._keep(write_status, self.mirror, status)
        if on_status is not None:
            on_status(status)
