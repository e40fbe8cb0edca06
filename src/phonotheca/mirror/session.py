"""The mirror's libtorrent session: download and seed torrents until told to stop.

Crash safety: resume data is saved every :data:`RESUME_INTERVAL` seconds for torrents that
changed, at once when a torrent completes, and for all on a graceful stop; every state
file is written atomically. A restart loads the resume data and trusts the pieces it
lists, so complete data is not hashed again; a ``kill -9`` loses at most the pieces
downloaded since the last save, which are fetched again.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libtorrent as lt

from phonotheca.config import MirrorSettings
from phonotheca.mirror.state import MirrorDir, atomic_write, utc_now, write_verified
from phonotheca.mirror.status import MirrorStatus, TorrentStatus, write_status

RESUME_INTERVAL = 60.0
"""Seconds between saves of resume data for torrents that changed."""
STATUS_INTERVAL = 2.0
"""Seconds between rewrites of the status file."""
VERIFIED_INTERVAL = 10.0
"""Seconds between rewrites of a downloading torrent's verified-piece bitfield."""
STOP_TIMEOUT = 4.0
"""Seconds a graceful stop waits for libtorrent to hand over resume data."""

_ALERTS = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.storage
    | lt.alert_category.tracker
)


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

    @classmethod
    def from_settings(
        cls,
        settings: MirrorSettings,
        *,
        listen: str | None = None,
        max_up: int = 0,
        max_down: int = 0,
    ) -> SessionOptions:
        return cls(
            listen=listen or settings.listen,
            dht=settings.dht,
            lsd=settings.lsd,
            upnp=settings.upnp,
            natpmp=settings.natpmp,
            max_up=max_up,
            max_down=max_down,
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
        "alert_mask": int(_ALERTS),
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
    completed: bool = False
    """Whether :meth:`MirrorSession._complete` ran for it in this session."""


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
    verified_interval: float = VERIFIED_INTERVAL
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
        params.ti = ti
        params.save_path = str(self.mirror.torrents)
        if web_seeds:
            params.url_seeds = sorted(set(params.url_seeds) | set(web_seeds))
        handle = self.session.add_torrent(params)
        held = Held(name, kind, handle, ti.piece_length(), ti.num_pieces(), ti.total_size())
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
            self._write_verified(force=False)
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
        self._write_verified(force=True)
        self._write_status("stopped", on_status)

    def save_resume(self, *, only_changed: bool) -> None:
        for held in self.held.values():
            handle = held.handle
            if not handle.is_valid():
                continue
            if only_changed and not handle.need_save_resume_data():
                continue
            handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
            self._pending_resume.add(held.name)

    def _name(self, alert: Any) -> str | None:
        try:
            return self._by_hash.get(infohash(alert.handle))
        except RuntimeError:  # the handle went away with its torrent
            return None

    def _handle_alerts(self) -> None:
        for alert in self.session.pop_alerts():
            name = self._name(alert) if hasattr(alert, "handle") else None
            if isinstance(alert, lt.save_resume_data_alert):
                if name is not None:
                    self._pending_resume.discard(name)
                    self._keep(
                        atomic_write,
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
            elif isinstance(alert, lt.hash_failed_alert):
                self.event(
                    f"{name}: piece {alert.piece_index} failed its hash check (a peer or web"
                    " seed sent bad data); it is downloaded again, verified data is untouched"
                )
            elif isinstance(alert, lt.tracker_error_alert):
                self.event(
                    f"{name}: tracker {alert.tracker_url()} unreachable ({alert.error.message()});"
                    " other trackers, web seeds and known peers keep working"
                )
            elif isinstance(alert, lt.torrent_error_alert):
                self.event(f"{name}: {alert.error.message()}")

    def _complete(self, held: Held) -> None:
        """A torrent has every piece: save its state now, and let the owner act on it."""
        if held.completed:
            return
        held.completed = True
        held.handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
        self._pending_resume.add(held.name)
        self._keep(self._write_one_verified, held)
        if held.kind != "metadata" or self.on_complete is None:
            self.event(f"{held.name}: complete, seeding")
        if self.on_complete is not None:
            self.on_complete(held)

    def _check_completed(self) -> None:
        """Catch completions whose alert was missed (e.g. complete from resume data)."""
        for held in self.held.values():
            if not held.completed and held.handle.status(0).is_finished:
                self._complete(held)

    def _file_error(self, name: str | None, alert: Any) -> None:
        code = alert.error.value()
        path = alert.filename()
        if code == errno.ENOSPC:
            message = (
                f"{name}: disk full while writing {path}; the torrent is paused and what is"
                f" already verified is kept. Free space on {self.mirror.root} or lower --budget,"
                " then start the mirror again"
            )
        else:
            message = f"{name}: cannot use {path}: {alert.error.message()}"
        if name in self.held:
            self.held[name].error = message
        self.event(message)

    # -- state files ---------------------------------------------------------------------------

    def _write_one_verified(self, held: Held) -> None:
        status = held.handle.status(lt.torrent_handle.query_pieces)
        have = list(status.pieces)
        if len(have) != held.num_pieces:  # still checking: nothing known yet
            return
        write_verified(self.mirror, held.name, held.piece_length, have)
        held.verified_count = sum(have)
        held.verified_at = time.monotonic()

    def _write_verified(self, *, force: bool) -> None:
        now = time.monotonic()
        for held in self.held.values():
            if not force and now - held.verified_at < self.verified_interval:
                continue
            if force or held.handle.status(0).num_pieces != held.verified_count:
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
