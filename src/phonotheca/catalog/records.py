"""Source records kept in zstd chunks (docs/FORMAT.md §4.3): repacking and compaction.

Each loaded line is kept in ``source_chunks``, and ``tracks.record_ref`` (or
``playlists.record_ref``) points at it (``chunk id × 1024 + line``). A line stops being
needed when its track (or playlist) takes a newer record. Two things keep that from piling up:

- an import keeps only the lines it loads: a chunk of a re-imported file in which only a
  few records changed is cut down to those records before it is stored
  (:func:`cut_chunks`), so re-importing a dump stores what changed, not the whole dump again;
- ``phonotheca compact`` (:func:`compact`) drops the chunks no track points at any more,
  and rewrites those whose live lines fell below :data:`SPARSE` of their lines or that
  are small (a re-import's changed records), merging each import's into full chunks and
  carrying each track's pointer along.

Compaction moves lines, never changes them: export gives the same output before and
after, and a track's listens and popularity stay as they were (schema v4's trigger
reacts to a new record, not to a record that moved).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import zstandard

from phonotheca.catalog.batch import RECORD_REF_LINES
from phonotheca.catalog.schema import next_id, transaction

LEVEL = 1
"""zstd level of repacked chunks: the importers' level (speed over a few % of size)."""
FRAME_LINES = 1000
"""Most lines in a chunk written here (the JSONL importer's chunk)."""
FRAME_BYTES = 1 << 20
"""A chunk written here is closed once it holds this many bytes of lines (MusicBrainz
documents are ~10 KiB: its importer writes 100 to a chunk)."""
SPARSE = 0.75
"""A chunk with fewer live lines than this fraction of its lines is rewritten."""
SMALL_BYTES = FRAME_BYTES // 8
"""Chunks holding fewer bytes of lines are merged with others of their import (a
re-import stores each changed record in a small chunk of its batch; zstd does better
on a few hundred lines than on a few)."""
GROUP_LINES = int(os.environ.get("PHONOTHECA_TEST_COMPACT_GROUP", "20000"))
"""Lines gathered before their full chunks are written, in one transaction (at most
this many dead chunks are dropped in one, too)."""


def split_lines(dctx: zstandard.ZstdDecompressor, data: bytes) -> list[bytes]:
    """The lines of one chunk (they never contain a newline: each is one JSON text)."""
    return dctx.decompress(data).split(b"\n")


def repack(
    dctx: zstandard.ZstdDecompressor,
    cctx: zstandard.ZstdCompressor,
    data: bytes,
    keep: Sequence[int],
) -> bytes:
    """The chunk holding only lines ``keep`` (indexes, in this order) of chunk ``data``."""
    lines = split_lines(dctx, data)
    return cctx.compress(b"\n".join(lines[i] for i in keep))


def cut_chunks(
    chunks: list[bytes], refs: Sequence[int | None], used: Sequence[int | None]
) -> tuple[list[bytes | None], dict[int, int]]:
    """Cut a batch's chunks down to the lines its loaded tracks point at.

    ``refs`` are the record refs (``chunk index × 1024 + line``, relative to the batch)
    of every track in the batch, so each line of a chunk appears there at least once;
    ``used`` those of the tracks that are loaded. Returns the chunks to store (None for
    one no loaded track needs) and how the used refs move: ``{old: new}``, only for refs
    that change.
    """
    lines: dict[int, set[int]] = {}
    for ref in refs:
        if ref is not None:
            lines.setdefault(ref // RECORD_REF_LINES, set()).add(ref % RECORD_REF_LINES)
    keep: dict[int, set[int]] = {}
    for ref in used:
        if ref is not None:
            keep.setdefault(ref // RECORD_REF_LINES, set()).add(ref % RECORD_REF_LINES)
    out: list[bytes | None] = []
    moved: dict[int, int] = {}
    dctx = cctx = None
    for c, data in enumerate(chunks):
        wanted = keep.get(c)
        if not wanted:
            out.append(None)
            continue
        if len(wanted) == len(lines.get(c, ())):
            out.append(data)
            continue
        order = sorted(wanted)
        dctx = dctx or zstandard.ZstdDecompressor()
        cctx = cctx or zstandard.ZstdCompressor(level=LEVEL)
        out.append(repack(dctx, cctx, data, order))
        base = c * RECORD_REF_LINES
        for new, old in enumerate(order):
            if new != old:
                moved[base + old] = base + new
    return out, moved


# -- compaction -----------------------------------------------------------------------


@dataclass
class CompactSummary:
    """What ``phonotheca compact`` did (``--json``)."""

    chunks_before: int = 0
    chunks_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    lines_dropped: int = 0
    """Source records no track pointed at any more."""
    lines_moved: int = 0
    chunks_dropped: int = 0
    """Chunks with no live line, deleted."""
    chunks_rewritten: int = 0
    """Sparse or small chunks whose live lines were moved into new chunks."""
    dangling: int = 0
    """Tracks pointing at a chunk that does not exist (left as they are)."""
    vacuumed: bool = False


@dataclass
class _Pending:
    """Live lines gathered from sparse or small chunks of one (import, kind), not yet
    written."""

    import_id: int
    kind: str
    lines: list[bytes] = field(default_factory=list)
    tracks: list[list[tuple[int, int, int]]] = field(default_factory=list)
    """Per line: (id, its current record_ref, 1 for a playlist else 0) of every track
    or playlist pointing at it."""
    origin: list[int] = field(default_factory=list)
    """Per line: the chunk it comes from."""
    sources: dict[int, int] = field(default_factory=dict)
    """Chunk id -> its dead lines, for every chunk with lines here."""
    written: bool = False


class _Compactor:
    def __init__(self, conn: sqlite3.Connection, summary: CompactSummary, sparse: float) -> None:
        self.conn = conn
        self.summary = summary
        self.sparse = sparse
        self.cctx = zstandard.ZstdCompressor(level=LEVEL)
        self.pending: dict[tuple[int, str], _Pending] = {}
        self.dead: list[int] = []

    def chunk(
        self,
        chunk_id: int,
        import_id: int,
        kind: str,
        lines: list[bytes],
        live: dict[int, list[tuple[int, int, int]]],
    ) -> None:
        if not live:
            self.summary.chunks_dropped += 1
            self.summary.lines_dropped += len(lines)
            self.dead.append(chunk_id)
            if len(self.dead) >= GROUP_LINES:
                self.flush_dead()
            return
        if not self.rewrites(lines, len(live)):
            return
        key = (import_id, kind)
        p = self.pending.setdefault(key, _Pending(import_id, kind))
        for line in sorted(live):
            p.lines.append(lines[line])
            p.tracks.append(live[line])
            p.origin.append(chunk_id)
        p.sources[chunk_id] = len(lines) - len(live)
        if len(p.lines) >= GROUP_LINES:
            self.write(key, final=False)

    def rewrites(self, lines: list[bytes], live: int) -> bool:
        """Whether a chunk with ``live`` of its ``lines`` still pointed at is rewritten:
        it is sparse, or small."""
        return live < self.sparse * len(lines) or sum(map(len, lines)) < SMALL_BYTES

    def _frames(self, p: _Pending, final: bool) -> list[tuple[int, int]]:
        """(start, end) of the chunks to write: each full (FRAME_LINES or FRAME_BYTES),
        and the last one whatever its size when ``final``."""
        frames = []
        start = 0
        while start < len(p.lines):
            end, size = start, 0
            while end < len(p.lines) and end - start < FRAME_LINES and size < FRAME_BYTES:
                size += len(p.lines[end])
                end += 1
            full = end - start == FRAME_LINES or size >= FRAME_BYTES
            if full or final:
                frames.append((start, end))
            start = end
        return frames

    def write(self, key: tuple[int, str], *, final: bool) -> None:
        """Store a group's lines in new chunks (all of them when ``final``, else the
        full chunks), point their tracks there, and drop the chunks whose lines all moved
        and the dead chunks found so far: one transaction."""
        p = self.pending[key]
        if final:
            del self.pending[key]
            if not p.written and len(p.sources) == 1 and not next(iter(p.sources.values())):
                return  # one small chunk and nothing to merge it with: leave it be
        frames = self._frames(p, final)
        if not frames:
            return
        cut = frames[-1][1]
        moved = set(p.origin[:cut])
        done = sorted(moved.difference(p.origin[cut:]))
        with transaction(self.conn):
            base = next_id(self.conn, "source_chunks")
            rows: list[tuple[int, int, str, bytes]] = []
            moves: tuple[list[tuple[int, int, int]], ...] = ([], [])
            for chunk_id, (start, end) in enumerate(frames, base):
                data = self.cctx.compress(b"\n".join(p.lines[start:end]))
                rows.append((chunk_id, p.import_id, p.kind, data))
                for line in range(start, end):
                    ref = chunk_id * RECORD_REF_LINES + line - start
                    for owner, old, playlist in p.tracks[line]:
                        moves[playlist].append((ref, owner, old))
            self.conn.executemany(
                "INSERT INTO source_chunks(id, import_id, kind, data) VALUES (?,?,?,?)", rows
            )
            # A track that took a newer record meanwhile (an import running beside us)
            # keeps it: only pointers still at the old place move.
            for table, moved_refs in zip(("tracks", "playlists"), moves, strict=True):
                self.conn.executemany(
                    f"UPDATE {table} SET record_ref = ? WHERE id = ? AND record_ref = ?",
                    moved_refs,
                )
            self._delete([*done, *self.dead])
            self.dead = []
        self.summary.lines_moved += cut
        self.summary.chunks_rewritten += len(done)
        self.summary.lines_dropped += sum(p.sources.pop(c) for c in done)
        del p.lines[:cut], p.tracks[:cut], p.origin[:cut]
        p.written = True

    def flush_dead(self) -> None:
        if self.dead:
            with transaction(self.conn):
                self._delete(self.dead)
            self.dead = []

    def _delete(self, ids: list[int]) -> None:
        self.conn.executemany("DELETE FROM source_chunks WHERE id = ?", [(i,) for i in ids])

    def finish(self) -> None:
        for key in sorted(self.pending):
            self.write(key, final=True)
        self.flush_dead()


def _totals(conn: sqlite3.Connection) -> tuple[int, int]:
    count, size = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM source_chunks"
    ).fetchone()
    return int(count), int(size)


WALK_ROWS = int(os.environ.get("PHONOTHECA_TEST_COMPACT_WALK", "100000"))
"""Tracks (or chunks, by a hundredth of it) read per short read transaction."""


def _walk_tracks(read: sqlite3.Connection) -> Iterator[list[tuple[int, int, int]]]:
    """Batches of ``(id, record_ref, owner)`` of the tracks (owner 0), then of the
    playlists (owner 1, docs/FORMAT.md §4.8) that point at a source record: keyset walks
    in rowid order, each batch read in a transaction of its own, so no read snapshot is
    held for the whole walk."""
    for owner, table in enumerate(("tracks", "playlists")):
        sql = (
            f"SELECT id, record_ref FROM {table} WHERE id > ? AND record_ref IS NOT NULL"
            " ORDER BY id LIMIT ?"
        )
        after = 0
        while True:
            rows = read.execute(sql, (after, WALK_ROWS)).fetchall()
            if not rows:
                break
            yield [(i, ref, owner) for i, ref in rows]
            after = rows[-1][0]


def _walk_chunks(
    read: sqlite3.Connection, top: int, ids: Sequence[int] | None = None
) -> Iterator[tuple[int, int, str, bytes]]:
    """Chunks in id order up to ``top`` (or ``ids``), a few per read transaction."""
    step = max(1, WALK_ROWS // 100)
    if ids is not None:
        for n in range(0, len(ids), step):
            part = ids[n : n + step]
            marks = ",".join("?" * len(part))
            yield from read.execute(
                f"SELECT id, import_id, kind, data FROM source_chunks WHERE id IN ({marks})"
                " ORDER BY id",
                part,
            ).fetchall()
        return
    after = 0
    while True:
        rows = read.execute(
            "SELECT id, import_id, kind, data FROM source_chunks WHERE id > ? AND id <= ?"
            " ORDER BY id LIMIT ?",
            (after, top, step),
        ).fetchall()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def compact(
    conn: sqlite3.Connection,
    read: sqlite3.Connection,
    *,
    every: bool = False,
    vacuum: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CompactSummary:
    """Drop source records no track points at and rewrite sparse chunks (see module).

    ``read`` (a second connection to the same catalog) reads while ``conn`` writes, one
    transaction per :data:`GROUP_LINES` lines moved: killed at any moment the catalog is
    consistent, and a re-run finishes the work. An import may run meanwhile. ``every``
    rewrites every chunk holding a dead line, not only those below :data:`SPARSE`
    (leaving no replaced record, say before publishing the catalog). ``progress(done,
    total)`` counts the chunks read. ``vacuum`` then returns the freed pages to the
    filesystem (SQLite ``VACUUM``: needs free disk about twice the packed catalog, for
    its temporary copy and the write-ahead log, and a while on a large one); without it
    they are reused by later imports.

    Nothing sorts the tracks and no read snapshot lasts the whole run: the tracks are
    walked in rowid order in short read transactions (:func:`_walk_tracks`), once for a
    bitmap of the lines each chunk still serves, and, when chunks are to be rewritten,
    once more for the tracks pointing into those, kept in a temporary table keyed by
    their record (as large as what moves, not as the catalog). Records moved meanwhile
    by an import keep their new place: only pointers still at the old one move.
    """
    summary = CompactSummary()
    summary.chunks_before, summary.bytes_before = _totals(read)
    # The chunks there now: those an import beside us (or this run) adds are left alone.
    top = int(read.execute("SELECT coalesce(max(id), 0) FROM source_chunks").fetchone()[0])
    live: dict[int, int] = {}  # chunk id -> bitmap of the lines still pointed at
    for rows in _walk_tracks(read):
        for _, ref, _ in rows:
            chunk, line = divmod(ref, RECORD_REF_LINES)
            if chunk <= top:
                live[chunk] = live.get(chunk, 0) | (1 << line)
    work = _Compactor(conn, summary, 1.0 if every else SPARSE)
    dctx = zstandard.ZstdDecompressor()
    rewrite: list[int] = []  # chunks whose live lines move
    dangling: dict[int, int] = {}  # chunk id -> bitmap of lines past its end
    for done, (chunk_id, import_id, kind, data) in enumerate(_walk_chunks(read, top), 1):
        lines = split_lines(dctx, data)
        bits = live.pop(chunk_id, 0)
        if bits >> len(lines):
            dangling[chunk_id] = bits >> len(lines) << len(lines)
            bits &= (1 << len(lines)) - 1
        if not bits:
            work.chunk(chunk_id, import_id, kind, lines, {})  # dropped
        elif work.rewrites(lines, bits.bit_count()):
            rewrite.append(chunk_id)
        if progress is not None:
            progress(done, summary.chunks_before)
    dangling.update(live)  # tracks pointing at chunks that do not exist
    if rewrite or dangling:
        _move_lines(read, work, dctx, rewrite, dangling, summary)
    work.finish()
    if vacuum:
        conn.execute("VACUUM")
        summary.vacuumed = True
    summary.chunks_after, summary.bytes_after = _totals(conn)
    return summary


def _move_lines(
    read: sqlite3.Connection,
    work: _Compactor,
    dctx: zstandard.ZstdDecompressor,
    rewrite: list[int],
    dangling: dict[int, int],
    summary: CompactSummary,
) -> None:
    """Gather the tracks and playlists pointing into the chunks to rewrite (and count
    those pointing past any chunk), then hand each chunk with its live lines to
    ``work``."""
    moving = set(rewrite)
    read.execute("DROP TABLE IF EXISTS temp.compact_refs")
    read.execute(
        "CREATE TEMP TABLE compact_refs(ref INTEGER, owner INTEGER, id INTEGER,"
        " PRIMARY KEY(ref, owner, id)) WITHOUT ROWID"
    )
    try:
        for rows in _walk_tracks(read):
            keep = []
            for owner_id, ref, owner in rows:
                chunk, line = divmod(ref, RECORD_REF_LINES)
                if chunk in moving:
                    keep.append((ref, owner, owner_id))
                elif dangling.get(chunk, 0) >> line & 1:
                    summary.dangling += 1
            read.executemany("INSERT OR IGNORE INTO temp.compact_refs VALUES (?,?,?)", keep)
        for chunk_id, import_id, kind, data in _walk_chunks(read, 0, rewrite):
            lines = split_lines(dctx, data)
            first = chunk_id * RECORD_REF_LINES
            found: dict[int, list[tuple[int, int, int]]] = {}
            for ref, owner, owner_id in read.execute(
                "SELECT ref, owner, id FROM temp.compact_refs WHERE ref >= ? AND ref < ?"
                " ORDER BY ref, owner, id",
                (first, first + len(lines)),
            ):
                found.setdefault(ref - first, []).append((owner_id, ref, owner))
            work.chunk(chunk_id, import_id, kind, lines, found)
    finally:
        read.execute("DROP TABLE IF EXISTS temp.compact_refs")
