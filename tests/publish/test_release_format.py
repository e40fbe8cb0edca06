"""The released catalog (docs/FORMAT.md §12): canonical whatever the catalog's history,
nothing derivable in it, and a mirror derives a full catalog from it, resumably."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from phonotheca.archive import Archive, init_archive, open_archive
from phonotheca.catalog import release_db, schema
from phonotheca.catalog.export import iter_export_lines
from phonotheca.catalog.release_db import derive_catalog, released_records
from phonotheca.catalog.search import search
from phonotheca.mirror.catalog import OLD_MEMBER, unpack_catalog
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.torrents.metadata import CATALOG_FILE, MetadataRelease, release_metadata
from tests.catalog.test_import import load
from tests.conftest import track

NOW = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
N = 2400


def changed(n: int) -> dict[str, object]:
    return track(n, title=f"Song {n} (remaster)")


def write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return path


def archive_with(root: Path, *files: list[dict[str, object]]) -> Archive:
    """An archive (named alike for all) loaded with ``files`` in turn."""
    archive = init_archive(root, "test")
    for n, records in enumerate(files):
        load(archive, write(root / f"in-{n}.jsonl", records))
    return archive


def release(archive: Archive) -> MetadataRelease:
    conn = archive.connect()
    try:
        return release_metadata(archive, conn, now=NOW, level=3, threads=2)
    finally:
        conn.close()


def infohashes(archive: Archive) -> tuple[str, str]:
    conn = archive.connect(readonly=True)
    try:
        row = conn.execute(
            "SELECT infohash_v1, coalesce(infohash_v2, '') FROM collections"
            " WHERE kind = 'metadata' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return str(row[0]), str(row[1])


def released_db(archive: Archive, made: MetadataRelease, dest: Path) -> Path:
    packed = archive.torrents_dir / made.name / CATALOG_FILE
    with open(packed, "rb") as f:
        dest.write_bytes(zstandard.ZstdDecompressor().stream_reader(f).read())
    return dest


def export(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    try:
        return b"\n".join(iter_export_lines(conn))
    finally:
        conn.close()


def test_same_content_by_different_histories_gives_the_same_metadata_torrent(
    tmp_path: Path,
) -> None:
    originals = [track(n) for n in range(N)]
    bulk = archive_with(tmp_path / "bulk", originals)
    halves = archive_with(tmp_path / "halves", originals[: N // 2], originals[N // 2 :])
    # Some records first loaded in another version, then replaced by the originals: the
    # superseded lines stay behind in the catalog (until `compact`), never in a release.
    superseded = archive_with(
        tmp_path / "superseded",
        [changed(n) if n % 50 == 3 else track(n) for n in range(N)],
        originals,
    )
    other = archive_with(tmp_path / "other", [changed(n) if n == 7 else track(n) for n in range(N)])
    made = [release(a) for a in (bulk, halves, superseded, other)]
    assert all(m.created for m in made)
    hashes = [infohashes(a) for a in (bulk, halves, superseded, other)]
    assert hashes[0] == hashes[1] == hashes[2]
    assert hashes[3][0] != hashes[0][0]  # other content: another release
    torrents = [m.torrent.read_bytes() for m in made[:3]]
    assert torrents[0] == torrents[1] == torrents[2]
    # The catalogs themselves do differ (imports, chunks, record references).
    chunks = []
    for a in (bulk, halves, superseded):
        conn = a.connect(readonly=True)
        chunks.append(conn.execute("SELECT count(*) FROM source_chunks").fetchone()[0])
        conn.close()
    assert len(set(chunks)) > 1


def test_the_release_holds_nothing_derivable(tmp_path: Path) -> None:
    archive = archive_with(
        tmp_path / "a",
        [changed(n) if n % 50 == 3 else track(n) for n in range(N)],
        [track(n) for n in range(N)],
    )
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    conn = sqlite3.connect(db)
    try:
        kinds = conn.execute(
            "SELECT type, count(*) FROM sqlite_schema GROUP BY type ORDER BY type"
        ).fetchall()
        assert [k for k, _ in kinds] == ["table"]  # no index, trigger or view
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_schema")}
        assert not {n for n in names if "search" in n}
        assert "imports" not in names and "source_chunks" not in names
        assert len(list(released_records(conn))) == N
        assert conn.execute(
            "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%UNIQUE%'"
        ).fetchone() == (0,)
        assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)
        assert dict(conn.execute("SELECT key, value FROM release")) == {
            "format": release_db.FORMAT,
            "schema_version": schema.SCHEMA_VERSION,
            "derived": " ".join(release_db.DERIVABLE),  # an import rebuilds them all
        }
        for table in release_db.DERIVABLE:  # so they are shipped empty
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    finally:
        conn.close()


def mirror_with(archive: Archive, made: MetadataRelease, root: Path) -> MirrorDir:
    """A mirror directory whose download of the release is complete."""
    mirror = MirrorDir(root)
    payload = mirror.payload(made.name)
    payload.mkdir(parents=True)
    for f in (archive.torrents_dir / made.name).iterdir():
        (payload / f.name).write_bytes(f.read_bytes())
    return mirror


def released_content(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every released table (as a reader's catalog holds them), by key;
    ``record_ref`` is where a record is kept, not content (the export compares those)."""
    conn = sqlite3.connect(path)
    try:
        content = {}
        for t in release_db.released_tables(conn):
            columns = ", ".join(
                name
                for (name,) in conn.execute(f"SELECT name FROM pragma_table_info('{t}')")
                if name != "record_ref"
            )
            where = release_db.ROW_FILTERS.get(t, "1")
            content[t] = conn.execute(
                f"SELECT {columns} FROM {t} WHERE {where} ORDER BY 1, 2"
            ).fetchall()
        return content
    finally:
        conn.close()


@pytest.mark.parametrize("listens", [False, True])
def test_a_mirror_derives_the_catalog_and_exports_the_import_byte_for_byte(
    tmp_path: Path, listens: bool
) -> None:
    records = [changed(n) if n % 50 == 3 else track(n) for n in range(N)]
    archive = archive_with(tmp_path / "a", records, [track(n) for n in range(N)])
    if listens:  # something an import of the records does not give: tracks are shipped
        conn = archive.connect()
        conn.execute("UPDATE tracks SET listens_import = 5, listeners = 2 WHERE id = 3")
        conn.close()
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    with sqlite3.connect(db) as check:
        derived = check.execute("SELECT value FROM release WHERE key = 'derived'").fetchone()
        shipped = check.execute("SELECT count(*) FROM tracks").fetchone()
    check.close()
    assert ("tracks" in derived[0].split()) is not listens
    assert shipped == ((N,) if listens else (0,))
    mirror = mirror_with(archive, made, tmp_path / "mirror")
    steps: list[str] = []
    catalog = unpack_catalog(mirror, made.name, lambda step, done, total: steps.append(step))
    assert export(catalog) == export(archive.catalog_path)
    assert released_content(catalog) == released_content(archive.catalog_path)
    assert export(catalog) == b"\n".join(json.dumps(track(n)).encode() for n in range(N))
    assert not (mirror.state / "unpack" / f"{made.name}.release.sqlite3").exists()
    conn = sqlite3.connect(catalog)
    live = archive.connect(readonly=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        index_sql = "SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name"
        assert conn.execute(index_sql).fetchall() == live.execute(index_sql).fetchall()
        assert [h.id for h in search(conn, "song 17")] == [h.id for h in search(live, "song 17")]
        assert search(conn, "song 17")
        assert conn.execute("SELECT * FROM meta WHERE key LIKE 'release.%'").fetchall() == []
    finally:
        conn.close()
        live.close()
    assert any(s.startswith("index ") for s in steps) and "search index" in steps


class Killed(Exception):
    pass


def test_deriving_killed_at_any_step_resumes_where_it_stopped(tmp_path: Path) -> None:
    archive = archive_with(tmp_path / "a", [track(n) for n in range(N)])
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    whole: list[str] = []
    derive_catalog(db, tmp_path / "whole.sqlite3", lambda s, d, t: whole.append(s))
    steps = list(dict.fromkeys(whole))
    assert len(steps) > 15
    for k in (0, 1, len(steps) // 2, len(steps) - 2):
        target = tmp_path / f"killed-{k}.sqlite3"

        def kill(step: str, done: int | None, total: int | None, at: str = steps[k]) -> None:
            if step == at:
                raise Killed

        with pytest.raises(Killed):
            derive_catalog(db, target, kill)
        again: list[str] = []

        def hear(step: str, done: int | None, total: int | None, heard: list[str] = again) -> None:
            heard.append(step)

        derive_catalog(db, target, hear)
        # The steps that finished before the kill are not done again.
        table_steps = [s for s in steps[:k] if s.startswith(("table ", "import "))]
        assert not set(table_steps) & set(again)
        assert export(target) == export(tmp_path / "whole.sqlite3")


def test_a_mirror_refuses_a_release_format_it_does_not_know(tmp_path: Path) -> None:
    archive = archive_with(tmp_path / "a", [track(n) for n in range(10)])
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE release SET value = 4 WHERE key = 'format'")
    conn.commit()
    conn.close()
    mirror = mirror_with(archive, made, tmp_path / "mirror")
    packed = mirror.payload(made.name) / CATALOG_FILE
    packed.write_bytes(zstandard.ZstdCompressor().compress(db.read_bytes()))
    with pytest.raises(
        MirrorError, match="metadata release format 4, this phonotheca reads formats 2 and 3"
    ):
        unpack_catalog(mirror, made.name)
    assert not mirror.catalog.exists()
    # A release of the first format (the whole catalog as catalog.sqlite3.zst).
    packed.rename(packed.with_name(OLD_MEMBER))
    with pytest.raises(MirrorError, match="format 1, which this phonotheca no longer reads"):
        unpack_catalog(mirror, made.name)


def test_a_newer_release_clears_what_a_killed_unpack_left(
    tmp_path: Path,
) -> None:
    archive = archive_with(tmp_path / "a", [track(n) for n in range(200)])
    made = release(archive)
    mirror = mirror_with(archive, made, tmp_path / "mirror")

    def kill(step: str, done: int | None, total: int | None) -> None:
        if step.startswith("index "):
            raise Killed

    with pytest.raises(Killed):
        unpack_catalog(mirror, made.name, kill)
    left = sorted(p.name for p in (mirror.state / "unpack").iterdir())
    assert left and not mirror.catalog.exists()
    # A newer release: what the killed unpack left of the older one is removed first.
    conn = archive.connect()
    conn.execute("UPDATE tracks SET title = 'Renamed' WHERE id = 1")
    conn.close()
    newer = release(archive)
    newer_dir = mirror.payload(newer.name)
    newer_dir.mkdir()
    for f in (archive.torrents_dir / newer.name).iterdir():
        (newer_dir / f.name).write_bytes(f.read_bytes())
    unpack_catalog(mirror, newer.name)
    assert list((mirror.state / "unpack").iterdir()) == []
    assert export(mirror.catalog) == export(archive.catalog_path)


def as_format_2(db: Path) -> None:
    """The release rewritten in format 2 (FORMAT.md §12): one ``source_records`` row per
    line, as releases were published before format 3."""
    conn = sqlite3.connect(db)
    rows = list(release_db.released_records(conn))
    conn.execute("CREATE TABLE source_records(ref INTEGER PRIMARY KEY, kind TEXT, line BLOB)")
    conn.executemany("INSERT INTO source_records VALUES (?, ?, ?)", rows)
    conn.execute("DROP TABLE record_runs")
    conn.execute("DROP TABLE record_columns")
    conn.execute("UPDATE release SET value = 2 WHERE key = 'format'")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def test_a_mirror_still_reads_a_format_2_release(tmp_path: Path) -> None:
    records = [changed(n) if n % 50 == 3 else track(n) for n in range(N)]
    archive = archive_with(tmp_path / "a", records, [track(n) for n in range(N)])
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    as_format_2(db)
    mirror = mirror_with(archive, made, tmp_path / "mirror")
    packed = mirror.payload(made.name) / CATALOG_FILE
    packed.write_bytes(zstandard.ZstdCompressor().compress(db.read_bytes()))
    catalog = unpack_catalog(mirror, made.name)
    assert export(catalog) == export(archive.catalog_path)
    assert released_content(catalog) == released_content(archive.catalog_path)


def test_a_damaged_or_truncated_release_is_refused_naming_it(tmp_path: Path) -> None:
    archive = archive_with(tmp_path / "a", [track(n) for n in range(300)])
    made = release(archive)
    good = (archive.torrents_dir / made.name / CATALOG_FILE).read_bytes()
    mirror = mirror_with(archive, made, tmp_path / "mirror")
    packed = mirror.payload(made.name) / CATALOG_FILE
    for damaged in (good[: len(good) // 2], good[:-100] + bytes(b ^ 1 for b in good[-100:])):
        packed.write_bytes(damaged)
        with pytest.raises(MirrorError, match=f"{packed}: cannot decompress"):
            unpack_catalog(mirror, made.name)
        assert not mirror.catalog.exists()
    # Columns that do not decode (a publisher's bug, say), in a frame that does.
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE record_columns SET data = substr(data, 1, 20) WHERE field = '\"id\"'")
    conn.commit()
    conn.close()
    packed.write_bytes(zstandard.ZstdCompressor().compress(db.read_bytes()))
    with pytest.raises(MirrorError, match=r"release\.sqlite3: record_columns, block 1: .* damaged"):
        unpack_catalog(mirror, made.name)
    assert not mirror.catalog.exists()


GENRES = ["rock", "jazz", "pop", "folk", "dub", "ska", "soul", "funk", "punk", "emo"]


def with_genres(n: int) -> dict[str, object]:
    rec = track(n)
    album = dict(rec["album"])  # type: ignore[call-overload]
    album["genres"] = [GENRES[(n // 10 + k) % len(GENRES)] for k in range(3)]
    return {**rec, "album": album}


def test_genre_ids_follow_the_records_not_the_process_so_they_are_derived(
    tmp_path: Path,
) -> None:
    source = write(tmp_path / "in.jsonl", [with_genres(n) for n in range(300)])
    found = []
    for seed in ("1", "2", "3"):
        # Each import in a process of its own: a set of names iterates in another order.
        root = tmp_path / f"seed-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = [sys.executable, "-m", "phonotheca.cli", "import", "jsonl", str(source)]
        subprocess.run([*cmd, "--archive", str(root)], env=env, check=True, capture_output=True)
        conn = sqlite3.connect(root / "catalog.sqlite3")
        found.append(conn.execute("SELECT id, name FROM genres ORDER BY id").fetchall())
        conn.close()
    assert found[0] == found[1] == found[2]
    assert [name for _, name in found[0]] == GENRES  # in order of first use
    archive = open_archive(tmp_path / "seed-1")
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    conn = sqlite3.connect(db)
    derived = conn.execute("SELECT value FROM release WHERE key = 'derived'").fetchone()[0]
    conn.close()
    assert {"genres", "album_genres"} <= set(derived.split())


def test_records_in_many_blocks_encoded_in_parallel_come_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release_db, "BLOCK_LINES", 500)
    records = [changed(n) if n % 50 == 3 else track(n) for n in range(N)]
    archive = archive_with(tmp_path / "a", records, [track(n) for n in range(N)])
    made = release(archive)
    db = released_db(archive, made, tmp_path / "release.sqlite3")
    conn = sqlite3.connect(db)
    blocks = conn.execute("SELECT count(DISTINCT block), max(block) FROM record_columns")
    assert blocks.fetchone() == (5, 5)  # 4 x 500 lines, then 400
    conn.close()
    catalog = unpack_catalog(mirror_with(archive, made, tmp_path / "mirror"), made.name)
    assert export(catalog) == export(archive.catalog_path)
    assert export(catalog) == b"\n".join(json.dumps(track(n)).encode() for n in range(N))
