"""A bulk import killed during its load or during the index builds at its end: the re-run
resumes where it stopped (no finished index built again, the load without the indexes)
and gives the catalog of an uninterrupted import."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from phonotheca.archive import Archive, init_archive
from phonotheca.catalog import importer, schema
from phonotheca.catalog.importer import finish_import, import_lines
from phonotheca.synth.catalog import write_catalog
from tests.catalog.test_roundtrip import logical_dump

Step = tuple[str, int | None, int | None]


class Killed(Exception):
    """Stands for kill -9: what the step had not committed is rolled back."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "catalog.jsonl.zst"
    write_catalog(path, 3000, seed=7)
    return path


@pytest.fixture(autouse=True)
def bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulk mode on a small file, in batches of 250 lines."""
    monkeypatch.setattr(importer, "BULK_MIN_BYTES", 0)
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 250)


def full_dump(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's content by public ids, the search index's keys and what it finds,
    and the schema's indexes."""
    out = logical_dump(root / "catalog.sqlite3")
    conn = sqlite3.connect(root / "catalog.sqlite3")
    try:
        out["rank"] = conn.execute("SELECT key, track_id FROM search_rank ORDER BY key").fetchall()
        out["found"] = [
            tuple(r[0] for r in conn.execute(sql, (word,)))
            for word in ("a", "the", "lo", "love", "s")
            for sql in ("SELECT rowid FROM track_search WHERE track_search MATCH ? || '*'",)
        ]
        out["indexes"] = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
        out["meta"] = conn.execute(
            "SELECT key, value FROM meta WHERE key NOT LIKE 'library%' ORDER BY key"
        ).fetchall()
    finally:
        conn.close()
    return out


def run(archive: Archive, path: Path, progress: importer.Progress | None = None) -> list[Step]:
    """The import command's work: import, then the index builds; returns their steps."""
    steps: list[Step] = []
    conn = archive.connect()
    try:
        import_lines(conn, path, archive.rejects_dir, progress=progress)
        finish_import(conn, lambda *step: steps.append(step))
    finally:
        conn.close()
    return steps


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, source: Path
) -> tuple[dict[str, list[tuple[object, ...]]], list[Step]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importer, "BULK_MIN_BYTES", 0)
        mp.setattr(importer, "LINES_PER_BATCH", 250)
        archive = init_archive(tmp_path_factory.mktemp("reference") / "archive", "test")
        steps = run(archive, source)
    return full_dump(archive.root), steps


def _step_names(steps: list[Step]) -> list[str]:
    """The steps in order, without the "(n/m)" counts of secondary indexes (those count
    the indexes still missing)."""
    return list(dict.fromkeys(re.sub(r" \(\d+/\d+\)$", "", name) for name, _, _ in steps))


INDEX_STEPS = [f"index {name}" for name in schema.SECONDARY_INDEXES]
SEARCH_STEPS = ["search index", "search rank index"]


@pytest.mark.parametrize("kill_at", [*INDEX_STEPS, *SEARCH_STEPS])
def test_killed_during_an_index_step_resumes_without_building_finished_ones_again(
    archive: Archive,
    source: Path,
    reference: tuple[dict[str, list[tuple[object, ...]]], list[Step]],
    kill_at: str,
) -> None:
    ref_dump, ref_steps = reference
    assert kill_at in _step_names(ref_steps)
    seen: list[Step] = []

    def killer(name: str, done: int | None, total: int | None) -> None:
        seen.append((name, done, total))
        # The search index dies midway through its rows, the others as they start.
        if _step_names([(name, done, total)]) == [kill_at] and (
            name != "search index" or (done or 0) > 0
        ):
            raise Killed(name)

    conn = archive.connect()
    try:
        import_lines(conn, source, archive.rejects_dir)
        with pytest.raises((Killed, sqlite3.OperationalError)):
            finish_import(conn, killer)
    finally:
        conn.close()
    finished = _step_names(seen)[:-1]  # the steps that ran to their end before the kill

    again = run(archive, source)
    redone = _step_names(again)
    assert redone[0] == kill_at  # resumed at the step that was killed ...
    assert not set(finished) & set(redone)  # ... and no finished one was done again
    assert full_dump(archive.root) == ref_dump


def test_a_resumed_bulk_load_loads_without_the_indexes_and_builds_them_once(
    archive: Archive,
    source: Path,
    reference: tuple[dict[str, list[tuple[object, ...]]], list[Step]],
) -> None:
    ref_dump, ref_steps = reference

    def kill_after_1000_lines(done: int, pos: int, size: int) -> None:
        if done >= 1000:
            raise Killed("load")

    with pytest.raises(Killed):
        run(archive, source, kill_after_1000_lines)
    # Any writable connection migrates the catalog: it must not build the indexes now.
    conn = archive.connect()
    conn.close()
    assert _missing(archive) == list(schema.SECONDARY_INDEXES)

    missing_while_loading: list[list[str]] = []

    def watch(done: int, pos: int, size: int) -> None:
        missing_while_loading.append(_missing(archive))

    conn = archive.connect()
    try:
        summary = import_lines(conn, source, archive.rejects_dir, progress=watch)
        steps: list[Step] = []
        finish_import(conn, lambda *step: steps.append(step))
    finally:
        conn.close()
    assert summary.resumed_at_line == 1000
    assert missing_while_loading  # it did load batches ...
    assert all(m == list(schema.SECONDARY_INDEXES) for m in missing_while_loading)  # ... bare
    assert _step_names(steps) == _step_names(ref_steps)  # each index built once, at the end
    assert full_dump(archive.root) == ref_dump


def test_an_import_between_the_kill_and_the_rerun_restarts_the_search_index(
    archive: Archive,
    source: Path,
    write_jsonl: object,
    tmp_path: Path,
) -> None:
    """The rank keys of a build cut short are not reused once another import changed
    the tracks: the re-run builds them again, with the new tracks."""
    from tests.conftest import track

    def kill_at_the_last_step(name: str, done: int | None, total: int | None) -> None:
        if name == "search rank index":  # the keys and the FTS5 rows are committed
            raise Killed(name)

    conn = archive.connect()
    try:
        import_lines(conn, source, archive.rejects_dir)
        with pytest.raises((Killed, sqlite3.OperationalError)):
            finish_import(conn, kill_at_the_last_step)
        extra = tmp_path / "extra.jsonl"
        extra.write_text("".join(__import__("json").dumps(track(n)) + "\n" for n in (1, 2)))
        import_lines(conn, extra, archive.rejects_dir)
        steps: list[Step] = []
        finish_import(conn, lambda *step: steps.append(step))
        # (the lists are built beside the search index: their step is heard of first)
        assert _step_names(steps) == ["library lists", "search index", "search rank index"]
        ranked = conn.execute("SELECT count(*) FROM search_rank").fetchone()[0]
        tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
        assert ranked == tracks == 3002
    finally:
        conn.close()


def _missing(archive: Archive) -> list[str]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return schema.missing_indexes(conn)
    finally:
        conn.close()


def _index_progress(archive: Path) -> int:
    """How far the index builds at the end of a bulk import are, read from its catalog:
    0 until the load is done (a new catalog has every index before the load drops
    them), then the secondary indexes built, plus one once the search index's rows are
    committed."""
    try:
        conn = sqlite3.connect(f"file:{archive / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=0.1)
        try:
            if not conn.execute("SELECT 1 FROM imports WHERE finished_at IS NOT NULL").fetchone():
                return 0
            built = 6 - len(schema.missing_indexes(conn))
            rows = conn.execute("SELECT 1 FROM meta WHERE key = 'search_build'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return built + (rows is not None)


@pytest.mark.slow
def test_kill_9_during_the_index_builds_and_rerun_equals_an_uninterrupted_import(
    synthetic: Path, tmp_path: Path
) -> None:
    """The real thing: ``import jsonl`` killed -9 as the index builds go on, then run
    again; the re-run does not read the file it had loaded whole."""
    from tests.catalog.test_roundtrip import _import_cmd, kill_at_progress

    env = dict(os.environ, PHONOTHECA_TEST_BATCH_LINES="1000", PHONOTHECA_TEST_BULK_MIN_BYTES="0")
    reference = tmp_path / "reference"
    subprocess.run(_import_cmd(reference, synthetic), env=env, check=True, capture_output=True)
    victim = tmp_path / "victim"
    kills = kill_at_progress(
        # The last kill lands while the search index is filled (6: every secondary index
        # built): once its rows are committed only a short step is left (the library
        # lists are built meanwhile), which a run may finish before it is seen.
        _import_cmd(victim, synthetic),
        env,
        lambda: _index_progress(victim),
        (1, 3, 6),
        0.002,
    )
    assert kills >= 2, "the import finished before it could be killed"
    done = subprocess.run(
        _import_cmd(victim, synthetic), env=env, check=True, capture_output=True, text=True
    )
    summary = json.loads(done.stdout)
    assert summary["resumed_at_line"] == summary["read"] == 20_000  # not read again
    assert full_dump(victim) == full_dump(reference)
    conn = sqlite3.connect(victim / "catalog.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
