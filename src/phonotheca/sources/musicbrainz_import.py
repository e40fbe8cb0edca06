"""Read MusicBrainz JSON dumps and import them.

Inputs: a file of one document per line (``.jsonl``, ``.jsonl.zst``, ``.json.xz``), a
single pretty-printed document (``.json``, as the web service returns it), or a dump
archive itself (``release.tar.xz``, ``recording.tar.xz``): the archive is streamed
(``tarfile`` stream mode) and its ``mbdump/release`` or ``mbdump/recording`` member read
line by line, never unpacked to disk or memory.

A file of releases goes through the generic importer (:func:`import_lines` with
:func:`~phonotheca.sources.musicbrainz.prepare_releases`): batches, worker processes,
rejects, resume. A file of recordings changes tracks already in the catalog (their
ISRCs, a missing duration): a set-based update per block of documents.
"""

from __future__ import annotations

import io
import json
import lzma
import sqlite3
import tarfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

import msgspec
import zstandard

from phonotheca.catalog import schema
from phonotheca.catalog.batch import Reject
from phonotheca.catalog.importer import (
    ImportRejected,
    Progress,
    RejectsFile,
    import_lines,
    save_progress,
)
from phonotheca.catalog.record import RecordError
from phonotheca.sources.jsonl import BLOCK, SourceError, bounded_lines, file_fingerprint
from phonotheca.sources.musicbrainz import (
    MAX_DOCUMENT_BYTES,
    DocumentKind,
    document_kind,
    parse_recording,
    prepare_releases,
)

BLOCK_BYTES = 8 << 20
"""A block of documents ends after this many bytes whatever the number of documents asked
for: a batch in flight stays bounded (a release document is ~10 KiB, not a JSONL line)."""
DUMP_MEMBERS = ("mbdump/release", "mbdump/recording")
RECORDINGS_PER_BLOCK = 10_000


@dataclass
class _Input:
    raw: BinaryIO
    """The file as stored: its position is the progress."""
    stream: IO[bytes] | None
    """Documents one per line, decompressed; None for a single document."""
    document: bytes | None = None


def _single_document(data: bytes) -> bytes | None:
    """A whole ``.json`` file as one compact document, or None when it holds lines."""
    try:
        return msgspec.json.encode(msgspec.json.decode(data))
    except (msgspec.DecodeError, UnicodeDecodeError):
        first = data.lstrip().split(b"\n", 1)[0]
        try:
            msgspec.json.decode(first)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return data  # one broken document: it is rejected with its reason
        return None


@contextmanager
def open_input(path: Path) -> Iterator[_Input]:
    """Open a MusicBrainz input of any supported shape (see the module docstring)."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    name = path.name.lower()
    with raw:
        try:
            if ".tar" in name:
                with tarfile.open(fileobj=raw, mode="r|*") as tar:
                    for member in tar:
                        if member.isfile() and member.name.removeprefix("./") in DUMP_MEMBERS:
                            yield _Input(raw, tar.extractfile(member))
                            return
                raise SourceError(
                    f"{path}: no mbdump/release or mbdump/recording inside:"
                    " is it a MusicBrainz JSON dump (release.tar.xz)?"
                )
            elif name.endswith(".zst"):
                dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
                with dctx.stream_reader(raw, read_size=BLOCK, closefd=False) as stream:
                    yield _Input(raw, stream)
            elif name.endswith(".xz"):
                with lzma.open(raw) as stream:
                    yield _Input(raw, stream)
            elif name.endswith(".json") and path.stat().st_size <= MAX_DOCUMENT_BYTES:
                data = raw.read()
                doc = _single_document(data)
                yield _Input(raw, io.BytesIO(data)) if doc is None else _Input(raw, None, doc)
            else:
                yield _Input(raw, raw)
        except (tarfile.TarError, lzma.LZMAError, zstandard.ZstdError, EOFError) as exc:
            raise SourceError(f"{path}: cannot decompress ({exc})") from exc


def read_documents(
    path: Path, lines_per_block: int, skip_lines: int = 0
) -> Generator[tuple[int, list[bytes], int], None, None]:
    """Yield (number of the first document, documents, input bytes read so far).

    The reader of :func:`import_lines`: documents are numbered from 1 (lines of the
    file, or of the dump's member); the first ``skip_lines`` are skipped (resume).
    """
    with open_input(path) as source:
        if source.stream is None:
            if skip_lines < 1 and source.document is not None:
                yield 1, [source.document], source.raw.tell()
            return
        pending: list[bytes] = []
        size = 0
        number = 0
        for line in bounded_lines(source.stream, MAX_DOCUMENT_BYTES):
            number += 1
            if number <= skip_lines:
                continue
            pending.append(line)
            size += len(line)
            if len(pending) >= lines_per_block or size >= BLOCK_BYTES:
                yield number - len(pending) + 1, pending, source.raw.tell()
                pending, size = [], 0
        if pending:
            yield number - len(pending) + 1, pending, source.raw.tell()


def input_kind(path: Path) -> DocumentKind:
    """Whether a file holds releases or recordings, from its first document."""
    blocks = read_documents(path, 16)
    try:
        for _, docs, _ in blocks:
            for doc in docs:
                if doc.strip():
                    return document_kind(doc) or "release"
    finally:
        blocks.close()
    return "release"


@dataclass
class MusicBrainzSummary:
    """What an import of one file did. ``read = loaded + rejected`` counts documents."""

    path: str
    documents: DocumentKind
    read: int
    loaded: int
    """Releases loaded, or recordings applied to tracks of the catalog."""
    rejected: int
    tracks: int
    """Tracks loaded (releases), or tracks whose ISRC or duration changed (recordings)."""
    invalid_isrc: int
    superseded: int
    rejects_file: str | None
    resumed_at_line: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def import_musicbrainz(
    conn: sqlite3.Connection,
    path: Path,
    rejects_dir: Path,
    *,
    strict: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> MusicBrainzSummary:
    """Import one file of MusicBrainz release or recording documents.

    Like :func:`import_lines`: with ``strict`` the caller holds the transaction; call
    :func:`~phonotheca.catalog.importer.finish_import` once after the last file.
    """
    if input_kind(path) == "recording":
        return import_recordings(conn, path, rejects_dir, strict=strict, progress=progress)
    s = import_lines(
        conn,
        path,
        rejects_dir,
        kind="musicbrainz",
        prepare=prepare_releases,
        read_blocks=read_documents,
        strict=strict,
        workers=workers,
        progress=progress,
    )
    return MusicBrainzSummary(
        path=s.path,
        documents="release",
        read=s.read,
        loaded=s.read - s.rejected,
        rejected=s.rejected,
        tracks=s.loaded - s.superseded,
        invalid_isrc=s.invalid_isrc,
        superseded=s.superseded,
        rejects_file=s.rejects_file,
        resumed_at_line=s.resumed_at_line,
        seconds=s.seconds,
    )


# -- recordings ------------------------------------------------------------------------------

_RECORDINGS_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS mb_recordings(line INTEGER PRIMARY KEY,"
    " mbid TEXT NOT NULL, isrc TEXT, isrcs TEXT, length INTEGER)"
)
_HITS = "temp.mb_hits h JOIN temp.mb_recordings r ON r.line = h.line"


def _apply_recordings(
    conn: sqlite3.Connection, rows: list[tuple[int, str, str | None, str | None, int | None]]
) -> tuple[set[int], int, int]:
    """Apply a block of recordings to their tracks; return (lines without a track,
    documents superseded by a later one of the same recording, tracks changed)."""
    conn.execute("DELETE FROM temp.mb_recordings")
    conn.executemany("INSERT INTO temp.mb_recordings VALUES (?,?,?,?,?)", rows)
    superseded = conn.execute(
        "DELETE FROM temp.mb_recordings WHERE line NOT IN"
        " (SELECT max(line) FROM temp.mb_recordings GROUP BY mbid)"
    ).rowcount
    conn.execute("DROP TABLE IF EXISTS temp.mb_hits")
    conn.execute(
        "CREATE TEMP TABLE mb_hits AS SELECT r.line, e.entity_id AS track_id"
        " FROM temp.mb_recordings r JOIN external_ids e ON e.scheme = 'musicbrainz_recording'"
        " AND e.value = r.mbid AND e.entity = 'track'"
    )
    unmatched = {
        line
        for (line,) in conn.execute(
            "SELECT line FROM temp.mb_recordings WHERE line NOT IN (SELECT line FROM temp.mb_hits)"
        )
    }
    # Track titles and lengths are the release's own (a track may be an edit or printed
    # differently); ISRCs belong to the recording. A track without a length takes it.
    changed = conn.execute(
        "UPDATE tracks SET isrc = coalesce(r.isrc, tracks.isrc),"
        " duration_ms = coalesce(tracks.duration_ms, r.length)"
        f" FROM {_HITS} WHERE tracks.id = h.track_id"
        " AND (tracks.isrc IS NOT coalesce(r.isrc, tracks.isrc)"
        "      OR (tracks.duration_ms IS NULL AND r.length IS NOT NULL))"
    ).rowcount
    conn.execute(
        "DELETE FROM external_ids WHERE entity = 'track' AND scheme = 'isrc' AND entity_id IN"
        f" (SELECT h.track_id FROM {_HITS} WHERE r.isrcs IS NOT NULL)"
    )
    conn.execute(
        "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
        f" SELECT 'track', h.track_id, 'isrc', j.value FROM {_HITS}, json_each(r.isrcs) j"
        " WHERE r.isrcs IS NOT NULL"
    )
    return unmatched, superseded, changed


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_recordings(
    conn: sqlite3.Connection,
    path: Path,
    rejects_dir: Path,
    *,
    strict: bool = False,
    progress: Progress | None = None,
) -> MusicBrainzSummary:
    """Apply recording documents to the tracks of those recordings already in the catalog.

    Every track with ``external_ids(musicbrainz_recording)`` equal to the document's id
    takes its ISRCs (``tracks.isrc`` the first valid one, all of them in
    ``external_ids``) and its length when the track has none. A recording without a
    track in the catalog is a reject ("import its releases first"). Not resumable: a
    re-run applies the same values again.
    """
    started = time.monotonic()
    schema.ensure_indexes(conn)  # recordings are matched through external_ids_value
    size = path.stat().st_size
    if not strict:
        conn.execute("BEGIN IMMEDIATE")
    import_id = conn.execute(
        "INSERT INTO imports(kind, path, fingerprint, started_at) VALUES (?,?,?,?)",
        ("musicbrainz-recording", str(path), file_fingerprint(path), _now()),
    ).lastrowid
    conn.execute(_RECORDINGS_DDL)
    if not strict:
        conn.execute("COMMIT")
    assert import_id is not None
    rejects_path = rejects_dir / f"{import_id:06d}-{path.name}.rejects.jsonl"
    rejects = None if strict else RejectsFile(rejects_path, 0)
    read = loaded = rejected = invalid = superseded = changed = 0
    try:
        for first, docs, pos in read_documents(path, RECORDINGS_PER_BLOCK):
            rows: list[tuple[int, str, str | None, str | None, int | None]] = []
            bad: list[Reject] = []
            by_line: dict[int, bytes] = {}
            for n, doc in enumerate(docs, first):
                if not doc.strip():
                    continue
                read += 1
                if len(doc) > MAX_DOCUMENT_BYTES:
                    reason = f"document longer than {MAX_DOCUMENT_BYTES} bytes"
                    bad.append(Reject(n, reason, doc[:4096]))
                    continue
                try:
                    rec = parse_recording(doc)
                except RecordError as exc:
                    bad.append(Reject(n, str(exc), doc))
                    continue
                invalid += rec.isrc_valid is False
                isrcs = json.dumps(rec.isrcs) if rec.isrcs else None
                rows.append((n, rec.mbid, rec.isrc, isrcs, rec.length))
                by_line[n] = doc
            if strict and bad:
                raise ImportRejected(path, bad[0])
            if not strict:
                conn.execute("BEGIN IMMEDIATE")
            try:
                unmatched, dropped, n_changed = _apply_recordings(conn, rows)
                superseded += dropped
                changed += n_changed
                loaded += len(rows) - len(unmatched)
                bad += [
                    Reject(
                        n,
                        "no track of this recording in the catalog: import its releases first",
                        by_line[n],
                    )
                    for n in sorted(unmatched)
                ]
                rejected += len(bad)
                if rejects is not None:
                    rejects.write(path, sorted(bad, key=lambda r: r.line))
                save_progress(
                    conn,
                    import_id,
                    first + len(docs) - 1,
                    (read, loaded, rejected, invalid, superseded),
                    rejects,
                )
            except BaseException:
                if not strict and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if not strict:
                conn.execute("COMMIT")
            if progress is not None:
                progress(first + len(docs) - 1, pos, size)
        conn.execute("UPDATE imports SET finished_at=? WHERE id=?", (_now(), import_id))
    finally:
        if rejects is not None:
            rejects.close()
    return MusicBrainzSummary(
        path=str(path),
        documents="recording",
        read=read,
        loaded=loaded,
        rejected=rejected,
        tracks=changed,
        invalid_isrc=invalid,
        superseded=superseded,
        rejects_file=str(rejects_path) if rejects is not None and rejects.size else None,
        resumed_at_line=0,
        seconds=round(time.monotonic() - started, 3),
    )
