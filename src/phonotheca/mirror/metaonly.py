"""A metadata-only mirror: the newest metadata release alone, so the directory can be served.

``phonotheca mirror run DIR --metadata-only`` reads and checks the listing as every run
does (:mod:`phonotheca.mirror.trust`), then chooses only the newest metadata torrent: no
budget, no audio collection downloaded, seeded or deleted. Held metadata releases it
supersedes go by the deletion rules of docs/FORMAT.md §16, as in a full run. The run
stops once the torrent is complete (every piece hash-checked) and its catalog and
locator are in place, unless asked to keep seeding it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from phonotheca.mirror.choose import Choice, choose, newest_metadata
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.torrents.listing import Listing


def is_metadata(name: str, listing: Listing) -> bool:
    """Whether the held torrent ``name`` is a metadata release (by the listing, else by
    its name, ``<archive>_metadata_<seq>``, for one the listing left out)."""
    entry = listing.by_name().get(name)
    return entry.kind == "metadata" if entry is not None else "_metadata_" in name


def choose_metadata(listing: Listing, held: Iterable[str]) -> Choice:
    """The newest metadata torrent, chosen as :func:`choose` chooses it; held metadata
    releases it supersedes are passed over (``Choice.dropped``), audio ones ignored."""
    entries = [e for e in listing.torrents if e.kind == "metadata"]
    newest = newest_metadata(entries)
    if newest is None:
        raise MirrorError("the listing names no current metadata torrent: nothing to mirror")
    held_metadata = [name for name in held if is_metadata(name, listing)]
    return choose(entries, newest.size, held=held_metadata)


@dataclass(frozen=True)
class MetadataResult:
    """What a metadata-only run left in the directory."""

    directory: Path
    metadata_torrent: str
    tracks: int
    """Tracks the release describes (from the listing)."""
    catalog: Path | None
    """``DIR/catalog.sqlite3``, or None when the run stopped before it was in place."""
    locator: Path | None
    seeded: bool
    """Whether the run seeded until interrupted (``--seed``)."""
    listing_verified: bool

    @property
    def complete(self) -> bool:
        return self.catalog is not None

    def summary(self) -> str:
        if self.catalog is None:
            return (
                f"{self.metadata_torrent}: stopped before it was complete; state saved,"
                " run again to resume"
            )
        locator = f", locator {self.locator}" if self.locator is not None else ""
        return (
            f"{self.metadata_torrent}: verified, catalog of {self.tracks:,} tracks in"
            f" {self.catalog}{locator}; no audio downloaded"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "directory": str(self.directory),
            "metadata_torrent": self.metadata_torrent,
            "tracks": self.tracks,
            "complete": self.complete,
            "catalog": str(self.catalog) if self.catalog is not None else None,
            "locator": str(self.locator) if self.locator is not None else None,
            "seeded": self.seeded,
            "listing_verified": self.listing_verified,
        }


def metadata_result(
    mirror: MirrorDir, listing: Listing, name: str, *, ready: bool, seeded: bool, verified: bool
) -> MetadataResult:
    """The result of a metadata-only run that chose ``name`` (``ready``: catalog current)."""
    entry = listing.by_name()[name]
    return MetadataResult(
        directory=mirror.root,
        metadata_torrent=name,
        tracks=entry.tracks,
        catalog=mirror.catalog if ready else None,
        locator=mirror.locator if ready and mirror.locator.exists() else None,
        seeded=seeded,
        listing_verified=verified,
    )
