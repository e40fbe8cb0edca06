"""The released catalog: a canonical SQLite file holding only what cannot be derived.

Every mirror downloads the metadata release first, so it carries each fact once
(docs/FORMAT.md §12): the tables, without their secondary indexes, the search indexes
(``track_search``, ``search_rank``, ``playlist_search``), the import history
(``imports``) or the source records in the importers' small zstd frames. The source
records a track points at are kept once each, in the order of the first track pointing
at each, as columns (:mod:`phonotheca.catalog.record_columns`: all titles together, all
albums together, an album repeated by the next track an empty entry) in
``record_columns``, with the kind of each line in ``record_runs``: one compression of the
whole file then sees like with like, and two catalogs with the same content give the
same file whatever their history: tables are written in name order, rows in primary-key
order, into a fresh file with a fixed page size and no free pages.

The tables an import of those records rebuilds exactly (checked by the publisher, which
does that import, table by table: :func:`_derivable`) are released empty and named in
``release.derived``: for a catalog loaded from interchange JSONL, the records are then
the whole release, each fact once.

A reader rebuilds a full catalog from it with :func:`derive_catalog`: the records
imported, the other tables copied, source records framed again, indexes and search
indexes built. Each step commits, so a reader killed meanwhile resumes where it stopped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import zstandard

from phonotheca.catalog import importer, record_columns, records, schema, search
from phonotheca.catalog.batch import RECORD_REF_LINES

FORMAT = 3
"""Version of the release layout written (``release`` table, key ``format``). Format 1
was the whole catalog as it stood (before this module); format 2 kept the source records
as plain lines (``source_records``), and is still read."""
READABLE = (2, FORMAT)
PAGE_SIZE = 4096
APPLICATION_ID = 0x50484F4E  # 'PHON'
RELEASE_TABLE = "release"
RUNS_TABLE = "record_runs"
"""Format 3: the kind of the released source lines, as runs of consecutive lines."""
COLUMNS_TABLE = "record_columns"
"""Format 3: the released source lines, blocks of :data:`BLOCK_LINES` as columns."""
RECORDS_TABLE = "source_records"
"""Format 2: the released source lines, one row each."""
RECORD_TABLES = (RUNS_TABLE, COLUMNS_TABLE, RECORDS_TABLE)
BLOCK_LINES = 65536
"""Lines per block of columns: a block is encoded and decoded in memory."""

DERIVED_PREFIXES = (
    search.FTS_TABLE,
    "search_rank",
    "playlist_search",
    "ledger_counts",
    "sqlite_",
)
"""Tables rebuilt from the others on arrival (and never hashed); ``ledger_counts`` is
counted again when the ledger is copied."""
LEFT_OUT = ("imports", "source_chunks", "library_changes", "library_changes_off")
"""The import history, the source records as framed (shipped as columns), and
the journal of changes for the publisher's own library file."""
ROW_FILTERS = {
    "collections": "kind != 'metadata'",
    "meta": "key NOT LIKE 'publish.%' AND key != 'search_stale'",
}
"""Rows the publisher writes about its releases, and state a reader derives."""
DERIVABLE = (
    "album_artists",
    "album_genres",
    "albums",
    "artist_aliases",
    "artists",
    "external_ids",
    "genres",
    "images",
    "track_aliases",
    "track_artists",
    "track_genres",
    "tracks",
)
"""Tables an import of the source records writes: left out of a release when an import
of its source records rebuilds them exactly (:func:`_derivable`)."""
REFERRING = ("tracks", "playlists")
"""Tables whose ``record_ref`` points at a source record, in the order their records are
numbered."""
IMPORT_WORKERS = 2
"""Parsing processes of the import of the source records (``import --workers``'s
default), and encoding processes of their blocks of columns."""
_DERIVE_KEY = "release.derived"
"""``meta`` key of a catalog being derived: the steps done so far, space-separated."""

Progress = Callable[[str, int | None, int | None], None]


class ReleaseError(Exception):
    """A released catalog this program cannot read (another format, a newer schema)."""


def released_tables(conn: sqlite3.Connection, schema_name: str = "main") -> list[str]:
    """The catalog's tables that go into a release, in release order (by name)."""
    return [
        str(name)
        for name, sql in conn.execute(
            f"SELECT name, sql FROM \"{schema_name}\".sqlite_schema WHERE type = 'table'"
            " ORDER BY name"
        )
        if not str(name).startswith(DERIVED_PREFIXES)
        and not str(sql).upper().startswith("CREATE VIRTUAL")
        and name not in LEFT_OUT
    ]


def _columns(
    conn: sqlite3.Connection, table: str, schema_name: str = "main"
) -> list[tuple[str, str, int]]:
    """(name, declared type, primary-key position) of each stored column."""
    return [
        (str(name), str(decl), int(pk))
        for _, name, decl, _, _, pk, hidden in conn.execute(
            f'PRAGMA "{schema_name}".table_xinfo("{table}")'
        )
        if hidden not in (2, 3)  # generated columns are computed, not stored
    ]


def _key_order(columns: list[tuple[str, str, int]]) -> str:
    keys = sorted((pk, name) for name, _, pk in columns if pk)
    return ", ".join(f'"{name}"' for _, name in keys) or "rowid"


def _release_ddl(table: str, columns: list[tuple[str, str, int]]) -> str:
    """A plain table: no constraint that would add an index; an ``INTEGER PRIMARY KEY``
    stays the rowid."""
    keys = [c for c in columns if c[2]]
    alias = len(keys) == 1 and keys[0][1].upper() == "INTEGER"
    defs = [
        f'"{name}" {decl}' + (" PRIMARY KEY" if alias and pk else "") for name, decl, pk in columns
    ]
    return f'CREATE TABLE "{table}"({", ".join(defs)})'


def write_release(snapshot: Path, dest: Path) -> None:
    """Write the canonical release of the catalog ``snapshot`` (already scrubbed) to
    ``dest``, replacing it."""
    dest.unlink(missing_ok=True)
    out = sqlite3.connect(dest)
    out.isolation_level = None
    try:
        out.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        out.execute("PRAGMA journal_mode = OFF")
        out.execute("PRAGMA synchronous = OFF")
        out.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        out.execute("ATTACH DATABASE ? AS cat", (f"{snapshot.resolve().as_uri()}?mode=ro",))
        out.execute("BEGIN")
        version = int(out.execute("PRAGMA cat.user_version").fetchone()[0])
        out.execute(f'CREATE TABLE "{RELEASE_TABLE}"(key TEXT PRIMARY KEY, value) WITHOUT ROWID')
        out.executemany(
            f'INSERT INTO "{RELEASE_TABLE}" VALUES (?, ?)',
            [("format", FORMAT), ("schema_version", version)],
        )
        out.execute(
            f'CREATE TABLE "{RUNS_TABLE}"(run INTEGER PRIMARY KEY, kind TEXT, lines INTEGER)'
        )
        out.execute(
            f'CREATE TABLE "{COLUMNS_TABLE}"'
            "(id INTEGER PRIMARY KEY, block INTEGER, field TEXT, data BLOB)"
        )
        out.execute("CREATE TEMP TABLE refmap(old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
        _write_records(out)
        derived = _derivable(out, dest)
        out.execute(f'INSERT INTO "{RELEASE_TABLE}" VALUES (?, ?)', ("derived", " ".join(derived)))
        for table in released_tables(out, "cat"):
            columns = _columns(out, table, "cat")
            out.execute(_release_ddl(table, columns))
            if table in derived:
                continue
            names = ", ".join(f'"{c[0]}"' for c in columns)
            out.execute(f'INSERT INTO main."{table}"({names}) {_released_rows(table, columns)}')
        out.execute("DROP TABLE temp.refmap")
        out.execute("COMMIT")
        for (name,) in out.execute("SELECT name FROM pragma_database_list WHERE seq > 1"):
            out.execute(f"DETACH DATABASE {name}")
    finally:
        out.close()


def _released_rows(table: str, columns: list[tuple[str, str, int]]) -> str:
    """The query of the rows of ``cat.table`` as released, in key order."""
    select = ", ".join(
        "(SELECT new FROM refmap WHERE old = record_ref)"
        if table in REFERRING and c[0] == "record_ref"
        else f'"{c[0]}"'
        for c in columns
    )
    where = f"WHERE {ROW_FILTERS[table]}" if table in ROW_FILTERS else ""
    return f'SELECT {select} FROM cat."{table}" {where} ORDER BY {_key_order(columns)}'


def _derivable(out: sqlite3.Connection, dest: Path) -> list[str]:
    """The tables an import of the released source records rebuilds exactly as they are.

    The publisher imports them into a scratch catalog (as a reader will) and compares
    table by table, row by row: a table that differs in anything (rows from another
    source, listens imported later, ...) is shipped whole, so what a reader derives is
    always the catalog that was released.
    """
    kinds = {str(k) for (k,) in out.execute(f'SELECT DISTINCT kind FROM "{RUNS_TABLE}"')}
    if kinds != {"jsonl"}:
        return []  # only interchange JSONL is rebuilt by import (others are shipped)
    work = dest.with_name(dest.name + ".derive")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        scratch = work / "catalog.sqlite3"
        conn = schema.connect(scratch)
        try:
            schema.migrate(conn)
            import_records(conn, out, "main", work)
        finally:
            conn.close()
        # Attached until the release is committed (no DETACH inside a transaction); its
        # file is removed meanwhile, and gone once detached.
        out.execute("ATTACH DATABASE ? AS der", (f"{scratch.resolve().as_uri()}?mode=ro",))
        present = set(released_tables(out, "cat"))
        return [t for t in DERIVABLE if t in present and _same_rows(out, t)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _same_rows(out: sqlite3.Connection, table: str) -> bool:
    columns = _columns(out, table, "cat")
    if columns != _columns(out, table, "der"):
        return False
    names = ", ".join(f'"{c[0]}"' for c in columns)
    ours = out.execute(_released_rows(table, columns))
    other = out.cursor().execute(
        f'SELECT {names} FROM der."{table}" ORDER BY {_key_order(columns)}'
    )
    while True:
        a, b = ours.fetchmany(10_000), other.fetchmany(10_000)
        if a != b:
            return False
        if not a:
            return True


def released_records(
    source: sqlite3.Connection, schema_name: str = "main"
) -> Iterator[tuple[int, str, bytes]]:
    """(ref, kind, line) of every released source record of the release in
    ``schema_name`` (format 2 or 3), in ``ref`` order."""
    if _format(source, schema_name) == 2:
        rows = source.execute(
            f'SELECT ref, kind, line FROM "{schema_name}"."{RECORDS_TABLE}" ORDER BY ref'
        )
        for ref, kind, line in rows:
            yield int(ref), str(kind), bytes(line)
        return
    runs = source.cursor().execute(
        f'SELECT kind, lines FROM "{schema_name}"."{RUNS_TABLE}" ORDER BY run'
    )
    kinds = (str(kind) for kind, count in runs for _ in range(int(count)))
    numbering = _Numbering()
    for line in _column_lines(source, schema_name):
        kind = next(kinds, None)
        if kind is None:
            raise ReleaseError(f"{COLUMNS_TABLE}: more lines than {RUNS_TABLE} counts")
        yield numbering.ref(kind), kind, line
    if next(kinds, None) is not None:
        raise ReleaseError(f"{COLUMNS_TABLE}: fewer lines than {RUNS_TABLE} counts")


def _column_lines(source: sqlite3.Connection, schema_name: str) -> Iterator[bytes]:
    block: list[tuple[str, bytes]] = []
    current = None
    rows = source.execute(
        f'SELECT block, field, data FROM "{schema_name}"."{COLUMNS_TABLE}" ORDER BY id'
    )
    try:
        for number, field, data in rows:
            if number != current and block:
                yield from record_columns.decode_block(block)
                block = []
            current = number
            block.append((str(field), bytes(data)))
        yield from record_columns.decode_block(block)
    except record_columns.ColumnsError as exc:
        (path,) = source.execute(
            "SELECT file FROM pragma_database_list WHERE name = ?", (schema_name,)
        ).fetchone()
        raise ReleaseError(
            f"{path}: {COLUMNS_TABLE}, block {current}: {exc}: the release is damaged,"
            " download it again or ask its publisher"
        ) from None


def _format(source: sqlite3.Connection, schema_name: str) -> int:
    row = source.execute(
        f'SELECT value FROM "{schema_name}"."{RELEASE_TABLE}" WHERE key = \'format\''
    ).fetchone()
    return int(row[0])


class _Numbering:
    """Refs of released lines in order: ``chunk × 1024 + line`` of canonical chunks
    (consecutive lines of one kind, as many as the importers put in one), from 1."""

    def __init__(self) -> None:
        self.chunk, self.used, self.kind = 0, 0, ""

    def ref(self, kind: str) -> int:
        if self.chunk == 0 or kind != self.kind or self.used >= _chunk_capacity(kind):
            self.chunk, self.used, self.kind = self.chunk + 1, 0, kind
        self.used += 1
        return self.chunk * RECORD_REF_LINES + self.used - 1


def import_records(
    conn: sqlite3.Connection, source: sqlite3.Connection, schema_name: str, work: Path
) -> None:
    """Import the released source records (:func:`released_records` of ``source``)
    into the catalog behind ``conn``, as ``phonotheca import jsonl`` would, in their
    order. Resumable: a run killed meanwhile resumes the import where it stopped."""
    lines = work / "records.jsonl"
    if not lines.exists():
        partial = lines.with_name(lines.name + ".partial")
        with open(partial, "wb") as f:
            for _, _, line in released_records(source, schema_name):
                f.write(line)
                f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, lines)
    importer.import_lines(conn, lines, work, workers=IMPORT_WORKERS)


def _chunk_capacity(kind: str) -> int:
    return 100 if kind == "musicbrainz" else records.FRAME_LINES


def _write_records(out: sqlite3.Connection) -> None:
    """Every source line a track points at, once, numbered in the order of the first
    track pointing at it (:class:`_Numbering`), as runs of kinds and blocks of columns."""
    runs: list[tuple[str, int]] = []
    for number, streams in enumerate(_encoded(_blocks(_released_lines(out, runs))), 1):
        out.executemany(
            f'INSERT INTO "{COLUMNS_TABLE}"(block, field, data) VALUES (?, ?, ?)',
            [(number, field, data) for field, data in streams],
        )
    out.executemany(
        f'INSERT INTO "{RUNS_TABLE}" VALUES (?, ?, ?)',
        [(n, kind, count) for n, (kind, count) in enumerate(runs, 1)],
    )


def _released_lines(out: sqlite3.Connection, runs: list[tuple[str, int]]) -> Iterator[bytes]:
    """The lines to release, in order, each mapped in ``temp.refmap`` and counted in
    ``runs`` (kind, lines) as it goes."""
    dctx = zstandard.ZstdDecompressor()
    cached: tuple[int, str, list[bytes]] | None = None
    numbering = _Numbering()
    recent: dict[int, int] = {}  # mapped since the last flush; older ones are in refmap
    tables = [t for t in REFERRING if t in released_tables(out, "cat")]
    for table in tables:
        refs = out.execute(
            f'SELECT record_ref FROM cat."{table}" WHERE record_ref IS NOT NULL ORDER BY id'
        )
        for (old,) in refs:
            if (
                old in recent
                or out.execute("SELECT 1 FROM temp.refmap WHERE old = ?", (old,)).fetchone()
            ):
                continue  # the tracks of one MusicBrainz release share their document
            chunk_id, line = divmod(old, RECORD_REF_LINES)
            if cached is None or cached[0] != chunk_id:
                kind, data = out.execute(
                    "SELECT kind, data FROM cat.source_chunks WHERE id = ?", (chunk_id,)
                ).fetchone()
                cached = (chunk_id, str(kind), dctx.decompress(data).split(b"\n"))
            kind = cached[1]
            recent[old] = numbering.ref(kind)
            if runs and runs[-1][0] == kind:
                runs[-1] = (kind, runs[-1][1] + 1)
            else:
                runs.append((kind, 1))
            if len(recent) >= 10_000:
                _flush_refs(out, recent)
            yield cached[2][line]
    _flush_refs(out, recent)


def _flush_refs(out: sqlite3.Connection, recent: dict[int, int]) -> None:
    out.executemany("INSERT INTO temp.refmap VALUES (?, ?)", recent.items())
    recent.clear()


def _blocks(lines: Iterator[bytes]) -> Iterator[list[bytes]]:
    while block := list(itertools.islice(lines, BLOCK_LINES)):
        yield block


def _encoded(blocks: Iterator[list[bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    """:func:`record_columns.encode_block` of each block, in order: in
    :data:`IMPORT_WORKERS` processes when there is more than one block."""
    first = next(blocks, None)
    second = next(blocks, None)
    if first is None or second is None:
        if first is not None:
            yield record_columns.encode_block(first)
        return
    with ProcessPoolExecutor(IMPORT_WORKERS, mp_context=get_context("forkserver")) as pool:
        # A bounded window of blocks in flight: memory does not grow with the catalog.
        window: deque[Future[list[tuple[str, bytes]]]] = deque()
        for block in itertools.chain((first, second), blocks):
            window.append(pool.submit(record_columns.encode_block, block))
            if len(window) > IMPORT_WORKERS:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def check_release(conn: sqlite3.Connection, name: str) -> None:
    """Refuse a released catalog of another format or of a newer schema, naming it."""
    try:
        found = dict(conn.execute(f'SELECT key, value FROM "{RELEASE_TABLE}"').fetchall())
    except sqlite3.DatabaseError:
        found = {}
    fmt = found.get("format")
    if fmt not in READABLE:
        raise ReleaseError(
            f"{name}: metadata release format {fmt if fmt is not None else 'unknown'}, this"
            f" phonotheca reads formats {' and '.join(map(str, READABLE))}: install the"
            " phonotheca version the release's FORMAT.md describes"
        )
    version = int(found.get("schema_version", 0))
    if version > schema.SCHEMA_VERSION:
        raise ReleaseError(
            f"{name}: catalog schema v{version} is newer than this phonotheca's"
            f" (v{schema.SCHEMA_VERSION}): upgrade phonotheca"
        )


def derive_catalog(release: Path, target: Path, progress: Progress | None = None) -> None:
    """Build a full catalog at ``target`` from the released catalog ``release``.

    Resumable: each step commits and is recorded in ``meta`` (``release.derived``), so
    calling it again on the same ``target`` after a kill goes on from the step it was in;
    the secondary indexes and the search index rebuild only what is missing.
    """
    report = progress or (lambda step, done, total: None)
    src = sqlite3.connect(f"{release.resolve().as_uri()}?mode=ro", uri=True)
    try:
        check_release(src, release.name)
    finally:
        src.close()
    conn = schema.connect(target)
    try:
        schema.migrate(conn)
        done = set((schema.get_meta(conn, _DERIVE_KEY) or "").split())
        if "tables" not in done:
            # A catalog left by a kill before the first step ended is started over.
            schema.drop_secondary_indexes(conn)
            with schema.transaction(conn):
                schema.journal_off(conn, "derive")  # a new catalog: its library made in full
        conn.execute("ATTACH DATABASE ? AS rel", (f"{release.resolve().as_uri()}?mode=ro",))
        info = dict(conn.execute(f'SELECT key, value FROM rel."{RELEASE_TABLE}"').fetchall())
        derived = set(str(info.get("derived", "")).split())
        if derived and "import" not in done:
            report("import of the source records", None, None)
            work = target.with_name(target.name + ".import")
            work.mkdir(exist_ok=True)
            import_records(conn, conn, "rel", work)
            with schema.transaction(conn):
                done.add("import")
                schema.set_meta(conn, _DERIVE_KEY, " ".join(sorted(done)))
            shutil.rmtree(work, ignore_errors=True)
        tables = [
            str(n)
            for (n,) in conn.execute(
                "SELECT name FROM rel.sqlite_schema WHERE type = 'table' ORDER BY name"
            )
            if n != RELEASE_TABLE and n not in RECORD_TABLES and n not in derived
        ]
        # The records' step keeps format 2's name: a format 2 unpack resumes alike.
        for n, table in enumerate([*tables, RECORDS_TABLE], 1):
            step = f"table:{table}"
            if step in done:
                continue
            report(f"table {table} ({n}/{len(tables) + 1})", None, None)
            with schema.transaction(conn):
                if table == RECORDS_TABLE:
                    _frame_records(conn)
                else:
                    columns = ", ".join(f'"{c[0]}"' for c in _columns(conn, table, "rel"))
                    if table == "ledger":  # counted once below, not by a trigger per row
                        schema.stop_ledger_counts(conn)
                    conn.execute(f'DELETE FROM main."{table}"')
                    conn.execute(
                        f'INSERT INTO main."{table}"({columns}) SELECT {columns}'
                        f' FROM rel."{table}" ORDER BY rowid'
                    )
                    if table == "ledger":
                        schema.count_ledger(conn)
                        schema.restart_ledger_counts(conn)
                done.add(step)
                schema.set_meta(conn, _DERIVE_KEY, " ".join(sorted(done)))
        conn.execute("DETACH DATABASE rel")
        if "tables" not in done:
            with schema.transaction(conn):
                search.mark_search_stale(conn)
                done.add("tables")
                schema.set_meta(conn, _DERIVE_KEY, " ".join(sorted(done)))
        schema.ensure_indexes(conn, progress)
        search.refresh_search(conn, progress=progress)
        if "playlist_search" not in done:
            report("playlist search index", None, None)
            with schema.transaction(conn):
                conn.execute("INSERT INTO playlist_search(playlist_search) VALUES ('delete-all')")
                conn.execute(
                    "INSERT INTO playlist_search(rowid, title, creator)"
                    " SELECT id, title, creator FROM playlists ORDER BY id"
                )
                done.add("playlist_search")
                schema.set_meta(conn, _DERIVE_KEY, " ".join(sorted(done)))
        with schema.transaction(conn):
            schema.journal_on(conn, "derive")
            schema.set_meta(conn, _DERIVE_KEY, None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _frame_records(conn: sqlite3.Connection) -> None:
    """``source_records`` back into ``source_chunks`` (one import row stands for the
    release: the history of imports is not published)."""
    conn.execute("DELETE FROM source_chunks")
    conn.execute("DELETE FROM imports")
    conn.execute(
        "INSERT INTO imports(id, kind, path, fingerprint, started_at, finished_at)"
        " VALUES (1, 'release', '', '', '', '')"
    )
    cctx = zstandard.ZstdCompressor(level=records.LEVEL)
    rows: list[tuple[int, int, str, bytes]] = []
    for chunk_id, kind, lines in _chunks(conn):
        rows.append((chunk_id, 1, kind, cctx.compress(b"\n".join(lines))))
        if len(rows) >= 1000:
            conn.executemany("INSERT INTO source_chunks VALUES (?, ?, ?, ?)", rows)
            rows.clear()
    conn.executemany("INSERT INTO source_chunks VALUES (?, ?, ?, ?)", rows)


def _chunks(conn: sqlite3.Connection) -> Iterator[tuple[int, str, list[bytes]]]:
    current: tuple[int, str, list[bytes]] | None = None
    for ref, kind, line in released_records(conn, "rel"):
        chunk_id = ref // RECORD_REF_LINES
        if current is None or current[0] != chunk_id:
            if current is not None:
                yield current
            current = (chunk_id, kind, [])
        current[2].append(line)
    if current is not None:
        yield current
