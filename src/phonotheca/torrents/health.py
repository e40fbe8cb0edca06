"""Swarm health: scrape every listed torrent, record the figures, summarise them by seeders.

``torrents scrape`` puts the latest figures into ``torrents.json`` (each entry's
``health``) and appends them to a daily history, ``ARCHIVE/health/YYYY-MM-DD.jsonl``: one
line per torrent per scrape, ``{"scraped_at", "name", "infohash_v1", "seeders",
"leechers", "completed", "trackers": [urls that answered]}``. The history is the
operator's (never published); the catalog is not touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from phonotheca.torrents.listing import Health, Listing
from phonotheca.torrents.scrape import Stats, TrackerResult, scrape_all

HEALTH_DIR = "health"
BANDS = (("unknown", None, None), ("under 4", 0, 3), ("4 to 10", 4, 10), ("over 10", 11, None))
"""Seeder bands of the health report: a torrent with fewer than 4 seeders is at risk."""


@dataclass
class ScrapeReport:
    listing: Listing
    """The listing with fresh health figures."""
    trackers: list[TrackerResult]
    scraped: int
    """Torrents at least one tracker answered for."""
    unanswered: list[str] = field(default_factory=list)
    """Names of torrents no tracker answered for (their old figures are kept)."""


def infohashes(infohash_v1: str, infohash_v2: str | None) -> list[bytes]:
    """The 20-byte hashes a torrent is announced by: v1, and the truncated v2 when hybrid."""
    hashes = [bytes.fromhex(infohash_v1)]
    if infohash_v2:
        hashes.append(bytes.fromhex(infohash_v2)[:20])
    return hashes


def scrape_listing(
    listing: Listing, *, now: dt.datetime, timeout: float = 5.0, retries: int = 2
) -> ScrapeReport:
    """Scrape every torrent of ``listing`` from its trackers and return the updated listing."""
    torrents = [
        (infohashes(e.infohash_v1, e.infohash_v2), [u for tier in e.trackers for u in tier])
        for e in listing.torrents
    ]
    combined, trackers = scrape_all(torrents, timeout=timeout, retries=retries)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = []
    unanswered = []
    for entry, stats in zip(listing.torrents, combined, strict=True):
        if stats is None:
            unanswered.append(entry.name)
            entries.append(entry)
            continue
        health = Health(
            seeders=stats.seeders,
            leechers=stats.leechers,
            completed=stats.completed,
            scraped_at=stamp,
        )
        entries.append(msgspec.structs.replace(entry, health=health))
    updated = msgspec.structs.replace(listing, torrents=entries)
    return ScrapeReport(updated, trackers, len(entries) - len(unanswered), unanswered)


def append_history(archive_root: Path, report: ScrapeReport, now: dt.datetime) -> Path:
    """Append the scrape's figures to ``health/<date>.jsonl``; returns that file."""
    directory = archive_root / HEALTH_DIR
    directory.mkdir(exist_ok=True)
    path = directory / f"{now.date().isoformat()}.jsonl"
    stats_by_url = {t.url: t.stats for t in report.trackers if t.error is None}
    lines = []
    for entry in report.listing.torrents:
        if entry.name in report.unanswered:
            continue
        hashes = infohashes(entry.infohash_v1, entry.infohash_v2)
        answered = [
            url
            for tier in entry.trackers
            for url in tier
            if any(h in stats_by_url.get(url, {}) for h in hashes)
        ]
        lines.append(
            json.dumps(
                {
                    "scraped_at": entry.health.scraped_at,
                    "name": entry.name,
                    "infohash_v1": entry.infohash_v1,
                    "seeders": entry.health.seeders,
                    "leechers": entry.health.leechers,
                    "completed": entry.health.completed,
                    "trackers": answered,
                },
                separators=(",", ":"),
            )
        )
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    return path


@dataclass(frozen=True)
class HealthBand:
    band: str
    torrents: int
    bytes: int


def health_bands(listing: Listing) -> list[HealthBand]:
    """Torrents and bytes held by < 4, 4-10 and > 10 seeders, and not yet scraped.

    Obsolete torrents are left out: nobody needs to keep seeding them.
    """
    totals = {name: [0, 0] for name, _, _ in BANDS}
    for entry in listing.torrents:
        if entry.obsolete:
            continue
        seeders = entry.health.seeders
        for name, low, high in BANDS:
            if (seeders is None and low is None) or (
                seeders is not None
                and low is not None
                and seeders >= low
                and (high is None or seeders <= high)
            ):
                totals[name][0] += 1
                totals[name][1] += entry.size
                break
    return [HealthBand(name, *totals[name]) for name, _, _ in BANDS]


__all__ = [
    "BANDS",
    "HealthBand",
    "ScrapeReport",
    "Stats",
    "append_history",
    "health_bands",
    "infohashes",
    "scrape_listing",
]
