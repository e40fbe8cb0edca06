"""One mirror run: read the listing, choose, drop what no longer fits, then seed.

The command line (``phonotheca mirror``) and tests drive these functions; they print
nothing and ask nothing, so the caller decides how to confirm a drop.
"""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phonotheca.mirror.catalog import catalog_is_current, unpack_catalog
from phonotheca.mirror.choose import Choice, Pass, choose
from phonotheca.mirror.session import Held, MirrorSession, SessionOptions
from phonotheca.mirror.sources import load_listing, torrent_data
from phonotheca.mirror.state import (
    MirrorDir,
    MirrorError,
    MirrorLock,
    read_json,
    write_json,
)
from phonotheca.mirror.status import MirrorStatus
from phonotheca.plan.sizes import format_size
from phonotheca.torrents.listing import Listing


@dataclass(frozen=True)
class MirrorPlan:
    mirror: MirrorDir
    source: str
    listing: Listing
    choice: Choice

    @property
    def dropped(self) -> list[Pass]:
        return self.choice.dropped


def plan_mirror(
    mirror: MirrorDir, source: str, budget: int, *, rng: random.Random | None = None
) -> MirrorPlan:
    """Read the listing and choose what the mirror should hold within ``budget``."""
    listing = load_listing(source)
    choice = choose(listing.torrents, budget, held=mirror.held(), rng=rng)
    return MirrorPlan(mirror, source, listing, choice)


def _allocated(path: Path) -> int:
    """Bytes a payload occupies on disk (sparse files count what is written)."""
    if not path.exists():
        return 0
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_blocks * 512
    return total


def space_needed(mirror: MirrorDir, plan: MirrorPlan) -> int:
    """Bytes the chosen torrents still need on disk, beyond what they already occupy."""
    return sum(
        max(0, p.entry.size - _allocated(mirror.payload(p.entry.name))) for p in plan.choice.picks
    )


def check_space(mirror: MirrorDir, plan: MirrorPlan) -> None:
    """Refuse to start when the disk cannot hold the choice: better now than half-way."""
    needed = space_needed(mirror, plan)
    mirror.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(mirror.root).free
    if needed > free:
        raise MirrorError(
            f"{mirror.root}: {format_size(free)} free, but the chosen torrents need"
            f" {format_size(needed)} more; free some space or lower --budget"
            f" (to at most {format_size(plan.choice.bytes - needed + free)})"
        )


def drop(mirror: MirrorDir, names: Iterable[str]) -> None:
    """Delete held torrents: payload, ``.torrent``, resume data and bitfield."""
    for name in names:
        shutil.rmtree(mirror.payload(name), ignore_errors=True)
        for path in (
            mirror.torrent_file(name),
            mirror.resume_file(name),
            mirror.verified_file(name),
        ):
            path.unlink(missing_ok=True)


def saved_options(mirror: MirrorDir) -> dict[str, Any]:
    """The options of the last run (``.mirror/settings.json``), or an empty dict."""
    data = read_json(mirror.settings_file)
    return data if isinstance(data, dict) else {}


def save_options(mirror: MirrorDir, options: dict[str, Any]) -> None:
    write_json(mirror.settings_file, options)


def run_mirror(
    plan: MirrorPlan,
    options: SessionOptions,
    stop: threading.Event,
    *,
    on_status: Callable[[MirrorStatus], None] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> None:
    """Seed the plan's choice until ``stop`` is set. Holds the directory's lock."""
    mirror = plan.mirror
    mirror.create()
    lock = MirrorLock(mirror)
    lock.acquire()
    try:
        load_listing(plan.source, mirror)  # keep the copy the web server reads
        session = MirrorSession(mirror, options, budget=plan.choice.budget, on_event=on_event)

        def completed(held: Held) -> None:
            if held.kind == "metadata" and not catalog_is_current(mirror, held.name):
                try:
                    unpack_catalog(mirror, held.name)
                    session.event(f"{held.name}: complete; catalog unpacked to {mirror.catalog}")
                except MirrorError as exc:
                    session.event(str(exc))

        session.on_complete = completed
        for pick in plan.choice.picks:
            entry = pick.entry
            data = torrent_data(plan.source, plan.listing, entry, mirror)
            session.add(entry.name, entry.kind, data, entry.web_seeds)
        session.run(stop, on_status)
    finally:
        lock.release()
