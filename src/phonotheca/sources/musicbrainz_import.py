"""Read MusicBrainz JSON dumps and import them.

Inputs: a file of one document per line (``.jsonl``, plain or compressed: ``.zst``,
``.gz``, ``.bz2``, ``.xz``), a single pretty-printed document (``.json``, as the web
service returns it), or a dump archive itself (``release.tar.xz``, ``recording.tar.xz``):
the archive is streamed (``tarfile`` stream mode over
:mod:`phonotheca.sources.compressed`) and its ``mbdump/release`` or ``mbdump/recording``
member read line by line, never unpacked to disk or memory. An input that ends early or
is damaged raises :class:`~phonotheca.sources.compressed.DamagedInput` once the documents
before the break are imported.

A file of releases goes through the generic importer (:func:`import_lines` with
:func:`~phonotheca.sources.musicbrainz.prepare_releases`): batches, worker processes,
rejects, resume; a release's track takes over the standalone track of its recording
(``Batch.claims``). A file of recordings changes the tracks of its recordings already in
the catalog (their ISRCs and aliases, a missing duration) with a set-based update per
block of documents, and loads the recordings on no release as standalone tracks
(:func:`~phonotheca.sources.musicbrainz.prepare_recordings`, through the loader).
"""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec

from phonotheca.catalog import schema
from phonotheca.catalog.batch import Batch, Reject
from phonotheca.catalog.entities import lookup
from phonotheca.catalog.importer import (
    ImportRejected,
    ImportSummary,
    Progress,
    RejectsFile,
    import_lines,
    save_progress,
)
from phonotheca.catalog.load import Loader
from phonotheca.catalog.record import RecordError
from phonotheca.catalog.search import index_tracks, unindex_tracks
from phonotheca.sources.compressed import (
    DamagedInput,
    InputStream,
    Readable,
    SourceError,
    read_pieces,
    stem,
)
from phonotheca.sources.compressed import open_input as open_compressed
from phonotheca.sources.jsonl import file_fingerprint, line_blocks
from phonotheca.sources.musicbrainz import (
    MAX_DOCUMENT_BYTES,
    STANDALONE_PREFIX,
    DocumentKind,
    document_kind,
    parse_recording,
    prepare_recordings,
    prepare_releases,
)

BLOCK_BYTES = 8 << 20
"""A block of documents ends after this many bytes whatever the number of documents asked
for: a batch in flight stays bounded (a release document is ~10 KiB, not a JSONL line)."""
DUMP_MEMBERS = ("mbdump/release", "mbdump/recording")
RECORDINGS_PER_BLOCK = 10_000
MEMBER_PIECE = 16 << 10
"""Bytes of a dump archive's member read at a time (see :class:`_Member`)."""


@dataclass
class _Input:
    stream: InputStream
    """The file's decompressed bytes; its ``position`` is the progress."""
    lines: Readable | None
    """Documents one per line; None for a single document."""
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


class _Member(io.RawIOBase):
    """A tar member's bytes, read so that a break in the compressed stream loses little.

    tarfile's stream reader drops what a read gathered when its source raises, so the
    member is read :data:`MEMBER_PIECE` bytes at a time and the pieces before a break are
    returned first (:class:`DamagedInput` comes with the next read). A tar that ends
    inside the member is a :class:`DamagedInput` too; and once the member is read, the
    rest of the compressed stream is checked to its end, where gzip and zstd keep the
    checksum of what was read.
    """

    def __init__(self, member: IO[bytes], stream: InputStream, name: str) -> None:
        super().__init__()
        self._member = member
        self._stream = stream
        self._name = name
        self._error: DamagedInput | None = None
        self._checked = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._error is not None:
            raise self._error
        data, error = read_pieces(self._piece, size, MEMBER_PIECE)
        if error is not None:
            self._error = error
            if not data:
                raise error
        return data

    def _piece(self, size: int) -> bytes:
        s = self._stream
        try:
            piece = self._member.read(size)
        except tarfile.ReadError as exc:
            found = s.damage_ahead()
            if found is not None:
                raise found from exc
            raise DamagedInput(
                s.path,
                s.codec or "tar",
                s.position,
                s.size,
                f"the tar archive ends inside {self._name}: {exc}",
                truncated=s.codec is None,
            ) from exc
        if not piece and not self._checked:
            self._checked = True
            found = s.damage_ahead(limit=None)
            if found is not None:
                raise found
        return piece


@contextmanager
def open_input(path: Path) -> Iterator[_Input]:
    """Open a MusicBrainz input of any supported shape (see the module docstring)."""
    name = stem(path)
    stream = open_compressed(path)
    with stream:
        if name.endswith(".tar"):
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in tar:
                        member_name = member.name.removeprefix("./")
                        if member.isfile() and member_name in DUMP_MEMBERS:
                            member_file = tar.extractfile(member)
                            assert member_file is not None
                            yield _Input(stream, _Member(member_file, stream, member_name))
                            return
            except tarfile.ReadError as exc:
                found = stream.damage_ahead()
                if found is not None:
                    raise found from exc
                raise SourceError(f"{path}: not a readable tar archive ({exc})") from exc
            raise SourceError(
                f"{path}: no mbdump/release or mbdump/recording inside:"
                " is it a MusicBrainz JSON dump (release.tar.xz)?"
            )
        if name.endswith(".json") and stream.codec is None and stream.size <= MAX_DOCUMENT_BYTES:
            data = stream.read()
            doc = _single_document(data)
            yield _Input(stream, io.BytesIO(data)) if doc is None else _Input(stream, None, doc)
            return
        yield _Input(stream, stream)


def read_documents(
    path: Path, lines_per_block: int, skip_lines: int = 0
) -> Generator[tuple[int, list[bytes], int], None, None]:
    """Yield (number of the first document, documents, input bytes read so far).

    The reader of :func:`import_lines`: documents are numbered from 1 (lines of the
    file, or of the dump's member); the first ``skip_lines`` are skipped (resume). Where
    the input breaks, the documents before the break are yielded, then
    :class:`~phonotheca.sources.compressed.DamagedInput` is raised.
    """
    with open_input(path) as source:
        if source.lines is None:
            if skip_lines < 1 and source.document is not None:
                yield 1, [source.document], source.stream.position
            return
        yield from line_blocks(
            source.lines,
            source.stream,
            lines_per_block,
            skip_lines,
            MAX_DOCUMENT_BYTES,
            BLOCK_BYTES,
        )


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
    """Releases loaded, or recordings applied to the catalog (to the tracks of their
    releases, or as standalone tracks)."""
    rejected: int
    tracks: int
    """Tracks loaded (releases), or tracks of releases whose ISRCs, aliases or duration
    changed (recordings)."""
    invalid_isrc: int
    superseded: int
    rejects_file: str | None
    resumed_at_line: int
    seconds: float
    standalone: int = 0
    """Recordings: those on no release in the catalog, loaded as tracks without an album
    (new, replaced, or unchanged). Releases: tracks of this run that took over the track
    of such a recording."""
    complete: bool = True
    """False when the input broke off (see :class:`ImportSummary`)."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _release_summary(s: ImportSummary) -> MusicBrainzSummary:
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
        standalone=s.taken_over,
        complete=s.complete,
    )


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
    :func:`~phonotheca.catalog.importer.finish_import` once after the last file. An
    input that breaks off raises :class:`DamagedInput` (its ``summary`` a
    :class:`MusicBrainzSummary` with ``complete=False``) after loading what came before.
    """
    if input_kind(path) == "recording":
        return import_recordings(conn, path, rejects_dir, strict=strict, progress=progress)
    try:
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
    except DamagedInput as exc:
        if isinstance(exc.summary, ImportSummary):
            exc.summary = _release_summary(exc.summary)
        raise
    return _release_summary(s)


# -- recordings ------------------------------------------------------------------------------

_RECORDINGS_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS mb_recordings(line INTEGER PRIMARY KEY,"
    " mbid TEXT NOT NULL, isrc TEXT, isrcs TEXT, length INTEGER, aliases TEXT)"
)
_HITS = "temp.mb_hits h JOIN temp.mb_recordings r ON r.line = h.line"
_RecordingRow = tuple[int, str, str | None, str | None, int | None, str | None]


def _apply_recordings(
    conn: sqlite3.Connection, rows: list[_RecordingRow], search: bool
) -> tuple[list[int], int, int]:
    """Apply a block of recordings to the tracks of their releases; return (lines of the
    recordings on no release: their standalone tracks are loaded next, documents
    superseded by a later one of the same recording, tracks changed)."""
    conn.execute("DELETE FROM temp.mb_recordings")
    conn.executemany("INSERT INTO temp.mb_recordings VALUES (?,?,?,?,?,?)", rows)
    superseded = conn.execute(
        "DELETE FROM temp.mb_recordings WHERE line NOT IN"
        " (SELECT max(line) FROM temp.mb_recordings GROUP BY mbid)"
    ).rowcount
    conn.execute("DROP TABLE IF EXISTS temp.mb_hits")
    # The tracks of the recording on releases: not its own standalone track, whose
    # record the document is (it is loaded again, as a record, by the caller).
    conn.execute(
        "CREATE TEMP TABLE mb_hits AS SELECT r.line, e.entity_id AS track_id"
        " FROM temp.mb_recordings r JOIN external_ids e ON e.scheme = 'musicbrainz_recording'"
        " AND e.value = r.mbid AND e.entity = 'track'"
        " JOIN tracks t ON t.id = e.entity_id"
        f" WHERE t.public_id != '{STANDALONE_PREFIX}' || r.mbid"
    )
    unmatched = [
        line
        for (line,) in conn.execute(
            "SELECT line FROM temp.mb_recordings WHERE line NOT IN (SELECT line FROM temp.mb_hits)"
            " ORDER BY line"
        )
    ]
    # Track titles and lengths are the release's own (a track may be an edit or printed
    # differently); ISRCs belong to the recording. A track without a length takes it.
    changed = {
        track_id
        for (track_id,) in conn.execute(
            "UPDATE tracks SET isrc = coalesce(r.isrc, tracks.isrc),"
            " duration_ms = coalesce(tracks.duration_ms, r.length)"
            f" FROM {_HITS} WHERE tracks.id = h.track_id"
            " AND (tracks.isrc IS NOT coalesce(r.isrc, tracks.isrc)"
            "      OR (tracks.duration_ms IS NULL AND r.length IS NOT NULL))"
            " RETURNING tracks.id"
        )
    }
    conn.execute(
        "DELETE FROM external_ids WHERE entity = 'track' AND scheme = 'isrc' AND entity_id IN"
        f" (SELECT h.track_id FROM {_HITS} WHERE r.isrcs IS NOT NULL)"
    )
    conn.execute(
        "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
        f" SELECT 'track', h.track_id, 'isrc', j.value FROM {_HITS}, json_each(r.isrcs) j"
        " WHERE r.isrcs IS NOT NULL"
    )
    changed |= _apply_aliases(conn, search)
    return unmatched, superseded, len(changed)


def _apply_aliases(conn: sqlite3.Connection, search: bool) -> set[int]:
    """Give the tracks of ``temp.mb_hits`` their recording's aliases, when the document
    lists aliases and they differ; returns the tracks changed. Their search entries
    follow (a contentless index forgets a row only when told the text it indexed)."""
    conn.execute("DROP TABLE IF EXISTS temp.mb_alias_rows")
    conn.execute(
        "CREATE TEMP TABLE mb_alias_rows AS SELECT h.track_id,"
        " json_extract(j.value, '$[0]') AS name, json_extract(j.value, '$[1]') AS sort_name,"
        " json_extract(j.value, '$[2]') AS locale"
        f" FROM {_HITS}, json_each(r.aliases) j WHERE r.aliases IS NOT NULL"
    )
    ids = [
        track_id
        for (track_id,) in conn.execute(
            f"SELECT DISTINCT h.track_id FROM {_HITS} WHERE r.aliases IS NOT NULL AND ("
            " EXISTS (SELECT name, sort_name, locale FROM temp.mb_alias_rows a"
            "         WHERE a.track_id = h.track_id"
            "         EXCEPT SELECT name, sort_name, locale FROM track_aliases x"
            "         WHERE x.track_id = h.track_id)"
            " OR EXISTS (SELECT name, sort_name, locale FROM track_aliases x"
            "            WHERE x.track_id = h.track_id"
            "            EXCEPT SELECT name, sort_name, locale FROM temp.mb_alias_rows a"
            "            WHERE a.track_id = h.track_id))"
        )
    ]
    if not ids:
        return set()
    where = ("t.id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    if search:
        unindex_tracks(conn, *where)
    conn.execute(
        "DELETE FROM track_aliases WHERE track_id IN (SELECT value FROM json_each(?))",
        where[1],
    )
    conn.execute(
        "INSERT OR IGNORE INTO track_aliases(track_id, name, sort_name, locale)"
        " SELECT track_id, name, sort_name, locale FROM temp.mb_alias_rows"
        " WHERE track_id IN (SELECT value FROM json_each(?))",
        where[1],
    )
    if search:
        index_tracks(conn, *where)
    return set(ids)


def _only_new_artists(conn: sqlite3.Connection, batch: Batch) -> None:
    """Keep in ``batch`` only the artists the catalog does not hold yet: a recording
    document adds the artists it credits, but never rewrites one. Their records come from
    releases, and a recording document's artist may carry less (no aliases)."""
    if batch.artists:
        known = lookup(conn, "artists", "id", list(batch.artists))
        for pid, _ in known:
            del batch.artists[str(pid)]


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
    """Apply recording documents to the catalog (docs/FORMAT.md §6.4).

    A recording with tracks on releases in the catalog (``external_ids``
    ``musicbrainz_recording`` equal to the document's id) gives them its ISRCs
    (``tracks.isrc`` the first valid one, all of them in ``external_ids``), its aliases,
    and its length when a track has none. A recording on no loaded release becomes a
    track without an album, ``mb:recording:<id>`` (:func:`prepare_recordings`), which a
    release holding the recording takes over when it is imported. Not resumable: a
    re-run applies the same values again, and changes nothing.
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
    loader = Loader(conn, import_id, "musicbrainz-recording")
    search = loader.maintain_search
    read = loaded = rejected = invalid = superseded = changed = standalone = 0
    damage: DamagedInput | None = None
    try:
        for first, docs, pos in read_documents(path, RECORDINGS_PER_BLOCK):
            rows: list[_RecordingRow] = []
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
                aliases = None if rec.aliases is None else json.dumps(rec.aliases)
                rows.append((n, rec.mbid, rec.isrc, isrcs, rec.length, aliases))
                by_line[n] = doc
            if strict and bad:
                raise ImportRejected(path, bad[0])
            if not strict:
                conn.execute("BEGIN IMMEDIATE")
            try:
                unmatched, dropped, n_changed = _apply_recordings(conn, rows, search)
                alone = prepare_recordings([(n, by_line[n]) for n in unmatched])
                if strict and alone.rejects:
                    raise ImportRejected(path, alone.rejects[0])
                _only_new_artists(conn, alone)
                loader.write(alone)
                superseded += dropped
                changed += n_changed
                standalone += alone.track_count
                bad += alone.rejects
                loaded += len(rows) - len(alone.rejects)
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
    except DamagedInput as exc:
        damage = exc
    finally:
        if rejects is not None:
            rejects.close()
    summary = MusicBrainzSummary(
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
        standalone=standalone,
        complete=damage is None,
    )
    if damage is not None:
        damage.summary = summary
        raise damage
    return summary
