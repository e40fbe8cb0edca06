"""Source records: a re-import stores only what changed; `phonotheca compact` drops
replaced records and merges small chunks without changing what the catalog says."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from phonotheca.archive import Archive
from phonotheca.catalog import importer, records
from phonotheca.catalog.batch import RECORD_REF_LINES
from phonotheca.catalog.export import iter_export_lines
from phonotheca.catalog.schema import MIGRATIONS, apply_migrations
from phonotheca.cli import main
from tests.catalog.test_import import WriteJsonl, load
from tests.catalog.test_roundtrip import kill_at_progress, logical_dump
from tests.conftest import track
from tests.sources.test_listens import csv_file, listens
from tests.sources.test_musicbrainz import FIXTURES, fixture, jsonl
from tests.sources.test_musicbrainz import load as load_mb

N = 3000


def stored_lines(path: Path) -> list[bytes]:
    """Every line kept in source_chunks."""
    conn = sqlite3.connect(path)
    dctx = zstandard.ZstdDecompressor()
    try:
        return [
            line
            for (data,) in conn.execute("SELECT data FROM source_chunks ORDER BY id")
            for line in dctx.decompress(data).split(b"\n")
        ]
    finally:
        conn.close()


def exported(path: Path) -> list[bytes]:
    conn = sqlite3.connect(path)
    try:
        return sorted(iter_export_lines(conn))
    finally:
        conn.close()


def refs_resolve(path: Path) -> bool:
    """Every track's record_ref names a line of an existing chunk."""
    conn = sqlite3.connect(path)
    dctx = zstandard.ZstdDecompressor()
    try:
        sizes = {
            cid: len(dctx.decompress(data).split(b"\n"))
            for cid, data in conn.execute("SELECT id, data FROM source_chunks")
        }
        return all(
            ref // RECORD_REF_LINES in sizes
            and ref % RECORD_REF_LINES < sizes[ref // RECORD_REF_LINES]
            for (ref,) in conn.execute("SELECT record_ref FROM tracks")
        )
    finally:
        conn.close()


def compact(archive: Archive, **kwargs: bool) -> records.CompactSummary:
    conn = archive.connect()
    read = archive.connect(readonly=True)
    try:
        return records.compact(conn, read, **kwargs)
    finally:
        read.close()
        conn.close()


def changed(n: int) -> dict[str, object]:
    return track(n, title=f"Song {n} (remaster)")


def test_a_reimport_stores_only_the_records_that_changed(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    assert len(stored_lines(archive.catalog_path)) == N
    # One record in a hundred changes: each of the file's chunks holds a few of them.
    again = [changed(n) if n % 100 == 7 else track(n) for n in range(N)]
    load(archive, write_jsonl("b.jsonl", again))
    lines = stored_lines(archive.catalog_path)
    assert len(lines) == N + N // 100  # not 2 N: the unchanged lines were not kept again
    assert exported(archive.catalog_path) == sorted(
        json.dumps(r, ensure_ascii=False).encode() for r in again
    )
    assert refs_resolve(archive.catalog_path)


def test_compact_drops_replaced_records_and_changes_nothing_else(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    # Half the records change (every chunk of the first import becomes sparse); a few
    # are replaced once more, so some lines of the second import die too.
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(0, N, 2)]))
    load(archive, write_jsonl("c.jsonl", [track(n, title="Third") for n in range(0, N, 50)]))
    before_dump = logical_dump(archive.catalog_path)
    before_export = exported(archive.catalog_path)
    assert len(stored_lines(archive.catalog_path)) == N + N // 2 + N // 50

    summary = compact(archive)
    # The first import's chunks are half dead; the second's are 96 % alive: kept.
    assert summary.lines_dropped == N // 2
    assert summary.lines_moved == N // 2
    assert summary.chunks_after < summary.chunks_before
    assert summary.bytes_after < summary.bytes_before
    assert summary.dangling == 0
    assert len(stored_lines(archive.catalog_path)) == N + N // 50
    assert exported(archive.catalog_path) == before_export
    assert logical_dump(archive.catalog_path) == before_dump  # search index included
    assert refs_resolve(archive.catalog_path)

    # Nothing left to do: a second run moves nothing.
    again = compact(archive)
    assert (again.lines_dropped, again.lines_moved, again.chunks_rewritten) == (0, 0, 0)
    assert again.chunks_after == summary.chunks_after

    every = compact(archive, every=True)
    assert every.lines_dropped == N // 50
    lines = stored_lines(archive.catalog_path)
    assert len(lines) == N  # one line per track, no other
    assert sorted(lines) == before_export
    assert exported(archive.catalog_path) == before_export
    assert logical_dump(archive.catalog_path) == before_dump
    assert refs_resolve(archive.catalog_path)


def test_compact_merges_the_small_chunks_of_a_reimport(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 500)
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    load(
        archive,
        write_jsonl("b.jsonl", [changed(n) if n % 100 == 7 else track(n) for n in range(N)]),
    )
    conn = sqlite3.connect(archive.catalog_path)
    second = conn.execute("SELECT count(*) FROM source_chunks WHERE import_id = 2").fetchone()[0]
    conn.close()
    assert second > 1  # one small chunk per batch
    before = exported(archive.catalog_path)
    summary = compact(archive)
    assert summary.chunks_rewritten == second
    assert summary.lines_moved == N // 100
    assert summary.chunks_after == summary.chunks_before - second + 1
    assert exported(archive.catalog_path) == before
    assert refs_resolve(archive.catalog_path)


def test_compacting_keeps_imported_listens_and_a_new_record_still_drops_them(
    archive: Archive, write_jsonl: WriteJsonl, tmp_path: Path
) -> None:
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(10)]))
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(1, 10)]))  # track 0 is sparse
    listens(archive, csv_file(tmp_path, "l.csv", "isrc,listen_count\nUSABC0100000,12345\n"))
    query = "SELECT title, listens, listens_import FROM tracks WHERE public_id = 'test:track:0'"
    conn = sqlite3.connect(archive.catalog_path)
    assert conn.execute(query).fetchone() == ("Song 0", 12345, 3)
    ref = conn.execute("SELECT record_ref FROM tracks WHERE public_id = 'test:track:0'").fetchone()
    summary = compact(archive)
    assert summary.lines_moved >= 1
    assert (
        conn.execute("SELECT record_ref FROM tracks WHERE public_id = 'test:track:0'").fetchone()
        != ref
    )
    assert conn.execute(query).fetchone() == ("Song 0", 12345, 3)  # moved, not replaced
    conn.close()
    load(archive, write_jsonl("c.jsonl", [changed(0)]))
    conn = sqlite3.connect(archive.catalog_path)
    assert conn.execute(query).fetchone() == ("Song 0 (remaster)", 0, None)
    conn.close()


def test_a_v3_catalog_is_migrated_to_the_trigger_that_ignores_moves(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "c.sqlite3")
    apply_migrations(conn, MIGRATIONS[:3], 0)
    conn.execute(
        "INSERT INTO tracks(id, public_id, title, artist_credit, fingerprint, record_ref,"
        " listens, listens_import) VALUES (1, 't', 'T', '', 5, 1024, 9, 2)"
    )
    conn.execute("UPDATE tracks SET record_ref = 2048 WHERE id = 1")
    assert conn.execute("SELECT listens_import FROM tracks").fetchone() == (None,)  # v3
    conn.execute("UPDATE tracks SET listens_import = 2")
    apply_migrations(conn, MIGRATIONS, 3)
    conn.execute("UPDATE tracks SET record_ref = 4096 WHERE id = 1")
    assert conn.execute("SELECT listens_import FROM tracks").fetchone() == (2,)  # a move
    conn.execute("UPDATE tracks SET record_ref = 1024, fingerprint = 6 WHERE id = 1")
    assert conn.execute("SELECT listens_import FROM tracks").fetchone() == (None,)  # a record
    conn.close()


def test_musicbrainz_records_shared_by_a_release_s_tracks(archive: Archive, tmp_path: Path) -> None:
    load_mb(archive, FIXTURES / "release.json")
    doc = fixture("release.json")
    doc["title"] = doc["title"] + " (deluxe)"
    load_mb(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    before = logical_dump(archive.catalog_path)
    before_export = exported(archive.catalog_path)
    summary = compact(archive)
    assert summary.chunks_dropped == 1  # the first document: none of its tracks use it
    assert logical_dump(archive.catalog_path) == before
    assert exported(archive.catalog_path) == before_export
    assert refs_resolve(archive.catalog_path)


def test_a_track_replaced_while_compacting_keeps_its_new_record(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(1, N, 2)]))
    late = write_jsonl("c.jsonl", [track(0, title="Replaced meanwhile")])
    conn = archive.connect()
    read = archive.connect(readonly=True)
    imported = []

    def progress(done: int, total: int) -> None:
        if not imported:  # the compaction's snapshot is taken: an import runs beside it
            imported.extend(load(archive, late))

    try:
        records.compact(conn, read, progress=progress)
    finally:
        read.close()
        conn.close()
    assert imported
    lines = exported(archive.catalog_path)
    assert b'"title": "Replaced meanwhile"' in b"".join(lines)
    assert len(lines) == N
    assert refs_resolve(archive.catalog_path)


def test_cli_compact(archive: Archive, write_jsonl: WriteJsonl) -> None:
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(100)]))
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(100)]))
    runner = CliRunner()
    result = runner.invoke(main, ["compact", "--archive", str(archive.root), "--json", "--vacuum"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["chunks_dropped"] == 1
    assert summary["lines_dropped"] == 100
    assert summary["vacuumed"] is True
    result = runner.invoke(main, ["compact", "--archive", str(archive.root)])
    assert result.exit_code == 0, result.output
    assert "1 chunks" in result.output and "0 replaced records dropped" in result.output


def _compact_cmd(archive: Path) -> list[str]:
    return [sys.executable, "-m", "phonotheca.cli", "compact", "--archive", str(archive), "--json"]


def _new_chunks(archive: Path, above: int) -> int:
    try:
        conn = sqlite3.connect(f"file:{archive / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(
                conn.execute(
                    "SELECT count(*) FROM source_chunks WHERE id > ?", (above,)
                ).fetchone()[0]
            )
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_and_rerun_equals_an_uninterrupted_compaction(
    archive: Archive, write_jsonl: WriteJsonl, tmp_path: Path
) -> None:
    n = 40_000
    load(archive, write_jsonl("a.jsonl", [track(i) for i in range(n)]))
    load(archive, write_jsonl("b.jsonl", [changed(i) for i in range(0, n, 2)]))
    conn = sqlite3.connect(archive.catalog_path)
    top = conn.execute("SELECT max(id) FROM source_chunks").fetchone()[0]
    conn.close()
    reference, victim = tmp_path / "reference", tmp_path / "victim"
    shutil.copytree(archive.root, reference)
    shutil.copytree(archive.root, victim)
    subprocess.run(_compact_cmd(reference), check=True, capture_output=True)

    # Small groups: many transactions to be killed between and inside.
    env = dict(os.environ, PHONOTHECA_TEST_COMPACT_GROUP="200")
    kills = kill_at_progress(
        _compact_cmd(victim), env, lambda: _new_chunks(victim, top), (1, 5, 15), poll=0.002
    )
    assert kills >= 2, "the compaction finished before it could be killed"
    done = subprocess.run(_compact_cmd(victim), env=env, check=True, capture_output=True)
    assert json.loads(done.stdout)["dangling"] == 0
    for path in (reference, victim):
        assert refs_resolve(path / "catalog.sqlite3")
    assert logical_dump(victim / "catalog.sqlite3") == logical_dump(reference / "catalog.sqlite3")
    assert exported(victim / "catalog.sqlite3") == exported(reference / "catalog.sqlite3")
    assert sorted(stored_lines(victim / "catalog.sqlite3")) == sorted(
        stored_lines(reference / "catalog.sqlite3")
    )
    check = sqlite3.connect(victim / "catalog.sqlite3")
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def test_the_published_catalog_holds_no_replaced_record(
    archive: Archive, write_jsonl: WriteJsonl, tmp_path: Path
) -> None:
    from phonotheca.catalog.release_db import released_records, write_release
    from phonotheca.torrents.metadata import content_hash, snapshot_catalog

    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(0, N, 10)]))
    assert len(stored_lines(archive.catalog_path)) == N + N // 10
    snapshot = tmp_path / "snapshot.sqlite3"
    snapshot_catalog(archive.catalog_path, snapshot)
    one, two = tmp_path / "one.sqlite3", tmp_path / "two.sqlite3"
    write_release(snapshot, one)
    write_release(snapshot, two)
    conn = sqlite3.connect(one)
    try:
        assert len(list(released_records(conn))) == N
    finally:
        conn.close()
    assert len(stored_lines(archive.catalog_path)) == N + N // 10  # the live one is as it was
    assert content_hash(one) == content_hash(two)  # the same catalog gives the same release
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(("-wal", "-shm")))
    assert left == []  # rollback-journal files, as published


def test_compaction_sorts_no_tracks_and_holds_no_snapshot_for_its_run(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It walks the tracks in rowid order in short read transactions: no statement of the
    reading connection sorts (no temporary B-tree in its plan), and between its batches
    that connection holds no transaction, so no snapshot lasts the whole run."""
    load(archive, write_jsonl("a.jsonl", [track(n) for n in range(N)]))
    load(archive, write_jsonl("b.jsonl", [changed(n) for n in range(1, N, 2)]))
    monkeypatch.setattr(records, "WALK_ROWS", 200)  # many batches
    conn = archive.connect()
    read = archive.connect(readonly=True)
    statements: list[str] = []
    open_between: list[bool] = []
    read.set_trace_callback(statements.append)
    walk = records._walk_tracks

    def watched(read: sqlite3.Connection):  # type: ignore[no-untyped-def]
        for rows in walk(read):
            open_between.append(read.in_transaction)
            yield rows

    monkeypatch.setattr(records, "_walk_tracks", watched)
    try:
        summary = records.compact(conn, read)
        read.set_trace_callback(None)
        assert summary.lines_dropped == N // 2 and summary.dangling == 0
        assert len(open_between) >= 2 * N // 200  # two walks of many batches ...
        assert not any(open_between)  # ... none inside a transaction
        reads = {s for s in statements if s.lstrip().upper().startswith("SELECT")}
        assert any("FROM tracks" in s for s in reads)
        for sql in reads - {s for s in reads if "compact_refs" in s}:  # a dropped temp table
            plan = " ".join(r[3] for r in read.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "TEMP B-TREE" not in plan, (sql, plan)
    finally:
        read.close()
        conn.close()
    assert len(exported(archive.catalog_path)) == N
    assert refs_resolve(archive.catalog_path)
