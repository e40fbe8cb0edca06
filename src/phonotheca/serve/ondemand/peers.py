"""Pieces from BitTorrent peers: one libtorrent session per server process.

A collection's torrent is added when a track of it is first played, every piece at
priority 0 but the track's (at 1) and without its web seeds (those are fetched by
:mod:`.pieces`' own client), so it finds peers through its trackers (and DHT/LSD as
``[mirror]`` allows) and downloads nothing else. A wanted piece gets priority 7 and a
deadline of now, so libtorrent asks the peers for it first and posts its bytes once its
SHA-1 matched; libtorrent also bans peers that send bad pieces. While no peer is
connected the caller goes to the web seeds instead, or, with none, waits while the
trackers are asked again. A torrent is removed, with the pieces it wrote, when no fetch
uses it.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import libtorrent as lt

from phonotheca.mirror.session import SessionOptions, make_session
from phonotheca.serve.ondemand.sources import SwarmTorrent, without_web_seeds

_TICK_MS = 200
_POLL = 0.05
"""Seconds between looks at a torrent's peers while a piece is awaited."""
REMOVAL_WAIT = 5.0
REANNOUNCE = 2.0
"""Seconds between announces while a wanted piece has no peer to come from."""


class SwarmPeers:
    """The session, its alert loop, and the torrents in use."""

    def __init__(self, options: SessionOptions, workdir: Path) -> None:
        self.workdir = workdir
        shutil.rmtree(workdir, ignore_errors=True)  # pieces of a previous process
        workdir.mkdir(parents=True, exist_ok=True)
        self.session = make_session(options)
        self.session.apply_settings(
            {
                "close_redundant_connections": False,
                "min_reconnect_time": 2,
                # uTP's congestion control (LEDBAT) yields to any other traffic, by design
                # for background seeding, and runs in user space: on a busy host a 4 MiB
                # piece took seconds where TCP takes tens of milliseconds, 16 pieces at
                # once several seconds, and with 32 at once some connections stalled (the
                # seeder sent nothing, the plays failed at on_demand_timeout). A listener
                # waits on these pieces, so this session connects out over TCP (peers may
                # still come in over uTP).
                "enable_outgoing_utp": False,
            }
        )
        self._lock = threading.Lock()
        self._handles: dict[str, lt.torrent_handle] = {}
        self._adds = 0
        self._users: dict[str, int] = {}
        self._got: dict[tuple[str, int], bytes | None] = {}
        self._waiting: dict[tuple[str, int], int] = {}
        """Readers waiting for each piece: two tracks' fetches may share a piece."""
        self._arrived = threading.Condition(self._lock)
        self.bytes_received = 0
        self._stop = False
        self._thread = threading.Thread(target=self._alerts, name="ondemand-peers", daemon=True)
        self._thread.start()

    def use(self, torrent: SwarmTorrent, pieces: range) -> None:
        """A fetch of ``pieces`` of ``torrent`` starts: the torrent is added to the session
        if it is not there, and the pieces wanted at a low priority (a torrent that wants
        nothing is "finished" and does not connect to seeds)."""
        with self._lock:
            self._users[torrent.name] = self._users.get(torrent.name, 0) + 1
            handle = self._handles.get(torrent.name)
            if handle is None:
                self._add(torrent, pieces)
                return
        handle.prioritize_pieces([(i, 1) for i in pieces])

    def _add(self, torrent: SwarmTorrent, pieces: range) -> lt.torrent_handle:
        """Add ``torrent`` (the lock held), ``pieces`` at priority 1 and every other at 0,
        no web seed.

        The wanted pieces are in the add parameters, not set after the add: a torrent
        that starts wanting nothing is "finished" at once (it has no file to check), so
        its first announce says it is done and it tells the peers it connects to that it
        only uploads; a seeder closes such a connection as useless to both, and the
        torrent waits for a reconnection or the seeder's own announce (seconds).
        """
        # Without its web seeds from the start (they are outside the info dictionary:
        # the infohash stays): removed after the add, libtorrent, which starts the
        # torrent at once, sometimes asked one of them first.
        info = lt.torrent_info(without_web_seeds(torrent.metainfo))
        # A removal is asynchronous: the same torrent added again while its removal runs
        # would get the handle being removed.
        until = time.monotonic() + REMOVAL_WAIT
        while self.session.find_torrent(info.info_hashes().v1).is_valid():
            if time.monotonic() >= until:
                break
            time.sleep(0.02)
        params = lt.add_torrent_params()
        params.ti = info
        # Each add writes into a directory of its own: the files of a removal still
        # being deleted are never the ones the torrent added again writes to.
        self._adds += 1
        params.save_path = str(self.workdir / f"{torrent.name}.{self._adds}")
        priorities = [0] * torrent.layout.num_pieces
        for i in pieces:
            priorities[i] = 1
        params.piece_priorities = priorities
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self.session.add_torrent(params)
        self._handles[torrent.name] = handle
        return handle

    def release(self, torrent: SwarmTorrent) -> None:
        """A fetch of ``torrent`` ended: the last one removes it and what it wrote."""
        with self._lock:
            self._users[torrent.name] -= 1
            if self._users[torrent.name] > 0:
                return
            del self._users[torrent.name]
            handle = self._handles.pop(torrent.name, None)
        if handle is not None:
            self.session.remove_torrent(handle, lt.session.delete_files)

    def handle(self, torrent: SwarmTorrent) -> lt.torrent_handle | None:
        """``torrent`` in the session, or None when no fetch uses it."""
        with self._lock:
            return self._handles.get(torrent.name)

    def piece(
        self, torrent: SwarmTorrent, index: int, wait: float, patience: float
    ) -> bytes | None:
        """Piece ``index`` from the peers (checked by libtorrent), or None: no peer
        connected within ``patience`` seconds, or the piece did not come within ``wait``."""
        handle = self.handle(torrent)
        if handle is None:
            return None
        key = (str(handle.info_hashes().v1), index)
        with self._lock:
            if key not in self._waiting:
                self._got.pop(key, None)
            self._waiting[key] = self._waiting.get(key, 0) + 1
        if handle.have_piece(index):
            handle.read_piece(index)
        else:
            handle.piece_priority(index, 7)
            handle.set_piece_deadline(index, 0, lt.deadline_flags_t.alert_when_available)
        start = time.monotonic()
        deadline = start + wait
        announced = start
        while True:
            with self._arrived:
                if key in self._got or time.monotonic() >= deadline:
                    break
            if not handle.status().num_peers and not handle.have_piece(index):
                # No peer now (none yet, or the ones there were left): the web seeds
                # after ``patience``; until then a tracker that knew no peer is asked
                # again, not at its interval (often 30 minutes), while the piece is
                # awaited.
                now = time.monotonic()
                if now - start >= patience:
                    break
                if now - announced >= REANNOUNCE:
                    handle.force_reannounce(0, -1, lt.torrent_handle.ignore_min_interval)
                    announced = now
            with self._arrived:
                if key not in self._got:
                    self._arrived.wait(min(_POLL, max(0.0, deadline - time.monotonic())))
        with self._arrived:
            data = self._got.get(key)
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                self._got.pop(key, None)
        if data is None:
            handle.reset_piece_deadline(index)
            handle.piece_priority(index, 1)
        return data

    def _alerts(self) -> None:
        while not self._stop:
            self.session.wait_for_alert(_TICK_MS)
            for alert in self.session.pop_alerts():
                if isinstance(alert, lt.read_piece_alert):
                    key = (str(alert.handle.info_hashes().v1), int(alert.piece))
                    data = None if alert.error.value() else bytes(alert.buffer)
                    with self._arrived:
                        if key not in self._waiting:
                            continue
                        self._got[key] = data
                        if data is not None:
                            self.bytes_received += len(data)
                        self._arrived.notify_all()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
