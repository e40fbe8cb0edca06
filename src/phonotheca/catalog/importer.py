"""Run an import of a line-based source: parse in a worker process, write in this one.

Crash safety: every batch commits together with the import's progress (lines done,
counts, length of the rejects file), so a re-run after ``kill -9`` resumes after the
last committed batch; what was half-written is rolled back by SQLite, and the rejects
file is cut back to its committed length. Loading is idempotent, so the catalog ends
up equal to that of an uninterrupted run.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from phonotheca.catalog import library, schema
from phonotheca.catalog.batch import Batch, Reject, decode_batch, encode_batch, stage_rows
from phonotheca.catalog.load import Loader
from phonotheca.catalog.playlist_record import PlaylistCounts
from phonotheca.catalog.search import mark_search_stale, refresh_search
from phonotheca.sources.jsonl import (
    DamagedInput,
    file_fingerprint,
    iter_line_blocks,
    prepare_lines,
)
from phonotheca.sources.playlists import PlaylistWriter

# Lines per batch (one transaction each). The environment override lets tests make
# many small batches to kill an import between them.
LINES_PER_BATCH = int(os.environ.get("PHONOTHECA_TEST_BATCH_LINES", "25000"))
# Bulk mode: for inputs over 64 MiB that hold (at ~200 compressed bytes a track) more
# tracks than the catalog has.
BULK_MIN_BYTES = int(os.environ.get("PHONOTHECA_TEST_BULK_MIN_BYTES", 64 << 20))
BULK_BYTES_PER_TRACK = 200
# A file bigger than this is parsed in worker processes; smaller ones in-process.
POOL_THRESHOLD = 4 << 20


class ImportRejected(Exception):
    """--strict: a line was bad, and nothing of this import was kept."""

    def __init__(self, path: Path, reject: Reject) -> None:
        super().__init__(f"{path}:{reject.line}: {reject.reason}")
        self.path = path
        self.reject = reject


@dataclass
class ImportSummary:
    path: str
    read: int
    loaded: int
    rejected: int
    invalid_isrc: int
    superseded: int
    rejects_file: str | None
    resumed_at_line: int
    seconds: float
    complete: bool = True
    """False when the input broke off (:class:`DamagedInput`): the counts are of the
    records before the break, and the rest of the file was not read."""
    taken_over: int = 0
    """New tracks of this run that took over an album-less track they claim
    (:attr:`~phonotheca.catalog.batch.Batch.claims`)."""
    playlists: dict[str, int] | None = None
    """Playlists loaded, their entries and how these matched (docs/FORMAT.md §4.8), when
    the file held playlists."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# Progress callback: (lines done in this file, input bytes read, input size)
Progress = Callable[[int, int, int], None]
# A source's parser: (number of the first line, lines) -> rows to load. Must be a
# module-level function: worker processes receive it by name.
Prepare = Callable[[int, list[bytes]], Batch]
# A source's reader: (path, lines per block, lines to skip) -> (first line, lines,
# input bytes read so far). A "line" is one record: a JSON document of a dump, ...
ReadBlocks = Callable[[Path, int, int], Iterator[tuple[int, list[bytes], int]]]

# -- the worker side ------------------------------------------------------------------------


def _worker_init() -> None:
    # Batches are trees of tuples and strings without reference cycles: reference
    # counting frees them, and the cyclic collector would only rescan them (a third
    # of the parsing time when it ran).
    gc.disable()


def _worker_prepare(prepare: Prepare, first_line: int, lines: list[bytes]) -> bytes:
    # Staged here, in parallel, so that the writer binds no track row itself.
    return encode_batch(stage_rows(prepare(first_line, lines)))


# -- the writer side ------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _batches(
    path: Path, skip: int, workers: int, prepare: Prepare, read_blocks: ReadBlocks
) -> Iterator[tuple[Batch, int]]:
    blocks = read_blocks(path, LINES_PER_BATCH, skip)
    if workers <= 0 or path.stat().st_size < POOL_THRESHOLD:
        for first, lines, pos in blocks:
            yield prepare(first, lines), pos
        return
    damage: DamagedInput | None = None
    with ProcessPoolExecutor(
        workers, mp_context=get_context("forkserver"), initializer=_worker_init
    ) as pool:
        # A bounded window of batches in flight: memory does not grow with the file.
        window: deque[tuple[Future[bytes], int]] = deque()
        try:
            for first, lines, pos in blocks:
                window.append((pool.submit(_worker_prepare, prepare, first, lines), pos))
                if len(window) > workers * 2:
                    fut, p = window.popleft()
                    yield decode_batch(fut.result()), p
        except DamagedInput as exc:
            damage = exc  # the batches read before the break are loaded first
        while window:
            fut, p = window.popleft()
            yield decode_batch(fut.result()), p
    if damage is not None:
        raise damage


class RejectsFile:
    """Append-only rejects, cut back to the committed length when an import resumes."""

    def __init__(self, path: Path, committed: int) -> None:
        self.path = path
        self.size = committed
        self._f: BinaryIO | None = None
        if path.exists():
            with path.open("r+b") as f:
                f.truncate(committed)

    def write(self, source: Path, rejects: list[Reject]) -> None:
        if not rejects:
            return
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open("ab")
        out = bytearray()
        for r in rejects:
            entry: dict[str, object] = {"file": str(source), "line": r.line, "reason": r.reason}
            try:
                entry["record"] = r.raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["record_base64"] = base64.b64encode(r.raw).decode()
            out += json.dumps(entry, ensure_ascii=False).encode() + b"\n"
        self._f.write(out)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.size += len(out)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def save_progress(
    conn: sqlite3.Connection,
    import_id: int,
    lines_done: int,
    counts: tuple[int, int, int, int, int],
    rejects: RejectsFile | None,
    playlists: PlaylistCounts | None = None,
) -> None:
    """Record an import's resume point and counts (read, loaded, rejected, invalid ISRCs,
    superseded; the playlists' counts) in the caller's transaction, with the rejects
    file's committed length."""
    conn.execute(
        "UPDATE imports SET lines_done=?, read=?, loaded=?, rejected=?, invalid_isrc=?,"
        " superseded=?, rejects_file=?, rejects_bytes=?, counts=? WHERE id=?",
        (
            lines_done,
            *counts,
            str(rejects.path) if rejects is not None and rejects.size else None,
            rejects.size if rejects is not None else 0,
            json.dumps(playlists.to_json()) if playlists is not None else None,
            import_id,
        ),
    )


def _begin(conn: sqlite3.Connection, outer: bool) -> None:
    if not outer:
        conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection, outer: bool) -> None:
    if not outer:
        conn.execute("COMMIT")


def import_lines(
    conn: sqlite3.Connection,
    path: Path,
    rejects_dir: Path,
    *,
    kind: str = "jsonl",
    prepare: Prepare = prepare_lines,
    read_blocks: ReadBlocks = iter_line_blocks,
    strict: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import one file of records into the catalog behind ``conn``.

    ``kind`` names the source format (stored with the source records and the import);
    ``prepare`` and ``read_blocks`` parse and read it (default: interchange JSONL).

    Without ``strict`` each batch commits on its own and a re-run resumes. With
    ``strict`` the caller holds one transaction around the whole command, and the
    first bad line raises :class:`ImportRejected` (the caller rolls back).
    Call :func:`finish_import` once after the last file.

    An input that ends early or is damaged raises
    :class:`~phonotheca.sources.compressed.DamagedInput` once the records before the
    break are loaded and committed (without ``strict``), with ``summary`` set to this
    import's summary (``complete=False``); the import stays unfinished, so a re-run of
    the same file resumes, and a whole file is a new import that loads the rest.
    """
    started = time.monotonic()
    if not strict and schema.postponed_since(conn) is None:
        # An archive from before the index existed gets one first; a bulk load cut short
        # goes on without it (built once at its end).
        refresh_search(conn)
    fingerprint = file_fingerprint(path)
    size = path.stat().st_size
    row = None
    if not strict:  # a strict import is all or nothing: it never resumes
        row = conn.execute(
            "SELECT id, lines_done, read, loaded, rejected, invalid_isrc, superseded,"
            " rejects_bytes, counts FROM imports"
            " WHERE kind=? AND fingerprint=? AND finished_at IS NULL ORDER BY id DESC LIMIT 1",
            (kind, fingerprint),
        ).fetchone()
    if row is None and not strict:
        # Loaded whole by a bulk load whose index builds were cut short: the re-run
        # of the command goes straight on to them (finish_import) instead of reading
        # the file again.
        row = _loaded_awaiting_indexes(conn, kind, fingerprint)
        if row is not None:
            return _summary(path, row, time.monotonic() - started)
    resumed_at = 0
    playlists: PlaylistCounts | None = None
    if row is not None:
        import_id, resumed_at, read, loaded, rejected, invalid, superseded, rj_bytes = row[:8]
        if row[8] is not None:
            playlists = PlaylistCounts(**json.loads(row[8]))
    else:
        read = loaded = rejected = invalid = superseded = rj_bytes = 0
        _begin(conn, strict)
        import_id = conn.execute(
            "INSERT INTO imports(kind, path, fingerprint, started_at) VALUES (?,?,?,?)",
            (kind, str(path), fingerprint, _now()),
        ).lastrowid
        # A load much larger than the catalog drops the secondary indexes and the search
        # index and builds them once at the end (finish_import), instead of updating
        # them row by row. A resumed import finds them dropped and carries on alike.
        tracks_now = conn.execute("SELECT max(id) FROM tracks").fetchone()[0] or 0
        if size > BULK_MIN_BYTES and tracks_now < size // BULK_BYTES_PER_TRACK:
            schema.postpone_indexes(conn, int(import_id or 0))
            mark_search_stale(conn)
        _commit(conn, strict)

    assert import_id is not None
    rejects_path = rejects_dir / f"{import_id:06d}-{path.name}.rejects.jsonl"
    rejects = None if strict else RejectsFile(rejects_path, rj_bytes)
    loader = Loader(conn, import_id, kind, PlaylistWriter(conn, import_id))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # see _worker_init
    damage: DamagedInput | None = None
    taken_over = 0
    try:
        for batch, pos in _batches(path, resumed_at, workers, prepare, read_blocks):
            if strict and batch.rejects:
                raise ImportRejected(path, batch.rejects[0])
            _begin(conn, strict)
            try:
                result = loader.write(batch)
                taken_over += result.taken_over
                read += batch.read
                loaded += result.loaded
                superseded += result.superseded
                rejected += len(batch.rejects)
                invalid += batch.invalid_isrc
                if batch.playlists:
                    playlists = playlists or PlaylistCounts()
                    playlists.add(result.playlists)
                if rejects is not None:
                    rejects.write(path, batch.rejects)
                save_progress(
                    conn,
                    import_id,
                    batch.last_line,
                    (read, loaded, rejected, invalid, superseded),
                    rejects,
                    playlists,
                )
            except BaseException:
                if not strict and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            _commit(conn, strict)
            if progress is not None:
                progress(batch.last_line, pos, size)
        conn.execute("UPDATE imports SET finished_at=? WHERE id=?", (_now(), import_id))
    except DamagedInput as exc:
        damage = exc
    finally:
        if gc_was_enabled:
            gc.enable()
        if rejects is not None:
            rejects.close()
    summary = ImportSummary(
        path=str(path),
        read=read,
        loaded=loaded,
        rejected=rejected,
        invalid_isrc=invalid,
        superseded=superseded,
        rejects_file=str(rejects_path) if rejects is not None and rejects.size else None,
        resumed_at_line=resumed_at,
        seconds=round(time.monotonic() - started, 3),
        complete=damage is None,
        taken_over=taken_over,
        playlists=playlists.to_json() if playlists is not None else None,
    )
    if damage is not None:
        damage.summary = summary
        raise damage
    return summary


def _loaded_awaiting_indexes(
    conn: sqlite3.Connection, kind: str, fingerprint: str
) -> tuple[int, ...] | None:
    """The finished import of this file since the indexes were postponed, if any (its
    id, lines done and counts, as the resume query gives them)."""
    since = schema.postponed_since(conn)
    if since is None:
        return None
    row = conn.execute(
        "SELECT id, lines_done, read, loaded, rejected, invalid_isrc, superseded,"
        " rejects_bytes, rejects_file FROM imports WHERE kind=? AND fingerprint=?"
        " AND finished_at IS NOT NULL AND id >= ? ORDER BY id DESC LIMIT 1",
        (kind, fingerprint, since),
    ).fetchone()
    return None if row is None else tuple(row)


def _summary(path: Path, row: tuple[int, ...], seconds: float) -> ImportSummary:
    """The summary of an import loaded whole before (see _loaded_awaiting_indexes)."""
    _, lines_done, read, loaded, rejected, invalid, superseded, _, rejects_file = row
    return ImportSummary(
        path=str(path),
        read=read,
        loaded=loaded,
        rejected=rejected,
        invalid_isrc=invalid,
        superseded=superseded,
        rejects_file=rejects_file,  # type: ignore[arg-type]
        resumed_at_line=lines_done,
        seconds=round(seconds, 3),
    )


def finish_import(conn: sqlite3.Connection, progress: schema.StepProgress | None = None) -> None:
    """Build what a bulk load postponed: secondary indexes, the search index, then the
    lists a server reads (:func:`phonotheca.catalog.library.refresh`).

    Each step commits what it finished, so a re-run after a kill resumes where the
    build stopped. ``progress(step, done, total)`` hears of each step as it starts (a
    step already finished is not heard of again; see :func:`rebuild_search`); the lists
    are built in a thread beside the search index, and their step is heard of first.
    """
    schema.ensure_indexes(conn, progress)
    # The lists are a file of their own, read from the catalog, and the search index is
    # not in them: they are built on the other core while this connection builds it
    # (on 2 cores the lists no longer add their time to the import's).
    with _alongside(library.refresher(conn, progress)):
        refresh_search(conn, progress=progress)
    library.forget_applied(conn)
    if schema.postponed_since(conn) is not None:
        with schema.transaction(conn):
            schema.journal_on(conn, "bulk")
            schema.set_meta(conn, schema.POSTPONED, None)


@contextmanager
def _alongside(work: Callable[[], None] | None) -> Iterator[None]:
    """Run ``work`` in a thread while the body runs; wait for it at the end, and raise
    what it raised (the body's own exception first, if any)."""
    if work is None:
        yield
        return
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="phonotheca-library", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]
