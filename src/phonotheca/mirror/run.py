"""One mirror run: check the listing, choose, decide the drops, then seed until stopped.

``phonotheca mirror`` and the tests drive these functions; they print nothing and ask
nothing. :func:`prepare_mirror` reads and decides (a dry run stops there);
:func:`start_mirror` confirms the drops through the caller, records the accepted listing,
deletes, and seeds until ``stop`` is set. Held torrents a run does not delete are seeded,
whether or not they were chosen (see :mod:`phonotheca.mirror.drops`). A metadata-only
run (:mod:`phonotheca.mirror.metaonly`) goes the same way with the newest metadata
torrent alone, and may stop once its catalog is in place.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phonotheca.catalog.release_db import Progress
from phonotheca.config import load_settings
from phonotheca.mirror.catalog import catalog_is_current, unpack_catalog
from phonotheca.mirror.choose import Choice, choose
from phonotheca.mirror.drops import Drop, DropPlan, allocated, delete_held, held_bytes, plan_drops
from phonotheca.mirror.metaonly import MetadataResult, choose_metadata, is_metadata, metadata_result
from phonotheca.mirror.session import SAVE_INTERVAL, Held, MirrorSession, SessionOptions
from phonotheca.mirror.sources import torrent_data, torrent_infohash
from phonotheca.mirror.state import MirrorDir, MirrorError, MirrorLock, read_json, write_json
from phonotheca.mirror.status import MirrorStatus
from phonotheca.mirror.trust import CheckedListing, TrustPolicy, accept_listing, check_for_mirror
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.torrents.listing import Listing


class OptionError(MirrorError):
    """A missing or malformed option of the request (``option`` names it, if one)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class MirrorRequest:
    """What the operator asked for; ``None`` means "as the last run" (or the settings)."""

    directory: Path
    source: str | None = None
    budget: str | None = None
    listen: str | None = None
    max_up: str | None = None
    max_down: str | None = None
    publisher_key: str | None = None
    """``RW…`` or a key file; else ``[mirror] publisher_key``; else the pinned key."""
    allow_unsigned: bool = False
    yes_delete_more: bool = False
    """Lift ``[mirror] max_delete`` for this run."""
    seed: int | None = None
    """Seed of the random tie-break (reproducible choices)."""
    save_interval: float | None = None
    metadata_only: bool = False
    """The newest metadata torrent alone, no budget (:mod:`phonotheca.mirror.metaonly`)."""


@dataclass(frozen=True)
class MirrorPlan:
    mirror: MirrorDir
    checked: CheckedListing
    choice: Choice
    drops: DropPlan
    options: SessionOptions
    saved: dict[str, Any]
    """The options to remember for the next run."""
    metadata_only: bool = False

    @property
    def metadata_torrent(self) -> str | None:
        """The metadata torrent whose catalog the directory serves: the chosen one, else
        (a budget too small for it) the newest listed one the run keeps, else None."""
        picked = (p.entry.name for p in self.choice.picks if p.entry.kind == "metadata")
        kept = {d.name for d in self.drops.kept}
        held = [e for e in self.listing.torrents if e.kind == "metadata" and e.name in kept]
        fallback = max(held, key=lambda e: (e.added, e.name)).name if held else None
        return next(picked, fallback)

    @property
    def source(self) -> str:
        return self.checked.source

    @property
    def listing(self) -> Listing:
        return self.checked.listing

    @property
    def dropped(self) -> list[Drop]:
        """The held torrents this run deletes."""
        return self.drops.delete


def _size(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise OptionError(str(exc), option) from None


def _rate(text: str | None, option: str) -> int:
    """``10MB`` or ``10MB/s``: bytes per second; ``0`` or nothing is unlimited."""
    return _size(text.removesuffix("/s"), option) if text else 0


def prepare_mirror(request: MirrorRequest, *, now: dt.datetime | None = None) -> MirrorPlan:
    """Read the listing (checked, or the last good one), choose, and decide the drops.

    Writes nothing but a refusal in ``events.log``: a dry run ends here.
    """
    mirror = MirrorDir(request.directory)
    last = saved_options(mirror)
    source = request.source or last.get("torrents")
    budget_text = request.budget or last.get("budget")
    if request.metadata_only:
        if request.budget:
            raise OptionError("--metadata-only takes no --budget", "--budget")
        if not source:
            raise OptionError("--torrents is needed (the first time at least)")
    elif not source or not budget_text:
        raise OptionError("--torrents and --budget are needed (the first time at least)")
    budget = _size(budget_text, "--budget") if budget_text and not request.metadata_only else 0
    listen = request.listen or last.get("listen")
    max_up = request.max_up if request.max_up is not None else last.get("max_up")
    max_down = request.max_down if request.max_down is not None else last.get("max_down")
    settings = load_settings(request.directory)
    options = SessionOptions.from_settings(
        settings.mirror,
        listen=listen,
        max_up=_rate(max_up, "--max-up"),
        max_down=_rate(max_down, "--max-down"),
        save_interval=request.save_interval or SAVE_INTERVAL,
    )
    policy = (
        TrustPolicy.from_options(request.publisher_key, request.allow_unsigned)
        if request.publisher_key
        else TrustPolicy.from_options(
            settings.mirror.publisher_key, request.allow_unsigned, base=request.directory
        )
    )
    checked = check_for_mirror(mirror, source, policy, now)
    if request.metadata_only:
        cap = settings.mirror.max_delete.limit(held_bytes(mirror))
        return _metadata_plan(request, mirror, checked, options, cap, last, source)
    rng = random.Random(request.seed) if request.seed is not None else None
    choice = choose(checked.listing.torrents, budget, held=mirror.held(), rng=rng)
    try:
        previous = parse_size(str(last["budget"])) if last.get("budget") else None
    except ValueError:
        previous = None
    lowered = (previous is not None and budget < previous) or bool(last.get("drops_pending"))
    drops = plan_drops(
        mirror,
        choice,
        checked.listing,
        verified=checked.verified,
        budget_lowered=lowered,
        cap=settings.mirror.max_delete.limit(held_bytes(mirror)),
        delete_more=request.yes_delete_more,
    )
    saved = {
        "torrents": source,
        "budget": budget_text,
        "listen": listen,
        "max_up": max_up,
        "max_down": max_down,
        "drops_pending": lowered and bool(drops.over_cap),
    }
    return MirrorPlan(mirror, checked, choice, drops, options, saved)


def _metadata_plan(
    request: MirrorRequest,
    mirror: MirrorDir,
    checked: CheckedListing,
    options: SessionOptions,
    cap: int,
    last: dict[str, Any],
    source: str,
) -> MirrorPlan:
    """The plan of a metadata-only run: held metadata releases go by the usual rules, a
    budget is never lowered by it, audio torrents are left alone (and the last budget
    stays remembered for the next full run)."""
    choice = choose_metadata(checked.listing, mirror.held())
    drops = plan_drops(
        mirror,
        choice,
        checked.listing,
        verified=checked.verified,
        budget_lowered=False,
        cap=cap,
        delete_more=request.yes_delete_more,
    )
    saved = {
        **last,
        "torrents": source,
        "listen": request.listen or last.get("listen"),
        "max_up": request.max_up if request.max_up is not None else last.get("max_up"),
        "max_down": request.max_down if request.max_down is not None else last.get("max_down"),
    }
    return MirrorPlan(mirror, checked, choice, drops, options, saved, metadata_only=True)


def space_needed(mirror: MirrorDir, plan: MirrorPlan) -> int:
    """Bytes the chosen torrents still need on disk, beyond what they already occupy."""
    return sum(
        max(0, p.entry.size - allocated(mirror.payload(p.entry.name))) for p in plan.choice.picks
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


def saved_options(mirror: MirrorDir) -> dict[str, Any]:
    """The options of the last run (``.mirror/settings.json``), or an empty dict."""
    data = read_json(mirror.settings_file)
    return data if isinstance(data, dict) else {}


def save_options(mirror: MirrorDir, options: dict[str, Any]) -> None:
    write_json(mirror.settings_file, options)


def start_mirror(
    plan: MirrorPlan,
    stop: threading.Event,
    *,
    confirmed: bool = False,
    on_status: Callable[[MirrorStatus], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    until_catalog: bool = False,
) -> bool:
    """Carry a plan out: record the accepted listing and pin, delete ``plan.dropped`` (the
    caller asked the operator: ``confirmed``), check the disk, then seed until ``stop``
    (with ``until_catalog``, until the chosen metadata torrent's catalog is in place).
    Returns whether it is."""
    mirror = plan.mirror
    if plan.drops.delete and not confirmed:
        names = ", ".join(d.name for d in plan.drops.delete)
        raise MirrorError(
            f"{len(plan.drops.delete)} held torrent(s) to delete ({names}): not confirmed"
        )
    mirror.create()
    accept_listing(mirror, plan.checked)
    delete_held(mirror, plan.drops.delete, on_event)
    check_space(mirror, plan)
    save_options(mirror, plan.saved)
    return run_mirror(
        plan,
        plan.options,
        stop,
        on_status=on_status,
        on_event=on_event,
        until_catalog=until_catalog,
    )


def start_metadata_only(
    plan: MirrorPlan,
    stop: threading.Event,
    *,
    seed: bool = False,
    confirmed: bool = False,
    on_status: Callable[[MirrorStatus], None] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> MetadataResult:
    """Carry out a metadata-only plan: stop once the catalog is in place, or with ``seed``
    keep seeding the metadata torrent until ``stop``. Refuses a run that could not unpack
    the catalog (a damaged release) with the reason."""
    name = plan.metadata_torrent
    if not plan.metadata_only or name is None:
        raise MirrorError("not a metadata-only plan")
    ready = start_mirror(
        plan,
        stop,
        confirmed=confirmed,
        on_status=on_status,
        on_event=on_event,
        until_catalog=not seed,
    )
    return metadata_result(
        plan.mirror, plan.listing, name, ready=ready, seeded=seed, verified=plan.checked.verified
    )


def run_mirror(
    plan: MirrorPlan,
    options: SessionOptions,
    stop: threading.Event,
    *,
    on_status: Callable[[MirrorStatus], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    until_catalog: bool = False,
) -> bool:
    """Seed the plan's choice, and the held torrents it keeps, until ``stop`` is set (with
    ``until_catalog``: set once the catalog is in place, or cannot be). Holds the
    directory's lock. Returns whether the chosen metadata torrent's catalog is in place.

    Only the chosen (newest) metadata torrent is unpacked: a kept older one completing
    later must not bring its catalog back."""
    mirror = plan.mirror
    mirror.create()
    lock = MirrorLock(mirror)
    lock.acquire()
    wanted = plan.metadata_torrent
    failed: list[str] = []
    try:
        session = MirrorSession(mirror, options, budget=plan.choice.budget, on_event=on_event)

        def completed(held: Held) -> None:
            if held.name != wanted:
                return
            if not catalog_is_current(mirror, held.name):
                try:
                    unpack_catalog(mirror, held.name, _derive_events(session, held.name))
                    session.event(f"{held.name}: complete; catalog unpacked to {mirror.catalog}")
                except MirrorError as exc:
                    session.event(str(exc))
                    failed.append(str(exc))
            if until_catalog:
                stop.set()

        session.on_complete = completed
        for pick in plan.choice.picks:
            entry = pick.entry
            data = torrent_data(plan.source, plan.listing, entry, mirror)
            session.add(entry.name, entry.kind, data, entry.web_seeds)
        for kept in plan.drops.kept:
            if not plan.metadata_only or is_metadata(kept.name, plan.listing):
                _add_kept(session, plan, kept)
        session.run(stop, on_status)
    finally:
        lock.release()
    if failed and until_catalog:
        raise MirrorError(failed[-1])
    return wanted is not None and catalog_is_current(mirror, wanted)


def _add_kept(session: MirrorSession, plan: MirrorPlan, kept: Drop) -> None:
    """Seed a held torrent the run keeps without choosing it, from its own ``.torrent``."""
    entry = plan.listing.by_name().get(kept.name)
    path = plan.mirror.torrent_file(kept.name)
    try:
        data = path.read_bytes()
        got = torrent_infohash(data)
    except (OSError, ValueError) as exc:
        session.event(f"{kept.name}: kept, but its .torrent cannot be read ({exc}); not seeded")
        return
    if entry is not None and got != entry.infohash_v1:
        session.event(f"{kept.name}: kept, but its .torrent differs from the listing; not seeded")
        return
    kind = (
        entry.kind if entry is not None else ("metadata" if "_metadata_" in kept.name else "audio")
    )
    session.add(kept.name, kind, data, entry.web_seeds if entry is not None else ())


def _derive_events(session: MirrorSession, name: str) -> Progress:
    """Each step of deriving the catalog from the release as an event (status.json and
    the console): at 256 M tracks it takes hours, and a restart resumes it."""

    def progress(step: str, done: int | None, total: int | None) -> None:
        if done is None:
            session.event(f"{name}: deriving the catalog: {step}")

    return progress
