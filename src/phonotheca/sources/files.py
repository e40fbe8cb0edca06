"""Local audio files as a source: scan folders, match each file to a track, keep cover art.

``scan_files`` walks the folders (sorted, so runs are repeatable), skips files whose
size and mtime did not change since they were last read, and sends the others to
worker processes that probe them with mutagen (:mod:`phonotheca.audio.probe`), hash
them (SHA-256, streamed) and store their pictures in the blob store. The writer (this
process) matches each file (:mod:`phonotheca.sources.matching`), creates tracks for
files that match nothing (:mod:`phonotheca.sources.file_tracks`), and records every
file in ``source_files``. A file that cannot be used is recorded with status
``error`` and its reason, and reported in ``ARCHIVE/rejects/``; it never stops the scan.

Crash safety: each batch of files (rows, new tracks, images, the import's counts)
commits in one transaction. A re-run skips what was committed (its size and mtime are
recorded) and redoes the rest the same way, so it ends with the same catalog.
Files that were known under a scanned folder and are gone are marked ``missing``,
never dropped: the catalog remembers the operator once had them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from phonotheca.blobs import blob_url
from phonotheca.catalog import schema
from phonotheca.catalog.load import Loader
from phonotheca.catalog.search import refresh_search
from phonotheca.sources.file_reading import (
    ImageRef,
    MeasuredLoudness,
    ScannedFile,
    Walk,
    measure_loudness,
    read_files,
    walk,
)
from phonotheca.sources.file_tracks import SOURCE_KIND, TrackMaker
from phonotheca.sources.matching import METHODS, FileFacts, Matcher

BATCH_FILES = int(os.environ.get("PHONOTHECA_TEST_BATCH_FILES", "500"))
"""Files per transaction. The environment override lets tests kill a scan between batches."""
Progress = Callable[[int, int], None]
"""(files done, files found)"""


@dataclass
class ScanSummary:
    """What a scan did (the ``--json`` shape of ``phonotheca import files``)."""

    roots: list[str]
    files: int = 0
    """Audio files found (by extension)."""
    scanned: int = 0
    """Files read, hashed and matched by this run (new or changed)."""
    skipped_unchanged: int = 0
    matched: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METHODS, 0))
    created: int = 0
    """Files that matched no track and made a new one."""
    errors: int = 0
    missing: int = 0
    """Files known under the scanned folders that are gone (marked ``missing`` now)."""
    reappeared: int = 0
    ignored: int = 0
    """Other files (images, cue sheets, logs, ...)."""
    blobs_stored: int = 0
    images_linked: int = 0
    invalid_isrc: int = 0
    measured_unchanged: int = 0
    """Unchanged files measured for loudness (``--loudness``) that no scan had measured."""
    rejects_file: str | None = None
    seconds: float = 0.0
    files_per_second: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _loudness_columns(m: MeasuredLoudness | None) -> tuple[object, ...]:
    if m is None:
        return (None, None, None, None)
    return (m.lufs, m.true_peak, m.lra, m.blocks)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the writer ---------------------------------------------------------------------------------


class _Rejects:
    """``ARCHIVE/rejects/<import id>-files.rejects.jsonl``: one line per unusable file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def write(self, entries: list[tuple[str, str, int | None]]) -> None:
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            for path, reason, size in entries:
                line = {"file": path, "reason": reason, "size": size}
                f.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.count += len(entries)


_UPSERT = """
INSERT INTO source_files(track_id, path, size, mtime_ns, sha256, container, codec, lossless,
    bitrate, sample_rate, channels, duration_ms, chromaprint, status, match, error, scanned_at,
    loudness_lufs, true_peak_dbtp, loudness_range_lu, loudness_blocks)
VALUES ((SELECT id FROM tracks WHERE public_id = ?),?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(path) DO UPDATE SET track_id=excluded.track_id, size=excluded.size,
    mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, container=excluded.container,
    codec=excluded.codec, lossless=excluded.lossless, bitrate=excluded.bitrate,
    sample_rate=excluded.sample_rate, channels=excluded.channels,
    duration_ms=excluded.duration_ms, chromaprint=excluded.chromaprint,
    status=excluded.status, match=excluded.match, error=excluded.error,
    scanned_at=excluded.scanned_at, loudness_lufs=excluded.loudness_lufs,
    true_peak_dbtp=excluded.true_peak_dbtp, loudness_range_lu=excluded.loudness_range_lu,
    loudness_blocks=excluded.loudness_blocks
"""


class _Writer:
    """Matches and writes batches of read files, one transaction each."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        import_id: int,
        rejects: _Rejects,
        summary: ScanSummary,
        fingerprints: bool,
    ) -> None:
        self.conn = conn
        self.import_id = import_id
        self.rejects = rejects
        self.summary = summary
        self.loader = Loader(conn, import_id, SOURCE_KIND)
        self.matcher = Matcher(conn, fingerprints=fingerprints)
        self.maker = TrackMaker(conn)
        self.linked: set[tuple[int, str]] = set()
        self.new_blobs: set[str] = set()
        """Blobs written by this scan (two workers may both write one: counted once)."""

    def write(self, files: list[ScannedFile]) -> None:
        s = self.summary
        now = _now()
        rows: list[tuple[object, ...]] = []
        images: list[tuple[str, ImageRef]] = []
        bad: list[tuple[str, str, int | None]] = []
        with schema.transaction(self.conn):
            self.matcher.prefetch(
                [
                    FileFacts(f.path, f.tags, None)
                    for f in files
                    if f.tags is not None and (f.tags.isrc or f.tags.musicbrainz_recording)
                ]
            )
            for f in files:
                if f.error is not None or f.stream is None or f.tags is None:
                    reason = f.error or "unreadable"
                    bad.append((f.path, reason, f.size))
                    rows.append(
                        (
                            None,
                            f.path,
                            f.size,
                            f.mtime_ns,
                            f.sha256,
                            *[None] * 8,
                            "error",
                            None,
                            reason,
                            now,
                            *[None] * 4,
                        )
                    )
                    continue
                facts = FileFacts(f.path, f.tags, f.stream.duration_ms)
                m = self.matcher.match(facts)
                pid, method = m.public_id, m.method
                assert f.sha256 is not None
                if pid is None and (same := self.maker.existing(facts, f.sha256)):
                    pid, method = same
                if pid is None:
                    cand = self.maker.add(facts, f.sha256, f.stream)
                    self.matcher.add_pending(cand, facts)
                    pid, method = cand.public_id, "new"
                    s.created += 1
                else:
                    self.matcher.note_file(pid, f.path)
                    s.matched[method or "name"] += 1
                st = f.stream
                rows.append(
                    (
                        pid,
                        f.path,
                        f.size,
                        f.mtime_ns,
                        f.sha256,
                        st.container,
                        st.codec,
                        st.lossless,
                        st.bitrate,
                        st.sample_rate,
                        st.channels,
                        st.duration_ms,
                        m.chromaprint,
                        "ok",
                        method,
                        None,
                        now,
                        *_loudness_columns(f.loudness),
                    )
                )
                images += [(pid, img) for img in f.images]
                self.new_blobs.update(img.sha256 for img in f.images if img.stored)
            batch = self.maker.take()
            if batch is not None:
                self.loader.write(batch)
            self.conn.executemany(_UPSERT, rows)
            if self.matcher.stored_prints:
                self.conn.executemany(
                    "UPDATE source_files SET chromaprint = ? WHERE id = ?",
                    self.matcher.stored_prints,
                )
            self._link_images(images)
            s.scanned += len(files)
            s.blobs_stored = len(self.new_blobs)
            s.errors += len(bad)
            s.invalid_isrc = self.maker.invalid_isrc
            self.conn.execute(
                "UPDATE imports SET lines_done=lines_done+?, read=read+?, loaded=loaded+?,"
                " rejected=rejected+?, invalid_isrc=?, rejects_file=? WHERE id=?",
                (
                    len(files),
                    len(files),
                    len(files) - len(bad),
                    len(bad),
                    s.invalid_isrc,
                    str(self.rejects.path) if bad or self.rejects.count else None,
                    self.import_id,
                ),
            )
        self.matcher.end_batch()
        self.rejects.write(bad)

    def _link_images(self, images: list[tuple[str, ImageRef]]) -> None:
        """Link each image to its track's album once per (album, sha256)."""
        albums: dict[str, int | None] = {}
        for pid, img in images:
            if pid not in albums:
                row = self.conn.execute(
                    "SELECT album_id FROM tracks WHERE public_id = ?", (pid,)
                ).fetchone()
                albums[pid] = row[0] if row else None
            album_id = albums[pid]
            if album_id is None or (album_id, img.sha256) in self.linked:
                continue
            self.linked.add((album_id, img.sha256))
            if self.conn.execute(
                "SELECT 1 FROM images WHERE album_id = ? AND blob_sha256 = ?",
                (album_id, img.sha256),
            ).fetchone():
                continue
            self.conn.execute(
                "INSERT INTO images(album_id, position, kind, url, width, height, blob_sha256)"
                " VALUES (?, (SELECT coalesce(max(position) + 1, 0) FROM images"
                " WHERE album_id = ?), ?, ?, ?, ?, ?)",
                (
                    album_id,
                    album_id,
                    img.kind,
                    blob_url(img.sha256),
                    img.width,
                    img.height,
                    img.sha256,
                ),
            )
            self.summary.images_linked += 1


def _known(conn: sqlite3.Connection, found: Walk) -> dict[str, tuple[int, int, int, str]]:
    """path -> (id, size, mtime_ns, status) of the rows under the scanned roots."""
    known: dict[str, tuple[int, int, int, str]] = {}
    sql = "SELECT path, id, size, mtime_ns, status FROM source_files"
    for root in found.dirs:
        for path, *rest in conn.execute(
            f"{sql} WHERE path >= ? AND path < ?", (root + "/", root + "0")
        ):
            known[path] = tuple(rest)
    for path in found.single:
        for p, *rest in conn.execute(f"{sql} WHERE path = ?", (path,)):
            known[p] = tuple(rest)
    return known


def scan_files(
    conn: sqlite3.Connection,
    roots: list[Path],
    *,
    blobs_dir: Path,
    rejects_dir: Path,
    workers: int = 2,
    fingerprints: bool = True,
    loudness: bool = False,
    progress: Progress | None = None,
) -> ScanSummary:
    """Scan ``roots`` (folders or files) into the catalog behind ``conn``.

    With ``loudness``, every file read is also decoded and measured (EBU R128), and so
    are the unchanged files measured by no earlier scan.
    """
    started = time.monotonic()
    refresh_search(conn)  # matching by name reads the search index
    found = walk(roots)
    summary = ScanSummary(roots=[str(Path(os.path.abspath(r))) for r in roots])
    summary.files = len(found.files)
    summary.ignored = found.ignored
    known = _known(conn, found)
    seen = {f.path for f in found.files}
    todo = []
    back: list[int] = []
    for f in found.files:
        row = known.get(f.path)
        if row is not None and row[1] == f.size and row[2] == f.mtime_ns:
            summary.skipped_unchanged += 1
            if row[3] == "missing":
                back.append(row[0])
        else:
            todo.append(f)
    unlisted = tuple(d + "/" for d in found.unlisted)
    gone = [
        (row[0],)
        for path, row in known.items()
        if path not in seen and row[3] != "missing" and not path.startswith(unlisted)
    ]
    with schema.transaction(conn):
        import_id = conn.execute(
            "INSERT INTO imports(kind, path, fingerprint, started_at) VALUES (?,?,?,?)",
            (
                SOURCE_KIND,
                "\n".join(summary.roots),
                "scan:"
                + hashlib.blake2b("\n".join(summary.roots).encode(), digest_size=16).hexdigest(),
                _now(),
            ),
        ).lastrowid
        conn.executemany("UPDATE source_files SET status = 'missing' WHERE id = ?", gone)
        conn.executemany(
            "UPDATE source_files SET status = CASE WHEN error IS NULL THEN 'ok' ELSE 'error' END"
            " WHERE id = ?",
            [(i,) for i in back],
        )
    summary.missing, summary.reappeared = len(gone), len(back)
    assert import_id is not None
    rejects = _Rejects(rejects_dir / f"{import_id:06d}-files.rejects.jsonl")
    rejects.write([(p, reason, None) for p, reason in found.problems])
    summary.errors += len(found.problems)
    writer = _Writer(conn, import_id, rejects, summary, fingerprints)
    done = summary.skipped_unchanged
    if progress is not None:
        progress(done, summary.files)
    pending: list[ScannedFile] = []
    for scanned in read_files(todo, blobs_dir, workers, loudness):
        pending.append(scanned)
        done += 1
        if len(pending) >= BATCH_FILES:
            writer.write(pending)
            pending = []
        if progress is not None and done % 32 == 0:
            progress(done, summary.files)
    if pending:
        writer.write(pending)
    if progress is not None:
        progress(done, summary.files)
    if loudness:
        summary.measured_unchanged = _measure_unchanged(conn, seen, workers)
    conn.execute("UPDATE imports SET finished_at = ? WHERE id = ?", (_now(), import_id))
    summary.rejects_file = str(rejects.path) if rejects.count else None
    summary.seconds = round(time.monotonic() - started, 3)
    summary.files_per_second = round(summary.files / max(summary.seconds, 1e-6), 1)
    return summary


def _measure_unchanged(conn: sqlite3.Connection, paths: set[str], workers: int) -> int:
    """Measure the loudness of the ``ok`` files among ``paths`` that have none yet;
    commits every :data:`BATCH_FILES` files. Returns how many were measured."""
    rows = conn.execute(
        "SELECT id, path FROM source_files WHERE status = 'ok' AND loudness_blocks IS NULL"
    ).fetchall()
    todo = [(int(r[0]), str(r[1])) for r in rows if r[1] in paths]
    if not todo:
        return 0
    measured = 0
    ctx = get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else _Inline() as pool:
        for i in range(0, len(todo), BATCH_FILES):
            batch = todo[i : i + BATCH_FILES]
            results = list(pool.map(measure_loudness, [p for _, p in batch]))
            with schema.transaction(conn):
                conn.executemany(
                    "UPDATE source_files SET loudness_lufs = ?, true_peak_dbtp = ?,"
                    " loudness_range_lu = ?, loudness_blocks = ? WHERE id = ?",
                    [
                        (*_loudness_columns(m), file_id)
                        for (file_id, _), m in zip(batch, results, strict=True)
                        if m is not None
                    ],
                )
            measured += sum(m is not None for m in results)
    return measured


class _Inline:
    """A stand-in for a process pool that maps in this process."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[str], MeasuredLoudness | None], items: list[str]) -> Any:
        return map(fn, items)
