"""``phonotheca build``: turn the plan's ledger into published collections and torrents.

The one writer of the catalog lives here; staging (check or transcode) and packing run
as tasks on an executor. The order of everything that reaches a file is fixed by the
inputs: bands from the most popular down, tracks by popularity then public id, a
collection cut when the next track would pass the target size. So 1 or N workers, a
local pool or a cluster, one run or a resumed one, all give the same bytes.

Progress lives in the catalog: a cut collection is recorded (``collections.status =
'assigned'``, its tracks' ``ledger.collection``) before it is packed, and becomes
``published`` (its tracks ``packed``) once its ``.torrent`` is on disk. A re-run first
finishes assigned collections, with the same tracks, then goes on.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from phonotheca.archive import Archive
from phonotheca.build.bag import PackItem
from phonotheca.build.covers import CoverItem, assigned_covers, pending_covers
from phonotheca.build.executor import Executor, TaskFuture, make_executor, ordered_map
from phonotheca.build.loudness import update_album_loudness
from phonotheca.build.packing import PARTIAL_DIR_SUFFIX, PackJob, PackResult, pack_job
from phonotheca.build.tarvolume import member_span
from phonotheca.build.work import (
    LoudnessFacts,
    Staged,
    assigned_items,
    pending_items,
    stage,
)
from phonotheca.catalog import schema
from phonotheca.plan.model import estimate_listens

DEFAULT_OPUS_KBPS = 75


class _Sized(Protocol):
    @property
    def size(self) -> int: ...


_T = TypeVar("_T", bound=_Sized)

STAGE_WINDOW_PER_WORKER = 8


class BuildError(Exception):
    """The build cannot start: no plan, a bad setting."""


@dataclass(frozen=True)
class BuildOptions:
    workers: int = 2
    scheduler: str | None = None
    torrent_format: str | None = None
    """``v1`` or ``hybrid``; None: the setting."""


@dataclass
class BuildSummary:
    collections: list[str] = field(default_factory=list)
    cover_collections: list[str] = field(default_factory=list)
    tracks: int = 0
    bytes: int = 0
    images: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """The first problems met (a source gone or changed), for the report."""

    def error(self, status: str, message: str | None) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1
        if message and len(self.problems) < 50:
            self.problems.append(message)


class Progress:
    """What the command shows while the build runs; the default shows nothing."""

    def start(self, tracks: int, planned_bytes: int) -> None:
        pass

    def staged(self, tracks: int, nbytes: int) -> None:
        pass

    def published(self, collection: str) -> None:
        pass


def build_archive(
    archive: Archive, options: BuildOptions, progress: Progress | None = None
) -> BuildSummary:
    """Pack every planned track of the latest plan; publish its collections."""
    progress = progress or Progress()
    settings = archive.settings
    torrent_format = options.torrent_format or settings.build.torrent_format
    if torrent_format not in ("v1", "hybrid"):
        raise BuildError(f"--torrent-format must be v1 or hybrid, not {torrent_format!r}")
    conn = archive.connect()
    try:
        plan = conn.execute("SELECT id, settings FROM plans ORDER BY id DESC LIMIT 1").fetchone()
        if plan is None:
            raise BuildError("there is no plan yet: run 'phonotheca plan --budget SIZE' first")
        kbps = json.loads(plan[1]).get("opus_kbps") or settings.build.opus_kbps or DEFAULT_OPUS_KBPS
        builder = _Builder(archive, conn, int(plan[0]), round(kbps), torrent_format, progress)
        executor = make_executor(options.workers, options.scheduler)
        try:
            builder.run(executor)
        finally:
            executor.close()
        return builder.summary
    finally:
        conn.close()


class _Builder:
    def __init__(
        self,
        archive: Archive,
        conn: sqlite3.Connection,
        plan_id: int,
        kbps: int,
        torrent_format: str,
        progress: Progress,
    ) -> None:
        self.archive = archive
        self.settings = archive.settings
        self.conn = conn
        self.plan_id = plan_id
        self.kbps = kbps
        self.hybrid = torrent_format == "hybrid"
        self.torrent_format = torrent_format
        self.progress = progress
        self.summary = BuildSummary()
        self.staging_dir = archive.work_dir / "build" / "opus"
        self.torrents_dir = archive.torrents_dir

    # -- the whole run -----------------------------------------------------------------

    def run(self, executor: Executor) -> None:
        self.torrents_dir.mkdir(parents=True, exist_ok=True)
        self._forget_stale_assignments()
        total = self.conn.execute(
            "SELECT count(*), coalesce(sum(planned_size), 0) FROM ledger"
            " WHERE status = 'planned' AND tier IN ('original', 'opus')"
        ).fetchone()
        self.progress.start(int(total[0]), int(total[1]))
        self.window = max(2, executor.workers * STAGE_WINDOW_PER_WORKER)
        # Packs in flight: each is mostly I/O and hashing threads; staging of the next
        # collection goes on beside them.
        self.packs = max(1, executor.workers // 2)
        self.packing: deque[tuple[TaskFuture[PackResult], str, int, int, list[Staged]]] = deque()
        stage_fn = functools.partial(stage, staging_dir=str(self.staging_dir))
        for name, low, high in self._assigned("audio"):
            assigned = assigned_items(self.conn, name, self.kbps)
            staged = [s for _, s in ordered_map(executor, stage_fn, assigned, self.window)]
            self._pack_audio(executor, name, low, high, self._usable(staged))
        # The band's tracks stream from a second, read-only connection: this one writes
        # while they are read, and the snapshot is what was pending when the band began.
        reader = schema.connect(self.archive.catalog_path, readonly=True)
        try:
            for low, high in self._bands():
                items = pending_items(reader, low, high, self.kbps)
                stream = (s for _, s in ordered_map(executor, stage_fn, items, self.window))
                for chunk in self._cut(self._usable_stream(stream), lambda s: s.name):
                    name = self._assign_audio(chunk, low, high)
                    self._pack_audio(executor, name, low, high, chunk)
        finally:
            reader.close()
        self._finish_packs(executor)  # covers need every audio collection published
        for name, _, _ in self._assigned("covers"):
            self._pack_covers(executor, name, assigned_covers(self.conn, name, self._blob))
        covers = pending_covers(self.conn, self._blob)
        for images in self._cut(iter(covers), lambda c: c.name):
            self._pack_covers(executor, self._assign_covers(images), images)
        self._clean_staging()

    def _bands(self) -> Iterator[tuple[int, int]]:
        high = 100
        for low in self.settings.build.bands:
            yield low, high
            high = low - 1

    # -- staging -----------------------------------------------------------------------

    def _usable_stream(self, staged: Iterator[Staged]) -> Iterator[Staged]:
        for s in staged:
            if s.error is not None:
                self._mark_error(s.item.track_id, s.error, s.message)
                continue
            self.progress.staged(1, s.size)
            yield s

    def _usable(self, staged: Sequence[Staged]) -> list[Staged]:
        return list(self._usable_stream(iter(staged)))

    def _mark_error(self, track_id: int, status: str, message: str | None) -> None:
        self.summary.error(status, message)
        with schema.transaction(self.conn):
            self.conn.execute(
                "UPDATE ledger SET status = ?, collection = NULL, position = NULL"
                " WHERE track_id = ?",
                (status, track_id),
            )

    def _cut(self, items: Iterator[_T], name_of: Callable[[_T], str]) -> Iterator[list[_T]]:
        """Consecutive runs of items whose tar members fill up to the collection size."""
        limit = self.settings.build.collection_size
        chunk: list[_T] = []
        used = 0
        for item in items:
            span = member_span(name_of(item), item.size)
            if chunk and used + span > limit:
                yield chunk
                chunk, used = [], 0
            chunk.append(item)
            used += span
        if chunk:
            yield chunk

    # -- audio collections ---------------------------------------------------------------

    def _assigned(self, kind: str) -> list[tuple[str, int, int]]:
        rows = self.conn.execute(
            "SELECT name, coalesce(band_low, 0), coalesce(band_high, 0) FROM collections"
            " WHERE status = 'assigned' AND kind = ? ORDER BY band_high DESC, seq",
            (kind,),
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def _next_name(self, kind: str, low: int = 0, high: int = 0) -> tuple[str, int]:
        if kind == "audio":
            prefix = f"{self.settings.name}_pop-{low:03d}-{high:03d}_"
            row = self.conn.execute(
                "SELECT max(seq) FROM collections WHERE kind = 'audio'"
                " AND band_low = ? AND band_high = ?",
                (low, high),
            ).fetchone()
        else:
            prefix = f"{self.settings.name}_covers_"
            row = self.conn.execute(
                "SELECT max(seq) FROM collections WHERE kind = 'covers'"
            ).fetchone()
        seq = int(row[0] or 0) + 1
        return f"{prefix}{seq:04d}", seq

    def _listens(self, track_ids: list[int]) -> int:
        """Listens the tracks cover: their own and their duplicates' (as the plan sums)."""
        ids = json.dumps(track_ids)
        rows = self.conn.execute(
            "SELECT t.listens, coalesce(t.popularity, 0) FROM tracks t"
            " WHERE t.id IN (SELECT value FROM json_each(?))"
            " OR t.id IN (SELECT track_id FROM ledger"
            "             WHERE duplicate_of IN (SELECT value FROM json_each(?)))",
            (ids, ids),
        ).fetchall()
        if not rows:
            return 0
        listens = np.array([-1 if r[0] is None else r[0] for r in rows], dtype=np.float64)
        estimated = estimate_listens(np.array([r[1] for r in rows], dtype=np.uint8))
        return int(np.where(listens >= 0, listens, estimated).sum())

    def _assign_audio(self, chunk: list[Staged], low: int, high: int) -> str:
        name, seq = self._next_name("audio", low, high)
        ids = [s.item.track_id for s in chunk]
        with schema.transaction(self.conn):
            self.conn.execute(
                "INSERT INTO collections(name, kind, band_low, band_high, seq, plan_id, status,"
                " items, listens, torrent_format) VALUES (?, 'audio', ?, ?, ?, ?, 'assigned',"
                " ?, ?, ?)",
                (
                    name,
                    low,
                    high,
                    seq,
                    self.plan_id,
                    len(chunk),
                    self._listens(ids),
                    self.torrent_format,
                ),
            )
            # position: the track's place in the collection, 0 to len(ids) - 1 (what
            # a server draws uniformly; a track set aside later leaves a gap).
            self.conn.execute(
                "UPDATE ledger SET collection = ?, position = j.key"
                " FROM json_each(?) AS j WHERE ledger.track_id = j.value",
                (name, json.dumps(ids)),
            )
        return name

    def _pack_audio(
        self, executor: Executor, name: str, low: int, high: int, chunk: list[Staged]
    ) -> None:
        """Submit the collection's pack; at most ``self.packs`` run at once."""
        if not chunk:
            self._drop_collection(name)
            return
        items = [
            PackItem(
                public_id=s.item.public_id,
                name=s.name,
                size=s.size,
                data=Path(s.path or ""),
                metadata={
                    "codec": s.codec,
                    "bitrate": s.bitrate,
                    "duration_ms": s.duration_ms,
                    "tier": s.item.tier,
                    "title": s.item.title,
                    "artists": list(s.item.artists),
                    "album": s.item.album,
                    "isrc": s.item.isrc,
                    "popularity": s.item.popularity,
                    "loudness_lufs": s.loudness.lufs if s.loudness else None,
                    "true_peak_dbtp": s.loudness.true_peak if s.loudness else None,
                    "loudness_range_lu": s.loudness.lra if s.loudness else None,
                },
                sha256=s.sha256,
            )
            for s in chunk
        ]
        description = f"{self.settings.name}: {len(items)} tracks of popularity {low} to {high}"
        future = executor.submit(pack_job, self._job(name, items, False, description))
        self.packing.append((future, name, low, high, chunk))
        while len(self.packing) > self.packs:
            self._collect_pack(executor)

    def _collect_pack(self, executor: Executor) -> None:
        """Wait for the oldest pack in flight and record what it published."""
        future, name, low, high, chunk = self.packing.popleft()
        result = future.result()
        if result.failed_id is None:
            self._publish_audio(result, chunk)
            return
        # A source changed under us: set its track aside and pack the rest again.
        bad = next(s for s in chunk if s.item.public_id == result.failed_id)
        self._mark_error(bad.item.track_id, "error_source_changed", result.message)
        rest = [s for s in chunk if s is not bad]
        with schema.transaction(self.conn):
            self.conn.execute(
                "UPDATE collections SET items = ?, listens = ? WHERE name = ?",
                (len(rest), self._listens([s.item.track_id for s in rest]), name),
            )
        self._pack_audio(executor, name, low, high, rest)

    def _finish_packs(self, executor: Executor) -> None:
        while self.packing:
            self._collect_pack(executor)

    def _job(self, name: str, items: list[PackItem], covers: bool, description: str) -> PackJob:
        build = self.settings.build
        return PackJob(
            collection=name,
            torrents_dir=str(self.torrents_dir),
            items=items,
            covers=covers,
            bagging_date=build.date,
            mtime=build.mtime,
            volume_size=build.volume_size,
            hybrid=self.hybrid,
            trackers=self.settings.torrents.trackers,
            web_seeds=self.settings.torrents.web_seeds,
            description=description,
        )

    def _publish_collection(self, result: PackResult) -> None:
        self.conn.execute(
            "UPDATE collections SET status = 'published', files = ?, payload_bytes = ?,"
            " piece_length = ?, infohash_v1 = ?, infohash_v2 = ?, torrent_format = ?,"
            " built_at = ? WHERE name = ?",
            (
                result.files,
                result.payload_bytes,
                result.piece_length,
                result.infohash_v1,
                result.infohash_v2,
                self.torrent_format,
                dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                result.collection,
            ),
        )
        self.summary.bytes += result.payload_bytes
        self.progress.published(result.collection)

    def _publish_audio(self, result: PackResult, chunk: list[Staged]) -> None:
        staged = {s.item.public_id: s for s in chunk}
        rows = []
        for e in result.entries:
            s = staged[e.public_id]
            facts = s.loudness or LoudnessFacts(None, None, None, b"")
            rows.append(
                (
                    result.collection,
                    e.volume,
                    e.offset,
                    e.length,
                    e.sha256,
                    e.length,
                    s.codec,
                    s.bitrate,
                    s.duration_ms,
                    facts.lufs,
                    facts.true_peak,
                    facts.lra,
                    facts.blocks if s.loudness else None,
                    s.item.track_id,
                )
            )
        with schema.transaction(self.conn):
            self.conn.executemany(
                "UPDATE ledger SET status = 'packed', collection = ?, volume = ?, offset = ?,"
                " length = ?, sha256 = ?, size = ?, codec = ?, bitrate = ?, duration_ms = ?,"
                " loudness_lufs = ?, true_peak_dbtp = ?, loudness_range_lu = ?,"
                " loudness_blocks = ? WHERE track_id = ?",
                rows,
            )
            update_album_loudness(self.conn, [s.item.track_id for s in chunk])
            self._publish_collection(result)
        self.summary.collections.append(result.collection)
        self.summary.tracks += len(result.entries)

    def _drop_collection(self, name: str) -> None:
        with schema.transaction(self.conn):
            self.conn.execute(
                "UPDATE ledger SET collection = NULL, position = NULL WHERE collection = ?",
                (name,),
            )
            self.conn.execute("DELETE FROM packed_images WHERE collection = ?", (name,))
            self.conn.execute("DELETE FROM collections WHERE name = ?", (name,))
        shutil.rmtree(self.torrents_dir / (name + PARTIAL_DIR_SUFFIX), ignore_errors=True)

    def _forget_stale_assignments(self) -> None:
        """Assigned collections whose tracks a newer plan took back are dropped."""
        for name, _, _ in self._assigned("audio"):
            left = self.conn.execute(
                "SELECT count(*) FROM ledger WHERE collection = ? AND status = 'planned'",
                (name,),
            ).fetchone()[0]
            if left == 0:
                self._drop_collection(name)

    # -- cover collections ------------------------------------------------------------

    def _blob(self, sha256: str) -> Path:
        return self.archive.blobs_dir / sha256[:2] / sha256[2:4] / sha256

    def _assign_covers(self, chunk: list[CoverItem]) -> str:
        name, seq = self._next_name("covers")
        with schema.transaction(self.conn):
            self.conn.execute(
                "INSERT INTO collections(name, kind, seq, plan_id, status, items,"
                " torrent_format) VALUES (?, 'covers', ?, ?, 'assigned', ?, ?)",
                (name, seq, self.plan_id, len(chunk), self.torrent_format),
            )
            self.conn.executemany(
                "INSERT INTO packed_images(sha256, collection) VALUES (?, ?)",
                ((c.sha256, name) for c in chunk),
            )
        return name

    def _pack_covers(self, executor: Executor, name: str, chunk: list[CoverItem]) -> None:
        if not chunk:
            self._drop_collection(name)
            return
        items = [
            PackItem(
                public_id=c.sha256,
                name=c.name,
                size=c.size,
                data=c.path,
                metadata={
                    "mime": c.mime,
                    "width": c.width,
                    "height": c.height,
                    "albums": list(c.albums),
                },
                sha256=c.sha256,
            )
            for c in chunk
        ]
        description = f"{self.settings.name}: {len(items)} cover images"
        result = executor.submit(pack_job, self._job(name, items, True, description)).result()
        if result.failed_id is not None:
            raise BuildError(f"cover image {result.failed_id} is damaged: {result.message}")
        with schema.transaction(self.conn):
            self.conn.executemany(
                "UPDATE packed_images SET volume = ?, offset = ?, length = ? WHERE sha256 = ?",
                ((e.volume, e.offset, e.length, e.public_id) for e in result.entries),
            )
            # Images whose blob vanished since they were assigned are not in the bag.
            self.conn.execute(
                "DELETE FROM packed_images WHERE collection = ? AND volume IS NULL", (name,)
            )
            self._publish_collection(result)
        self.summary.cover_collections.append(name)
        self.summary.images += len(result.entries)

    # -- the end -----------------------------------------------------------------------

    def _clean_staging(self) -> None:
        """Staged Opus files are only needed until their collection is published."""
        pending = self.conn.execute(
            "SELECT count(*) FROM ledger WHERE status = 'planned' AND tier = 'opus'"
        ).fetchone()[0]
        if pending == 0 and self.staging_dir.exists():
            shutil.rmtree(self.staging_dir)
