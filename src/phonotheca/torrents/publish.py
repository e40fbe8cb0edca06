"""``phonotheca publish``: the metadata release, then ``torrents.json`` from the catalog.

Each published collection (``collections.status = 'published'``) becomes one entry, its
figures taken from the catalog and checked against its ``.torrent`` in ``torrents/``.
Publishing again keeps what the previous ``torrents.json`` knew that the catalog does not
(health from scrapes, the date a torrent was first listed), so a re-run with nothing new
writes the same bytes except ``generated_at``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phonotheca.archive import Archive
from phonotheca.durable import write_atomically
from phonotheca.torrents import bencode
from phonotheca.torrents.keys import sign_file
from phonotheca.torrents.listing import (
    KINDS,
    LISTING_FILE,
    Band,
    Health,
    Listing,
    ListingError,
    TorrentEntry,
    Totals,
    read_listing,
)
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.locator_catalog import publish_locator
from phonotheca.torrents.metadata import LEVEL, MetadataRelease, release_metadata
from phonotheca.torrents.minisign import SecretKey
from phonotheca.torrents.release import write_release


class PublishError(Exception):
    """A published collection whose ``.torrent`` is missing or does not match the catalog."""


@dataclass(frozen=True)
class TorrentFacts:
    """What a ``.torrent`` says about itself."""

    infohash_v1: str
    infohash_v2: str | None
    size: int
    files: int
    trackers: list[list[str]]
    web_seeds: list[str]


@dataclass(frozen=True)
class PublishResult:
    listing: Listing
    listing_path: Path
    metadata: MetadataRelease
    whitelist: Path | None


def read_torrent_facts(path: Path) -> TorrentFacts:
    """Infohashes, size, file count, trackers and web seeds of a ``.torrent`` file."""
    try:
        meta = bencode.decode(path.read_bytes())
    except OSError as exc:
        raise PublishError(f"{path}: cannot read: {exc.strerror}") from None
    except bencode.BencodeError as exc:
        raise PublishError(f"{path}: not a valid .torrent: {exc}") from None
    info = meta.get(b"info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        raise PublishError(f"{path}: not a valid .torrent: no info dictionary")
    # The decoder accepts only canonical bencoding, so this re-encodes the file's own bytes.
    raw = bencode.encode(info)
    size = files = 0
    for entry in _list(info.get(b"files")):
        if not isinstance(entry, dict) or b"p" in _bytes(entry.get(b"attr")):
            continue
        length = entry.get(b"length")
        size += length if isinstance(length, int) else 0
        files += 1
    single = info.get(b"length")
    if b"files" not in info and isinstance(single, int):
        size, files = single, 1
    assert isinstance(meta, dict)
    tiers = [[_text(u) for u in _list(tier)] for tier in _list(meta.get(b"announce-list"))]
    tiers = [t for t in tiers if t]
    if not tiers and isinstance(meta.get(b"announce"), bytes):
        tiers = [[_text(meta[b"announce"])]]
    seeds = meta.get(b"url-list")
    web_seeds = [_text(seeds)] if isinstance(seeds, bytes) else [_text(u) for u in _list(seeds)]
    return TorrentFacts(
        infohash_v1=hashlib.sha1(raw).hexdigest(),
        infohash_v2=hashlib.sha256(raw).hexdigest() if info.get(b"meta version") == 2 else None,
        size=size,
        files=files,
        trackers=tiers,
        web_seeds=web_seeds,
    )


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""


def _text(value: object) -> str:
    return _bytes(value).decode("utf-8", "replace")


def magnet_link(
    infohash_v1: str,
    infohash_v2: str | None,
    name: str,
    trackers: Iterable[str] = (),
    web_seeds: Iterable[str] = (),
) -> str:
    """BEP 9 magnet link with the v2 topic (BEP 52), trackers (``tr``) and web seeds (``ws``)."""
    parts = [f"xt=urn:btih:{infohash_v1}"]
    if infohash_v2:
        parts.append(f"xt=urn:btmh:1220{infohash_v2}")
    parts.append(f"dn={urllib.parse.quote(name, safe='')}")
    parts += [f"tr={urllib.parse.quote(url, safe='')}" for url in trackers]
    parts += [f"ws={urllib.parse.quote(url, safe='')}" for url in web_seeds]
    return "magnet:?" + "&".join(parts)


def merge_tiers(*sources: Sequence[Sequence[str]]) -> list[list[str]]:
    """Tracker tiers in order, each URL once (the first tier naming it keeps it)."""
    seen: set[str] = set()
    tiers: list[list[str]] = []
    for source in sources:
        for tier in source:
            urls = [u for u in tier if u not in seen]
            seen.update(urls)
            if urls:
                tiers.append(urls)
    return tiers


def listens_total(conn: sqlite3.Connection) -> int:
    """All listens of the catalog, as the latest plan counted them (0 without a plan)."""
    row = conn.execute(
        "SELECT report FROM plans WHERE report IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return 0
    try:
        total = json.loads(row[0]).get("listens_total", 0)
    except (ValueError, AttributeError):
        return 0
    return max(0, round(total)) if isinstance(total, int | float) else 0


def _previous(path: Path) -> dict[str, TorrentEntry]:
    if not path.exists():
        return {}
    try:
        return read_listing(path).by_name()
    except ListingError:
        # A damaged file only loses the old health figures and dates: say nothing, rebuild.
        return {}


def build_listing(
    archive: Archive,
    conn: sqlite3.Connection,
    *,
    now: dt.datetime,
    base_url: str | None = None,
    kinds: Sequence[str] = KINDS,
    previous: dict[str, TorrentEntry] | None = None,
) -> Listing:
    """The listing of every published collection of ``kinds``, metadata first."""
    settings = archive.settings.torrents
    previous = previous or {}
    total = listens_total(conn)
    today = now.date().isoformat()
    rows = conn.execute(
        "SELECT name, kind, band_low, band_high, items, listens, infohash_v1, infohash_v2,"
        " obsolete FROM collections WHERE status = 'published'"
        " ORDER BY CASE kind WHEN 'metadata' THEN 0 WHEN 'audio' THEN 1 ELSE 2 END,"
        " CASE kind WHEN 'metadata' THEN -seq ELSE -coalesce(band_low, 0) END, seq, name"
    ).fetchall()
    entries: list[TorrentEntry] = []
    for name, kind, low, high, items, listens, v1, v2, obsolete in rows:
        if kind not in kinds:
            continue
        torrent_path = archive.torrents_dir / f"{name}.torrent"
        facts = read_torrent_facts(torrent_path)
        if v1 and facts.infohash_v1 != v1:
            raise PublishError(
                f"{torrent_path}: infohash {facts.infohash_v1} differs from the catalog's {v1}"
                f" for collection {name}: the file was changed or replaced; rebuild it"
            )
        if v2 and facts.infohash_v2 != v2:
            raise PublishError(
                f"{torrent_path}: v2 infohash {facts.infohash_v2} differs from the catalog's"
                f" {v2} for collection {name}"
            )
        trackers = merge_tiers(facts.trackers, settings.trackers)
        web_seeds = list(dict.fromkeys([*facts.web_seeds, *settings.web_seeds]))
        old = previous.get(name)
        covered = int(listens or 0) if kind == "audio" else 0
        entries.append(
            TorrentEntry(
                name=name,
                collection=name,
                kind=kind,
                infohash_v1=facts.infohash_v1,
                infohash_v2=facts.infohash_v2,
                magnet=magnet_link(
                    facts.infohash_v1,
                    facts.infohash_v2,
                    name,
                    [u for tier in trackers for u in tier],
                    web_seeds,
                ),
                torrent_url=f"torrents/{urllib.parse.quote(name)}.torrent",
                size=facts.size,
                files=facts.files,
                tracks=int(items or 0),
                band=Band(low=low, high=high) if low is not None and high is not None else None,
                listens=covered,
                share_of_listens=min(1.0, covered / total) if total else 0.0,
                added=old.added if old is not None else today,
                obsolete=bool(obsolete),
                web_seeds=web_seeds,
                trackers=trackers,
                health=old.health if old is not None else Health(),
            )
        )
    current = [e.name for e in entries if e.kind == "metadata" and not e.obsolete]
    for e in entries:
        if e.kind == "metadata" and e.obsolete and current:
            e.replaced_by = current[:1]  # the newest release (listed first) replaces it
    live = [e for e in entries if not e.obsolete]
    covered_total = sum(e.listens for e in live)
    return Listing(
        archive=archive.settings.name,
        generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        base_url=base_url,
        totals=Totals(
            tracks=sum(e.tracks for e in live if e.kind == "audio"),
            bytes=sum(e.size for e in live),
            listens_covered=covered_total,
            listens_total=total,
            share_of_listens=min(1.0, covered_total / total) if total else 0.0,
        ),
        torrents=entries,
    )


def whitelist_lines(listing: Listing) -> list[str]:
    """What opentracker's whitelist needs: every v1 infohash, and for hybrid torrents the
    first 40 hex digits of the v2 one (the truncated hash v2 clients announce)."""
    lines: list[str] = []
    for entry in listing.torrents:
        lines.append(entry.infohash_v1)
        if entry.infohash_v2:
            lines.append(entry.infohash_v2[:40])
    return list(dict.fromkeys(lines))


def write_whitelist(listing: Listing, path: Path) -> None:
    """Write the whitelist atomically (opentracker may reload it at any moment)."""
    write_atomically(path, "".join(f"{line}\n" for line in whitelist_lines(listing)).encode())


def publish(
    archive: Archive,
    conn: sqlite3.Connection,
    *,
    base_url: str | None = None,
    metadata_only: bool = False,
    whitelist: Path | None = None,
    now: dt.datetime | None = None,
    level: int = LEVEL,
    threads: int = 2,
    secret: SecretKey | None = None,
) -> PublishResult:
    """Release the metadata when it changed, then write ``tracks.locator`` (the release's)
    and ``torrents.json`` that lists it (and a whitelist).

    ``conn`` is a writable catalog connection. ``base_url`` defaults to the settings'.
    With ``secret`` (the archive's publisher key), the listing gets the next ``seq``, an
    ``expires`` time (``[publish] valid_days``) and ``torrents.json.minisig``.
    """
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    release = release_metadata(archive, conn, now=now, level=level, threads=threads)
    path = archive.root / LISTING_FILE
    listing = build_listing(
        archive,
        conn,
        now=now,
        base_url=base_url or archive.settings.torrents.base_url,
        kinds=("metadata",) if metadata_only else KINDS,
        previous=_previous(path),
    )
    listing.locator = publish_locator(
        archive.torrents_dir / release.name, archive.catalog_path, archive.root
    )
    if secret is not None:
        # Signed before the listing that names it: a mirror reading the locator by ranges
        # trusts it through the listing's sha256 and top index; a whole copy, by this.
        sign_file(archive.root / LOCATOR_FILE, secret, now=now)
    listing = write_release(
        listing,
        path,
        conn=conn,
        secret=secret,
        valid_days=archive.settings.publish.valid_days,
        now=now,
    )
    if whitelist is not None:
        write_whitelist(listing, whitelist)
    return PublishResult(listing, path, release, whitelist)
