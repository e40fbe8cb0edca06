"""Listen counts per recording (ListenBrainz popularity data) as a source.

Rows name a recording by MusicBrainz id (``recording_mbid``) or ISRC (``isrc``) and give
its ``listen_count`` and optionally its ``user_count`` (the ``total_listen_count`` and
``total_user_count`` of the ListenBrainz API are accepted too), in CSV (one row a line,
a header first), JSONL or Parquet; CSV and JSONL plain or compressed (``.zst``, ``.gz``,
``.bz2``, ``.xz``: :mod:`phonotheca.sources.compressed`). A file that breaks off raises
:class:`~phonotheca.sources.compressed.DamagedInput` once the rows before the break are
applied.

Everything is set-based: rows go in chunks into a temporary table, are matched with two
joins and applied with one ``UPDATE ... FROM``; memory is bounded by the chunk. A
recording's count is stored on ONE track of the recording, its *carrier* (the
lowest rowid among the tracks of that recording id, or of that ISRC), and not on its
other releases: the planner groups a recording's tracks and sums their listens, so
giving every release the full count would multiply it (docs/FORMAT.md §7).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec

from phonotheca.catalog import schema
from phonotheca.catalog.batch import Reject
from phonotheca.catalog.importer import RejectsFile
from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.search import (
    BUCKET_SQL,
    index_tracks,
    mark_search_stale,
    search_is_stale,
    unindex_tracks,
)
from phonotheca.sources.compressed import (
    CODECS,
    DamagedInput,
    SourceError,
    codec_of,
    open_input,
    stem,
)
from phonotheca.sources.jsonl import file_fingerprint

ROWS_PER_CHUNK = 50_000
MAX_COUNT = 1 << 62
# Past this share of the catalog, moving tracks in the search index one by one costs
# more than one rebuild at the end (finish_import).
REBUILD_SHARE = 0.1
_BYTES_PER_ROW = 50  # a CSV row of an mbid and two counts, to guess a file's row count
MBID_COLUMNS = ("recording_mbid",)
ISRC_COLUMNS = ("isrc",)
LISTEN_COLUMNS = ("listen_count", "total_listen_count")
USER_COLUMNS = ("user_count", "total_user_count")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_INT = re.compile(r"[+-]?\d+")


def popularity_from_listens(listens: int) -> int:
    """Popularity 0–100 from a listen count: ``min(100, round(20 × log10(1 + listens)))``.

    The inverse of the planner's ``estimate_listens`` (``10^(p/20) − 1``), so a popularity
    derived here estimates back to about the same listens; ×10 listens is +20 points.
    Rounding is half up.
    """
    return min(100, math.floor(20 * math.log10(1 + listens) + 0.5))


class _BadRow(ValueError):
    pass


# (line, mbid, isrc, listen count, user count, popularity)
Row = tuple[int, str | None, str | None, int, int | None, int]
# (line, recording_mbid, isrc, listen_count, user_count, the record for a reject);
# a missing column is None, a missing record is made from the values (Parquet).
RawRow = tuple[int, object, object, object, object, bytes | None]


def _count(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _BadRow(f"{name} {value!r} is not an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise _BadRow(f"{name} {value!r} is not an integer")
        n = int(value)
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        n = int(value)
    else:
        raise _BadRow(f"{name} {value!r} is not an integer")
    if n < 0:
        raise _BadRow(f"{name} {n} is negative")
    if n > MAX_COUNT:
        raise _BadRow(f"{name} {n} is too large")
    return n


def parse_row(line: int, mbid: object, isrc: object, listens: object, users: object) -> Row:
    """Validate one row; raises ``ValueError`` whose message names the bad field."""
    recording = None
    if mbid is not None and mbid != "":
        if not isinstance(mbid, str) or not _UUID.fullmatch(mbid.strip().lower()):
            raise _BadRow(f"recording_mbid {mbid!r} is not a MusicBrainz id (a UUID)")
        recording = mbid.strip().lower()
    code = None
    if isrc is not None and isrc != "":
        if not isinstance(isrc, str):
            raise _BadRow(f"isrc {isrc!r} is not a string")
        value, valid = parse_isrc(isrc.strip())
        if valid:
            code = value
        elif recording is None:
            raise _BadRow(f"isrc {isrc!r} is not a valid ISRC")
    if recording is None and code is None:
        raise _BadRow("no recording_mbid or isrc")
    n = _count(listens, "listen_count")
    if n is None:
        raise _BadRow("missing listen_count")
    return (line, recording, code, n, _count(users, "user_count"), popularity_from_listens(n))


# -- reading ---------------------------------------------------------------------------------


def _columns(path: Path, names: list[str]) -> tuple[int | None, int | None, int, int | None]:
    """Positions of (mbid, isrc, listen count, user count) among a file's column names."""
    folded = [n.strip().lower() for n in names]

    def find(options: tuple[str, ...]) -> int | None:
        return next((folded.index(o) for o in options if o in folded), None)

    mbid, isrc, listens, users = (
        find(MBID_COLUMNS),
        find(ISRC_COLUMNS),
        find(LISTEN_COLUMNS),
        find(USER_COLUMNS),
    )
    if listens is None or (mbid is None and isrc is None):
        raise SourceError(
            f"{path}: needs the columns recording_mbid or isrc, and listen_count"
            f" (found: {', '.join(names) or 'none'})"
        )
    return mbid, isrc, listens, users


def _pick(fields: list[Any], i: int | None) -> object:
    return fields[i] if i is not None and i < len(fields) else None


def _csv_rows(path: Path) -> Iterator[RawRow]:
    with open_input(path) as stream:
        lines = io.BufferedReader(cast(Any, stream), 1 << 20)
        header = lines.readline().decode("utf-8-sig", "replace").rstrip("\r\n")
        cols = _columns(path, next(csv.reader([header]), []))
        for n, data in enumerate(lines, 2):
            text = data.rstrip(b"\r\n")
            if not text.strip():
                continue
            try:
                s = text.decode("utf-8")
            except UnicodeDecodeError:
                yield n, None, None, None, None, text  # rejected as missing everything
                continue
            fields = s.split(",") if '"' not in s else next(csv.reader([s]))
            yield n, *(_pick(fields, i) for i in cols), text  # type: ignore[misc]


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    with open_input(path) as stream:
        lines = io.BufferedReader(cast(Any, stream), 1 << 20)
        for n, data in enumerate(lines, 1):
            text = data.rstrip(b"\r\n")
            if not text.strip():
                continue
            try:
                obj = msgspec.json.decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                obj = None
            if not isinstance(obj, dict):
                yield n, None, None, None, None, text
                continue

            def get(options: tuple[str, ...], obj: dict[str, Any] = obj) -> object:
                return next((obj[o] for o in options if o in obj), None)

            yield (
                n,
                get(MBID_COLUMNS),
                get(ISRC_COLUMNS),
                get(LISTEN_COLUMNS),
                get(USER_COLUMNS),
                text,
            )


def _parquet_rows(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for an unreadable file
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = list(pf.schema_arrow.names)
    cols = _columns(path, names)
    wanted = [names[i] for i in cols if i is not None]
    n = 0
    size = path.stat().st_size
    for group in range(pf.num_row_groups):
        batches = pf.iter_batches(batch_size=ROWS_PER_CHUNK, columns=wanted, row_groups=[group])
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:  # pyarrow raises OSError, ArrowInvalid, ... for bad pages
                offset = pf.metadata.row_group(group).column(0).file_offset
                raise DamagedInput(
                    path, "parquet", offset, size, f"row group {group}: {exc}", truncated=False
                ) from exc
            if batch is None:
                break
            data = batch.to_pydict()
            values = [data[names[i]] if i is not None else None for i in cols]
            for k in range(batch.num_rows):
                n += 1
                yield n, *(v[k] if v is not None else None for v in values), None  # type: ignore[misc]


def iter_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a listens file, by its name: ``.csv``, ``.jsonl``, ``.parquet``; CSV and
    JSONL may be compressed (``.zst``, ``.gz``, ``.bz2``, ``.xz``)."""
    name = stem(path)
    if name.endswith(".csv"):
        return _csv_rows(path)
    if name.endswith((".jsonl", ".json")):
        return _jsonl_rows(path)
    if name.endswith(".parquet") and codec_of(path) is None:
        return _parquet_rows(path)
    if name.endswith(".parquet"):
        raise SourceError(f"{path}: a Parquet file is read as it is: decompress it first")
    raise SourceError(
        f"{path}: unknown format: name it .csv, .jsonl or .parquet (CSV and JSONL may be"
        f" compressed: {', '.join(CODECS)})"
    )


def _estimated_rows(path: Path) -> int:
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return path.stat().st_size // _BYTES_PER_ROW


# -- applying --------------------------------------------------------------------------------

_DDL = """
CREATE TEMP TABLE IF NOT EXISTS listen_rows(
    line INTEGER PRIMARY KEY, mbid TEXT, isrc TEXT, listens INTEGER NOT NULL,
    listeners INTEGER, popularity INTEGER NOT NULL, track_id INTEGER, how TEXT);
CREATE TEMP TABLE IF NOT EXISTS listen_final(
    track_id INTEGER PRIMARY KEY, listens INTEGER, listeners INTEGER, popularity INTEGER,
    popularity_derived INTEGER, listens_import INTEGER);
CREATE TEMP TABLE IF NOT EXISTS listen_moved(track_id INTEGER PRIMARY KEY);
"""
_SOURCED = "CASE WHEN t.popularity_derived = 1 THEN NULL ELSE t.popularity END"
_DERIVE = "t.popularity IS NULL OR t.popularity_derived = 1"
_OTHERS_BY_MBID = """
    FROM temp.listen_rows r
    JOIN external_ids e ON e.scheme = 'musicbrainz_recording' AND e.value = r.mbid
                           AND e.entity = 'track'
    JOIN tracks t ON t.id = e.entity_id
    WHERE r.how = 'mbid' AND t.listens_import IS NOT NULL"""
_OTHERS_BY_ISRC = """
    FROM temp.listen_rows r JOIN tracks t ON t.isrc = r.isrc AND t.isrc_valid = 1
    WHERE r.how = 'isrc' AND t.listens_import IS NOT NULL"""


@dataclass
class _Applied:
    by_mbid: int
    by_isrc: int
    unmatched: list[int]
    updated: int


def _apply(conn: sqlite3.Connection, rows: list[Row], import_id: int, search: bool) -> _Applied:
    """Match a chunk of rows to tracks and update them, in the caller's transaction."""
    for table in ("listen_rows", "listen_final", "listen_moved"):
        conn.execute(f"DELETE FROM temp.{table}")
    conn.executemany(
        "INSERT INTO temp.listen_rows(line, mbid, isrc, listens, listeners, popularity)"
        " VALUES (?,?,?,?,?,?)",
        rows,
    )
    conn.execute(
        "UPDATE temp.listen_rows SET how = 'mbid', track_id ="
        " (SELECT min(e.entity_id) FROM external_ids e WHERE e.scheme = 'musicbrainz_recording'"
        "  AND e.value = listen_rows.mbid AND e.entity = 'track') WHERE mbid IS NOT NULL"
    )
    conn.execute(
        "UPDATE temp.listen_rows SET how = 'isrc', track_id ="
        " (SELECT min(t.id) FROM tracks t WHERE t.isrc = listen_rows.isrc AND t.isrc_valid = 1)"
        " WHERE track_id IS NULL AND isrc IS NOT NULL"
    )
    counts = dict(
        conn.execute(
            "SELECT how, count(*) FROM temp.listen_rows WHERE track_id IS NOT NULL GROUP BY how"
        ).fetchall()
    )
    unmatched = [
        n for (n,) in conn.execute("SELECT line FROM temp.listen_rows WHERE track_id IS NULL")
    ]
    # A later row for the same carrier wins.
    conn.execute(
        "DELETE FROM temp.listen_rows WHERE track_id IS NULL OR line NOT IN"
        " (SELECT max(line) FROM temp.listen_rows GROUP BY track_id)"
    )
    conn.execute(
        f"""INSERT INTO temp.listen_final
        SELECT t.id, r.listens, r.listeners,
               CASE WHEN {_DERIVE} THEN r.popularity ELSE t.popularity END,
               CASE WHEN {_DERIVE} THEN 1 END, ?
        FROM temp.listen_rows r JOIN tracks t ON t.id = r.track_id""",
        (import_id,),
    )
    # The recording's other tracks lose what an earlier listens import gave them.
    for others in (_OTHERS_BY_MBID, _OTHERS_BY_ISRC):
        conn.execute(
            "INSERT OR IGNORE INTO temp.listen_final"
            f" SELECT t.id, NULL, NULL, {_SOURCED}, NULL, NULL {others}"
        )
    conn.execute(
        "DELETE FROM temp.listen_final WHERE track_id IN (SELECT f.track_id"
        " FROM temp.listen_final f JOIN tracks t ON t.id = f.track_id"
        " WHERE t.listens IS f.listens AND t.listeners IS f.listeners"
        " AND t.popularity IS f.popularity AND t.popularity_derived IS f.popularity_derived)"
    )
    # Tracks whose rank bucket changes move in the search index (BUCKET_SQL reads the
    # columns of "t": the new values from listen_final, the old ones from tracks).
    if search:
        conn.execute(
            f"""INSERT INTO temp.listen_moved
            SELECT n.track_id FROM (SELECT t.track_id, {BUCKET_SQL} AS b FROM temp.listen_final t) n
            JOIN (SELECT t.id, {BUCKET_SQL} AS b FROM tracks t
                  WHERE t.id IN (SELECT track_id FROM temp.listen_final)) o ON o.id = n.track_id
            WHERE n.b != o.b"""
        )
        unindex_tracks(conn, "t.id IN (SELECT track_id FROM temp.listen_moved)")
    updated = conn.execute(
        "UPDATE tracks SET listens = f.listens, listeners = f.listeners,"
        " popularity = f.popularity, popularity_derived = f.popularity_derived,"
        " listens_import = f.listens_import FROM temp.listen_final f WHERE tracks.id = f.track_id"
    ).rowcount
    if search:
        index_tracks(conn, "t.id IN (SELECT track_id FROM temp.listen_moved)")
    return _Applied(counts.get("mbid", 0), counts.get("isrc", 0), unmatched, updated)


@dataclass
class ListensSummary:
    path: str
    read: int
    matched_mbid: int
    matched_isrc: int
    unmatched: int
    rejected: int
    """Bad rows (a missing or invalid field); unmatched rows are counted apart."""
    tracks_updated: int
    rejects_file: str | None
    seconds: float
    complete: bool = True
    """False when the input broke off: the counts are of the rows before the break."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_listens(
    conn: sqlite3.Connection,
    path: Path,
    rejects_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> ListensSummary:
    """Import one file of listen counts; each chunk commits on its own.

    Unmatched and bad rows go to the rejects file. A large file (relative to the
    catalog) marks the search index stale instead of moving tracks one by one: call
    :func:`~phonotheca.catalog.importer.finish_import` after the last file. Re-running
    a file is a no-op. ``progress(rows done)`` is called after each chunk. A file that
    breaks off raises :class:`DamagedInput` (``summary``: this summary, ``complete``
    False) once the rows before the break are applied.
    """
    started = time.monotonic()
    # Reading the first row checks the format and the columns before anything is written.
    rows = iter_rows(path)
    try:
        first = next(rows, None)
    except DamagedInput as exc:
        exc.summary = ListensSummary(str(path), 0, 0, 0, 0, 0, 0, None, 0.0, complete=False)
        raise
    rows_iter = itertools.chain([first] if first is not None else [], rows)
    schema.ensure_indexes(conn)  # matching looks ids up in external_ids and tracks.isrc
    with schema.transaction(conn):
        import_id = conn.execute(
            "INSERT INTO imports(kind, path, fingerprint, started_at) VALUES (?,?,?,?)",
            ("listens", str(path), file_fingerprint(path), _now()),
        ).lastrowid
        for stmt in _DDL.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        search = not search_is_stale(conn)
        tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
        if search and _estimated_rows(path) > REBUILD_SHARE * tracks:
            mark_search_stale(conn)
            search = False
    assert import_id is not None
    rejects_path = rejects_dir / f"{import_id:06d}-{path.name}.rejects.jsonl"
    rejects = RejectsFile(rejects_path, 0)
    s = ListensSummary(str(path), 0, 0, 0, 0, 0, 0, None, 0.0)
    damage: DamagedInput | None = None
    try:
        chunk: list[Row] = []
        records: dict[int, bytes] = {}
        bad: list[Reject] = []
        last = 0

        def flush() -> None:
            with schema.transaction(conn):
                applied = _apply(conn, chunk, import_id, search) if chunk else None
                out = list(bad)
                if applied is not None:
                    s.matched_mbid += applied.by_mbid
                    s.matched_isrc += applied.by_isrc
                    s.unmatched += len(applied.unmatched)
                    s.tracks_updated += applied.updated
                    out += [
                        Reject(n, "no track with this recording_mbid or isrc", records[n])
                        for n in applied.unmatched
                    ]
                rejects.write(path, sorted(out, key=lambda r: r.line))
                conn.execute(
                    "UPDATE imports SET lines_done=?, read=?, loaded=?, rejected=?,"
                    " rejects_file=?, rejects_bytes=? WHERE id=?",
                    (
                        last,
                        s.read,
                        s.matched_mbid + s.matched_isrc,
                        s.rejected + s.unmatched,
                        str(rejects_path) if rejects.size else None,
                        rejects.size,
                        import_id,
                    ),
                )
            chunk.clear()
            records.clear()
            bad.clear()
            if progress is not None:
                progress(s.read)

        try:
            for n, mbid, isrc, listens, users, record in rows_iter:
                s.read += 1
                last = n
                if record is None:
                    record = msgspec.json.encode(
                        {
                            "recording_mbid": mbid,
                            "isrc": isrc,
                            "listen_count": listens,
                            "user_count": users,
                        }
                    )
                try:
                    chunk.append(parse_row(n, mbid, isrc, listens, users))
                except ValueError as exc:
                    s.rejected += 1
                    bad.append(Reject(n, str(exc), record))
                else:
                    records[n] = record
                if len(chunk) + len(bad) >= ROWS_PER_CHUNK:
                    flush()
        except DamagedInput as exc:
            damage = exc  # the rows read before the break are applied
        flush()
        if damage is None:
            conn.execute("UPDATE imports SET finished_at=? WHERE id=?", (_now(), import_id))
    finally:
        rejects.close()
    s.rejects_file = str(rejects_path) if rejects.size else None
    s.seconds = round(time.monotonic() - started, 3)
    if damage is not None:
        s.complete = False
        damage.summary = s
        raise damage
    return s
