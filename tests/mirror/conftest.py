"""Fixtures: a published archive, seeded by a libtorrent session, announced to opentracker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phonotheca.mirror.status import MirrorStatus
from tests.mirror.swarm import (
    MIRROR_TOML,
    Published,
    Seeder,
    Tracker,
    publish_archive,
)
from tests.peers import free_port


@dataclass
class Swarm:
    published: Published
    tracker: Tracker
    seeder: Seeder


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    port = free_port()
    tracker = Tracker(tmp_path / "tracker", port)
    published = publish_archive(
        tmp_path / "publisher",
        collections=(("pop-050-100_0001", 6, 30_000), ("pop-030-049_0001", 5, 20_000)),
        trackers=[tracker.url],
    )
    seeder = Seeder()
    try:
        tracker.start([e.infohash_v1 for e in published.entries.values()])
        seeder.seed(published)
        yield Swarm(published, tracker, seeder)
    finally:
        seeder.close()
        tracker.stop()


def mirror_dir(tmp_path: Path) -> Path:
    """An empty mirror directory whose settings keep the session on 127.0.0.1."""
    d = tmp_path / "mirror"
    d.mkdir()
    (d / "phonotheca.toml").write_text(MIRROR_TOML.format(port=free_port()))
    return d


def mirror_until(
    directory: Path,
    listing: Path,
    done: Callable[[MirrorStatus], bool],
    *,
    budget: int = 10**7,
    timeout: float = 60,
    save_interval: float = 10.0,
    on_event: Callable[[str], None] | None = None,
    statuses: list[MirrorStatus] | None = None,
    publisher_key: str | None = None,
    allow_unsigned: bool = False,
) -> MirrorStatus:
    """Run the mirror library in a thread (as ``mirror --yes`` does) until ``done(status)``,
    then stop it gracefully; returns the status that satisfied ``done``."""
    from phonotheca.mirror.run import MirrorRequest, prepare_mirror, start_mirror

    request = MirrorRequest(
        directory,
        source=str(listing),
        budget=str(budget),
        save_interval=save_interval,
        publisher_key=publisher_key,
        allow_unsigned=allow_unsigned,
    )
    plan = prepare_mirror(request)
    stop = threading.Event()
    seen: list[MirrorStatus] = []

    def on_status(status: MirrorStatus) -> None:
        if statuses is not None:
            statuses.append(status)
        if not seen and status.state == "running" and done(status):
            seen.append(status)
            stop.set()

    thread = threading.Thread(
        target=start_mirror,
        args=(plan, stop),
        kwargs={"confirmed": True, "on_status": on_status, "on_event": on_event},
    )
    thread.start()
    thread.join(timeout)
    stop.set()
    thread.join(10)
    assert seen, f"the mirror did not get there in {timeout} s: {statuses}"
    return seen[0]


def all_seeding(status: MirrorStatus) -> bool:
    return bool(status.torrents) and all(t.state == "seeding" for t in status.torrents)


def mirror_once(directory: Path, listing: Path, budget: int = 10**7, timeout: float = 60) -> None:
    """Run the mirror library until everything it chose is seeding, then stop."""
    mirror_until(directory, listing, all_seeding, budget=budget, timeout=timeout)
