"""Fixtures: a published archive, seeded by a libtorrent session, announced to opentracker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phonotheca.mirror.status import MirrorStatus
from tests.mirror.swarm import (
    MIRROR_TOML,
    Published,
    Seeder,
    Tracker,
    free_port,
    publish_archive,
)


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


def mirror_once(directory: Path, listing: Path, budget: int = 10**7, timeout: float = 60) -> None:
    """Run the mirror library in a thread until everything it chose is seeding, then stop."""
    from phonotheca.config import load_settings
    from phonotheca.mirror.run import plan_mirror, run_mirror, save_options
    from phonotheca.mirror.session import SessionOptions
    from phonotheca.mirror.state import MirrorDir

    mirror = MirrorDir(directory)
    plan = plan_mirror(mirror, str(listing), budget)
    settings = load_settings(directory)
    save_options(
        mirror, {"torrents": str(listing), "budget": str(budget), "listen": settings.mirror.listen}
    )
    stop = threading.Event()
    seen: list[bool] = []

    def on_status(status: MirrorStatus) -> None:
        if status.torrents and all(t.state == "seeding" for t in status.torrents):
            seen.append(True)
            stop.set()

    thread = threading.Thread(
        target=run_mirror,
        args=(plan, SessionOptions.from_settings(settings.mirror), stop),
        kwargs={"on_status": on_status},
    )
    thread.start()
    thread.join(timeout)
    stop.set()
    thread.join(10)
    assert seen, "the mirror did not complete in time"
