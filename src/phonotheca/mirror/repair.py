"""``verify --repair``: download again only the pieces ``verify`` found corrupted.

The torrent is added to a libtorrent session with the pieces found good marked as held
(no re-hash of good data) and every other piece at priority 0 except the corrupted ones,
so libtorrent asks peers and web seeds for those pieces only (a piece never downloaded is
left to the next ``mirror`` run) and checks each against its hash before writing it. Then
priorities are reset and resume data saved for the next ``mirror`` run, and the caller
verifies again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import libtorrent as lt

from phonotheca.durable import write_atomically
from phonotheca.mirror.session import SessionOptions, make_session
from phonotheca.mirror.state import MirrorDir
from phonotheca.torrents.listing import ListingError, read_listing

DEFAULT = 4
"""libtorrent's default piece priority."""


def listed_web_seeds(mirror: MirrorDir) -> dict[str, list[str]]:
    """Web seeds per torrent from the mirror's copy of ``torrents.json``."""
    try:
        listing = read_listing(mirror.listing)
    except ListingError:
        return {}
    return {e.name: list(e.web_seeds) for e in listing.torrents}


@dataclass(frozen=True)
class RepairTarget:
    good: Sequence[bool]
    """The pieces ``verify`` found good."""
    corrupted: Sequence[int]
    """The pieces to download again."""


def repair_pieces(
    mirror: MirrorDir,
    targets: Mapping[str, RepairTarget],
    options: SessionOptions,
    *,
    timeout: float = 600.0,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, bool]:
    """Fetch the corrupted pieces of each torrent; whether each got them all back."""
    session = make_session(options)
    web_seeds = listed_web_seeds(mirror)
    handles: dict[str, lt.torrent_handle] = {}
    for name, target in targets.items():
        have = list(target.good)
        params = None
        resume = mirror.resume_file(name)
        if resume.exists():
            try:
                params = lt.read_resume_data(resume.read_bytes())
            except RuntimeError:
                params = None
        if params is None:
            params = lt.add_torrent_params()
        params.ti = lt.torrent_info(mirror.torrent_file(name).read_bytes())
        params.save_path = str(mirror.torrents)
        params.have_pieces = have
        params.verified_pieces = have
        wanted = set(target.corrupted)
        params.piece_priorities = [DEFAULT if i in wanted else 0 for i in range(len(have))]
        params.file_priorities = []
        params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.seed_mode)
        params.flags |= lt.torrent_flags.auto_managed
        if web_seeds.get(name):
            params.url_seeds = sorted(set(params.url_seeds) | set(web_seeds[name]))
        handles[name] = session.add_torrent(params)
        if on_event is not None:
            missing = len(have) - sum(have) - len(wanted)
            left = f" ({missing} missing piece(s) left to the mirror)" if missing else ""
            on_event(f"{name}: fetching {len(wanted)} corrupted piece(s) again{left}")
    deadline = time.monotonic() + timeout
    done: dict[str, bool] = {}
    while time.monotonic() < deadline and len(done) < len(handles):
        for name, handle in handles.items():
            if name in done:
                continue
            pieces = handle.status(lt.torrent_handle.query_pieces).pieces
            if all(pieces[i] for i in targets[name].corrupted):
                done[name] = True
        session.wait_for_alert(200)
        for alert in session.pop_alerts():
            if on_event is not None and isinstance(
                alert, lt.hash_failed_alert | lt.file_error_alert | lt.tracker_error_alert
            ):
                on_event(f"{alert.message()}")
    pending = set(handles)
    for name, handle in handles.items():
        # Stop first (no more requests), then reset the priorities: the next mirror run
        # wants every piece, the resume data must not keep the repair's.
        handle.pause()
        handle.prioritize_pieces([DEFAULT] * len(targets[name].good))
        handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
    stop_at = time.monotonic() + 5
    while pending and time.monotonic() < stop_at:
        session.wait_for_alert(200)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.save_resume_data_alert | lt.save_resume_data_failed_alert):
                owner = next((n for n, h in handles.items() if h == alert.handle), None)
                if owner is None:
                    continue
                pending.discard(owner)
                if isinstance(alert, lt.save_resume_data_alert):
                    params = alert.params
                    params.piece_priorities = []
                    params.flags &= ~lt.torrent_flags.paused
                    write_atomically(mirror.resume_file(owner), lt.write_resume_data_buf(params))
    for name in handles:
        done.setdefault(name, False)
    return done
