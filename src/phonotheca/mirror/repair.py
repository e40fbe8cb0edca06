"""``verify --repair``: download again only the pieces ``verify`` found bad.

The torrent is added to a libtorrent session with the pieces found good marked as held
(no re-hash of good data), so libtorrent asks peers and web seeds for the others only and
checks each against its hash before writing it. Then resume data is saved for the next
``mirror`` run, and the caller verifies again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import libtorrent as lt

from phonotheca.mirror.session import SessionOptions, make_session
from phonotheca.mirror.state import MirrorDir, atomic_write
from phonotheca.torrents.listing import ListingError, read_listing


def listed_web_seeds(mirror: MirrorDir) -> dict[str, list[str]]:
    """Web seeds per torrent from the mirror's copy of ``torrents.json``."""
    try:
        listing = read_listing(mirror.listing)
    except ListingError:
        return {}
    return {e.name: list(e.web_seeds) for e in listing.torrents}


def repair_pieces(
    mirror: MirrorDir,
    good: Mapping[str, Sequence[bool]],
    options: SessionOptions,
    *,
    timeout: float = 600.0,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, bool]:
    """Fetch the bad pieces of each torrent in ``good``; whether each got all its pieces."""
    session = make_session(options)
    web_seeds = listed_web_seeds(mirror)
    handles: dict[str, lt.torrent_handle] = {}
    for name, have in good.items():
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
        params.have_pieces = list(have)
        params.verified_pieces = list(have)
        params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.seed_mode)
        params.flags |= lt.torrent_flags.auto_managed
        if web_seeds.get(name):
            params.url_seeds = sorted(set(params.url_seeds) | set(web_seeds[name]))
        handles[name] = session.add_torrent(params)
        if on_event is not None:
            on_event(f"{name}: fetching {len(have) - sum(have)} bad piece(s) again")
    deadline = time.monotonic() + timeout
    done: dict[str, bool] = {}
    while time.monotonic() < deadline and len(done) < len(handles):
        for name, handle in handles.items():
            if name not in done and handle.status().is_seeding:
                done[name] = True
        session.wait_for_alert(200)
        for alert in session.pop_alerts():
            if on_event is not None and isinstance(
                alert, lt.hash_failed_alert | lt.file_error_alert | lt.tracker_error_alert
            ):
                on_event(f"{alert.message()}")
    pending = set(handles)
    for handle in handles.values():
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
                    atomic_write(mirror.resume_file(owner), lt.write_resume_data_buf(alert.params))
    for name in handles:
        done.setdefault(name, False)
    return done
