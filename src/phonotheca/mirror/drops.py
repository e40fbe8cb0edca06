"""Which held torrents a mirror run deletes: the last resort, capped and logged.

:func:`choose` says which held torrents are no longer chosen; this module decides which
of them are actually deleted (docs/FORMAT.md §16, "Deleting"):

- *obsolete*: only when the listing is verified (signed by the pinned key, not rolled back,
  not expired) and the entry's ``replaced_by`` names a listed torrent that is not
  obsolete; an older metadata release superseded by a newer one counts the same way;
- *over the budget*: only when the operator lowered the budget (since the last run, or a
  run that could not delete all it had to because of ``max_delete``), with a verified
  listing;
- *left out of the listing*: never, for that reason alone.

Everything else is kept, and seeded. At most ``max_delete`` bytes go per run (the rest is
kept, and named) unless the operator says ``--yes-delete-more``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phonotheca.mirror.choose import Choice, newest_metadata
from phonotheca.mirror.state import MirrorDir
from phonotheca.mirror.trust import append_event
from phonotheca.plan.sizes import format_size
from phonotheca.torrents.listing import Listing

UNLISTED = "no longer in torrents.json"


@dataclass(frozen=True)
class Drop:
    """A held torrent, its bytes on disk, and why it is (or would be) deleted or kept."""

    name: str
    size: int
    reason: str


@dataclass(frozen=True)
class DropPlan:
    delete: list[Drop] = field(default_factory=list)
    """Deleted by this run (after confirmation)."""
    keep: list[Drop] = field(default_factory=list)
    """Not chosen any more, but kept and seeded: ``reason`` says why they stay."""
    over_cap: list[Drop] = field(default_factory=list)
    """Would be deleted, but past ``max_delete`` for this run: kept and seeded."""
    cap: int = 0

    @property
    def kept(self) -> list[Drop]:
        return self.keep + self.over_cap


def allocated(path: Path) -> int:
    """Bytes a payload occupies on disk (sparse files count what is written)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def held_bytes(mirror: MirrorDir) -> int:
    return sum(allocated(mirror.payload(name)) for name in mirror.held())


def _replacement(listing: Listing, name: str) -> str | None:
    """What replaces the obsolete ``name``, when the listing names a current torrent."""
    entries = listing.by_name()
    entry = entries.get(name)
    if entry is None:
        return None
    for other in entry.replaced_by:
        found = entries.get(other)
        if found is not None and not found.obsolete and other != name:
            return other
    return None


def plan_drops(
    mirror: MirrorDir,
    choice: Choice,
    listing: Listing,
    *,
    verified: bool,
    budget_lowered: bool,
    cap: int,
    delete_more: bool = False,
) -> DropPlan:
    """Sort the held torrents :func:`choose` passed over into deleted and kept ones."""
    plan = DropPlan(cap=cap)
    entries = listing.by_name()
    newest = newest_metadata(listing.torrents)
    deleted = 0
    for passed in choice.dropped:
        size = allocated(mirror.payload(passed.name))
        entry = entries.get(passed.name)
        reason: str | None = None
        kept: str
        if passed.reason == UNLISTED or entry is None:
            kept = "left out of torrents.json: kept (that alone is no reason to delete)"
        elif not verified:
            kept = f"{passed.reason}, but the listing is not verified: kept"
        elif entry.obsolete:
            newer = _replacement(listing, entry.name)
            if newer is None:
                kept = "obsolete, but the listing names no current torrent replacing it: kept"
            else:
                reason = f"obsolete, replaced by {newer}"
        elif entry.kind == "metadata" and newest is not None and newest.name != entry.name:
            reason = f"superseded by the newer metadata torrent {newest.name}"
        elif "budget" in passed.reason:
            if budget_lowered:
                reason = passed.reason
            else:
                kept = f"{passed.reason}: kept (the budget was not lowered)"
        else:
            kept = f"{passed.reason}: kept"
        if reason is None:
            plan.keep.append(Drop(passed.name, size, kept))
        elif delete_more or deleted + size <= cap:
            plan.delete.append(Drop(passed.name, size, reason))
            deleted += size
        else:
            plan.over_cap.append(
                Drop(
                    passed.name,
                    size,
                    f"{reason}; but deleting it would pass max_delete ({format_size(cap)} this"
                    " run): kept; run with --yes-delete-more to delete it",
                )
            )
    return plan


def delete_held(
    mirror: MirrorDir, drops: list[Drop], on_event: Callable[[str], None] | None = None
) -> None:
    """Delete held torrents (payload, ``.torrent``, resume data, bitfield), each logged
    with its reason in ``DIR/.mirror/events.log`` before it goes."""
    for drop in drops:
        message = f"dropped {drop.name} ({format_size(drop.size)}): {drop.reason}"
        append_event(mirror, message)
        # The .torrent goes last: killed half-way, the torrent is still held (without resume
        # data or verified pieces, so nothing unchecked is trusted) and the next run deletes
        # it again, instead of leaving a payload nothing knows about.
        mirror.resume_file(drop.name).unlink(missing_ok=True)
        mirror.verified_file(drop.name).unlink(missing_ok=True)
        shutil.rmtree(mirror.payload(drop.name), ignore_errors=True)
        mirror.torrent_file(drop.name).unlink(missing_ok=True)
        if on_event is not None:
            on_event(message)
