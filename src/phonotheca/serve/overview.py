"""The archive as a whole: statistics, the torrents list and the plan's coverage chart.

The catalog's counts are its largest ids (see :mod:`phonotheca.serve.showcase`), the
ledger's by status and tier are kept as it changes (``ledger_counts``, FORMAT.md §4): a
few rows, whatever the catalog's size. The published collections are still listed (one
row and one directory lookup each), so the figures are computed at most once per
:data:`STATS_SECONDS` per process and shared by every request.
The torrents list is reread when ``torrents.json`` changes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from phonotheca.plan.sizes import format_size
from phonotheca.serve.context import ServeContext
from phonotheca.serve.models import CollectionCount, Stats, TorrentHealth, TorrentInfo, TorrentList
from phonotheca.torrents.listing import LISTING_FILE, Listing, ListingError, read_listing

STATS_SECONDS = 300.0
HEALTH_BUCKETS = ("<4", "4-10", ">10", "unknown")


def health_bucket(seeders: int | None) -> str:
    """The seeders bucket the torrents page colours a torrent by."""
    if seeders is None:
        return "unknown"
    if seeders < 4:
        return "<4"
    if seeders <= 10:
        return "4-10"
    return ">10"


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float


@dataclass(frozen=True)
class CoverageChart:
    """The plan's coverage curve scaled to an SVG viewport (drawn by the template)."""

    width: int
    height: int
    left: int
    bottom: int
    points: str
    """``x,y x,y ...`` for a ``<polyline>``."""
    area: str
    """The same, closed along the x axis, for a ``<polygon>`` fill."""
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    budget_x: float | None
    budget_label: str | None
    listens_share: float
    title: str


def coverage_chart(
    report: dict[str, object], width: int = 640, height: int = 260
) -> CoverageChart | None:
    """Scale a plan report's ``curve`` (bytes against share of listens) to a chart."""
    curve = report.get("curve")
    if not isinstance(curve, dict):
        return None
    xs = curve.get("bytes")
    ys = curve.get("listens_share")
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) < 2 or len(xs) != len(ys):
        return None
    try:
        pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    except (TypeError, ValueError):
        return None
    left, right, top, bottom = 56, 36, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    max_x = max(x for x, _ in pairs) or 1.0

    def sx(x: float) -> float:
        return round(left + plot_w * x / max_x, 2)

    def sy(y: float) -> float:
        return round(top + plot_h * (1.0 - min(max(y, 0.0), 1.0)), 2)

    line = " ".join(f"{sx(x)},{sy(y)}" for x, y in pairs)
    base = top + plot_h
    area = f"{sx(pairs[0][0])},{base} {line} {sx(pairs[-1][0])},{base}"
    x_ticks = [(sx(max_x * i / 4), format_size(round(max_x * i / 4))) for i in range(5)]
    y_ticks = [(sy(i / 4), f"{25 * i} %") for i in range(5)]
    used = report.get("used_bytes")
    budget_x: float | None = None
    budget_label: str | None = None
    if isinstance(used, int | float) and 0 < used <= max_x:
        budget_x, budget_label = sx(float(used)), format_size(round(used))
    share = report.get("listens_share")
    share_f = float(share) if isinstance(share, int | float) else pairs[-1][1]
    return CoverageChart(
        width=width,
        height=height,
        left=left,
        bottom=base,
        points=line,
        area=area,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        budget_x=budget_x,
        budget_label=budget_label,
        listens_share=share_f,
        title=f"Share of listens kept against storage: {100 * share_f:.1f} % in the plan",
    )


class Overview:
    """Statistics and the torrents list of one server, cached."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._stats: tuple[float, Stats] | None = None
        self._listing: tuple[Path, int, Listing] | None = None

    # -- the plan -----------------------------------------------------------------------------

    def plan_report(self) -> dict[str, object] | None:
        row = (
            self.ctx.catalog()
            .execute("SELECT report FROM plans WHERE report IS NOT NULL ORDER BY id DESC LIMIT 1")
            .fetchone()
        )
        if row is None:
            return None
        try:
            report = json.loads(row[0])
        except ValueError:
            return None
        return report if isinstance(report, dict) else None

    def chart(self) -> CoverageChart | None:
        report = self.plan_report()
        return coverage_chart(report) if report else None

    # -- statistics --------------------------------------------------------------------------

    def stats(self) -> Stats:
        with self._lock:
            cached = self._stats
        if cached is not None and time.monotonic() - cached[0] < STATS_SECONDS:
            return cached[1]
        stats = self._compute_stats()
        with self._lock:
            self._stats = (time.monotonic(), stats)
        return stats

    def _compute_stats(self) -> Stats:
        conn = self.ctx.catalog()

        def count(table: str) -> int:
            # Ids are dense and rows never deleted: the largest id is the count, one step
            # down the rowid b-tree instead of a scan (see phonotheca.serve.showcase).
            return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])

        ledger: dict[str, int] = {}
        tiers: dict[str, int] = {}
        for status, tier, n in conn.execute("SELECT status, tier, n FROM ledger_counts"):
            if n > 0:
                ledger[status] = ledger.get(status, 0) + n
                if status == "packed" and tier:
                    tiers[tier] = tiers.get(tier, 0) + n
        collections = []
        names: list[str] = []
        for kind, n, items, size in conn.execute(
            "SELECT kind, count(*), sum(items), sum(coalesce(payload_bytes, 0)) FROM collections"
            " WHERE status = 'published' GROUP BY kind ORDER BY kind"
        ):
            collections.append(
                CollectionCount(kind=kind, collections=n, items=items or 0, bytes=size or 0)
            )
        names = [
            r[0] for r in conn.execute("SELECT name FROM collections WHERE status = 'published'")
        ]
        report = self.plan_report() or {}
        share = report.get("listens_share")
        budget = report.get("budget")
        return Stats(
            tracks=count("tracks"),
            albums=count("albums"),
            artists=count("artists"),
            ledger=ledger,
            tiers=tiers,
            collections=collections,
            playable_collections=sum(1 for n in names if self.collection_here(n)),
            listens_share=float(share) if isinstance(share, int | float) else None,
            plan_budget=int(budget) if isinstance(budget, int) else None,
        )

    def collection_here(self, name: str) -> bool:
        """Whether some root holds the collection's directory (name from the catalog)."""
        if "/" in name or name.startswith("."):
            return False
        return any((root / "torrents" / name / "data").is_dir() for root in self.ctx.roots)

    # -- torrents ----------------------------------------------------------------------------

    def listing(self) -> Listing | None:
        """``torrents.json`` of the first root that has one (reread when it changes)."""
        for root in self.ctx.roots:
            path = root / LISTING_FILE
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
            with self._lock:
                cached = self._listing
            if cached is not None and cached[0] == path and cached[1] == mtime:
                return cached[2]
            try:
                listing = read_listing(path)
            except ListingError:
                continue
            with self._lock:
                self._listing = (path, mtime, listing)
            return listing
        return None

    def torrents(self) -> TorrentList:
        listing = self.listing()
        if listing is None:
            return TorrentList(
                total_bytes=0, total_tracks=0, share_of_listens=0.0, health={}, torrents=[]
            )
        infos = []
        buckets = dict.fromkeys(HEALTH_BUCKETS, 0)
        for t in listing.torrents:
            bucket = health_bucket(t.health.seeders)
            buckets[bucket] += 1
            infos.append(
                TorrentInfo(
                    name=t.name,
                    collection=t.collection,
                    kind=t.kind,
                    size=t.size,
                    files=t.files,
                    tracks=t.tracks,
                    band_low=t.band.low if t.band else None,
                    band_high=t.band.high if t.band else None,
                    listens=t.listens,
                    share_of_listens=t.share_of_listens,
                    added=t.added,
                    obsolete=t.obsolete,
                    magnet=t.magnet,
                    torrent_url=t.torrent_url,
                    infohash_v1=t.infohash_v1,
                    health=TorrentHealth(
                        seeders=t.health.seeders,
                        leechers=t.health.leechers,
                        completed=t.health.completed,
                        scraped_at=t.health.scraped_at,
                        bucket=bucket,
                    ),
                    here=self.collection_here(t.collection),
                )
            )
        return TorrentList(
            archive=listing.archive,
            generated_at=listing.generated_at,
            total_bytes=listing.totals.bytes,
            total_tracks=listing.totals.tracks,
            share_of_listens=listing.totals.share_of_listens,
            health=buckets,
            torrents=infos,
        )
