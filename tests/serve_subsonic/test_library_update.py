"""An import changes the library file in place, and every list then reads as a full
build's would: new tracks, albums, artists and genres in the middle of every order,
tracks moved to another album, genre or year, deletions; at a cost that does not grow
with the catalog; and a kill midway leaves the file as it was."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from phonotheca.catalog import library, library_delta, schema
from phonotheca.catalog import library_rank as rank
from phonotheca.cli import main

TRACKS = 2000
HELD = "lib_pop-000-100_0001"


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _lines(tmp_path: Path, tracks: int, seed: int) -> list[dict[str, Any]]:
    out = tmp_path / f"synth-{tracks}-{seed}.jsonl"
    if not out.exists():
        _run("synth", "catalog", "--tracks", str(tracks), "--seed", str(seed), str(out))
    return [json.loads(line) for line in out.read_text().splitlines()]


def _import(root: Path, records: list[dict[str, Any]], name: str) -> None:
    path = root.parent / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    _run("import", "jsonl", "--archive", str(root), str(path))


def _renamed(records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Records of other tracks, albums and artists (their ids under ``prefix``), some of
    them in genres no track had."""
    text = json.dumps(records, ensure_ascii=False).replace('"syn:', f'"{prefix}:')
    out: list[dict[str, Any]] = json.loads(text)
    for i, record in enumerate(out):
        album = record.get("album") or {}
        if i % 3 == 0 and album.get("genres"):
            album["genres"] = [f"{prefix}-genre-{i % 4}", *album["genres"]]
    return out


def _archive(tmp_path: Path, tracks: int = TRACKS, extra: int = 0) -> Path:
    """An archive with the synthetic catalog, a plan, a collection held (a tenth of the
    tracks) and its library file; ``extra`` more tracks of other albums and artists."""
    root = tmp_path / f"lib{extra}"
    _run("init", str(root), "--name", "lib")
    _import(root, _lines(tmp_path, tracks, 5), "base")
    if extra:
        _import(root, _renamed(_lines(tmp_path, extra, 9), "big"), "extra")
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO plans(id, created_at, budget, settings) VALUES(1, 'x', 1, '{}')"
            )
            conn.execute(
                "INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume, offset,"
                " length, position) SELECT id, 1, 'packed', 'original', ?, 'v.tar', 512, 10,"
                f" row_number() OVER (ORDER BY id) - 1 FROM tracks WHERE id % 10 = 3"
                f" AND id <= {tracks}",
                (HELD,),
            )
            conn.execute(
                "INSERT INTO collections(name, kind, seq, plan_id, status, items, built_at)"
                " VALUES(?, 'audio', 1, 1, 'published', 0, 'x')",
                (HELD,),
            )
        (root / "torrents" / HELD / "data").mkdir(parents=True)
        library.refresh(conn, force=True)
    finally:
        conn.close()
    return root


def answers(path: Path, catalog: Path) -> dict[str, Any]:
    """Everything the server reads from a library file, read as the server reads it: each
    list item by item through its positions (and its length), the counts per key, the
    artists' album lists, counts and most popular tracks, what is playable."""
    conn = sqlite3.connect(path)
    conn.execute("ATTACH ? AS c", (str(catalog),))
    out: dict[str, Any] = {}
    try:
        for order in library.ORDERS:
            for lib_, kind in conn.execute(
                f"SELECT DISTINCT lib, kind FROM {order.table} ORDER BY 1, 2"
            ).fetchall():
                n = rank.total(conn, order, lib_, kind)
                items = rank.page(conn, order, lib_, kind, 0, n + 1)
                assert len(items) == n
                # every position reads its own item (three seeks), and pages agree
                ranks = range(0, n, 1 if n <= 3000 else 37)
                assert [
                    rank.row_at(conn, order, lib_, kind, r)[-1]  # type: ignore[index]
                    for r in ranks
                ] == [items[r] for r in ranks]
                assert rank.row_at(conn, order, lib_, kind, n) is None
                assert (
                    rank.page(conn, order, lib_, kind, n - 1, 7, descending=True)
                    == (items[max(0, n - 7) :][::-1])
                )
                out[f"{order.table}/{lib_}/{kind}"] = items
        for table, columns in (
            ("ranges", "lib, what, kind, key, n"),
            ("artist_albums", "*"),
            ("album_stats", "*"),
            ("artist_stats", "*"),
            ("artist_top", "*"),
            ("playable", "*"),
            ("held", "*"),
            ("artist_order", "lib, artist_id, letter, albums"),
        ):
            rows = conn.execute(f"SELECT {columns} FROM {table}").fetchall()
            out[table] = sorted(rows, key=repr)
        for lib_, what, kind, key, n in out["ranges"]:
            if what != library.ARTIST:
                order = library.ORDERS[what]
                start = rank.rank_of_key(conn, order, lib_, kind, key)
                items = out[f"{order.table}/{lib_}/{kind}"]
                page = rank.page(conn, order, lib_, kind, start, n)
                assert page == items[start : start + n]
    finally:
        conn.close()
    return out


def _same_as_full(root: Path, tmp_path: Path, inode: int) -> None:
    path = root / library.LIBRARY_FILE
    assert path.stat().st_ino == inode  # changed in place, not made again
    full = tmp_path / "full.sqlite3"
    catalog = root / "catalog.sqlite3"
    library.build(catalog, full, [HELD])
    assert answers(path, catalog) == answers(full, catalog)
    conn = sqlite3.connect(catalog)
    try:  # the journal rows taken in were dropped
        assert conn.execute("SELECT count(*) FROM library_changes").fetchone()[0] == 0
    finally:
        conn.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _archive(tmp_path)


def _catalog(root: Path) -> Iterator[sqlite3.Connection]:
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        yield conn
    finally:
        conn.close()


def test_every_kind_of_import_changes_the_file_as_a_full_build_would(
    root: Path, tmp_path: Path
) -> None:
    inode = (root / library.LIBRARY_FILE).stat().st_ino
    base = _lines(tmp_path, TRACKS, 5)
    # New tracks on new albums by new artists, in new genres: in the middle of every order.
    _import(root, _renamed(_lines(tmp_path, 150, 7), "new"), "new")
    _same_as_full(root, tmp_path, inode)
    # Known tracks moved: to another album (another year, other genres), with other artists.
    moved = []
    for i in range(0, 400, 7):
        record = dict(base[i])
        record["album"] = base[(i + 911) % TRACKS]["album"]
        record["artists"] = base[(i + 433) % TRACKS]["artists"]
        record["popularity"] = 100 - (record.get("popularity") or 0)
        moved.append(record)
    _import(root, moved, "moved")
    _same_as_full(root, tmp_path, inode)
    # An album's year and genres changed (every track of it moves in the song orders).
    album = dict(base[3]["album"], release_date="1901-05-05", genres=["polka"])
    album["title"] = "Aardvark " + album["title"]
    _import(root, [dict(r, album=album) for r in base if r["album"]["id"] == album["id"]], "album")
    _same_as_full(root, tmp_path, inode)
    # Deleted tracks, an album and an artist (a writer of the catalog: the journal follows).
    for conn in _catalog(root):
        with schema.transaction(conn):
            gone = [r[0] for r in conn.execute("SELECT id FROM tracks WHERE id % 97 = 3")]
            for table in ("track_artists", "track_genres", "ledger"):
                conn.execute(f"DELETE FROM {table} WHERE track_id % 97 = 3")
            conn.execute("DELETE FROM tracks WHERE id % 97 = 3")
            conn.execute("UPDATE artists SET name = 'The Zebra' WHERE id = 5")
        assert gone
        library.refresh(conn)
    _same_as_full(root, tmp_path, inode)


def test_blocks_and_groups_cut_and_dropped_as_lists_grow_and_shrink(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With blocks of 4 rows and nodes of 2 children, the same changes cut blocks and
    nodes many times over, add levels and empty some: the lists still read as a full
    build's."""
    monkeypatch.setattr(rank, "BLOCK", 4)
    monkeypatch.setattr(rank, "FANOUT", 2)
    for conn in _catalog(root):
        library.refresh(conn, force=True)
    inode = (root / library.LIBRARY_FILE).stat().st_ino
    _import(root, _renamed(_lines(tmp_path, 300, 7), "new"), "new")
    _same_as_full(root, tmp_path, inode)
    shelf = sqlite3.connect(root / library.LIBRARY_FILE)
    try:
        largest = shelf.execute("SELECT max(n) FROM nodes WHERE level = 1").fetchone()[0]
        fanout = shelf.execute(
            "SELECT max(c) FROM (SELECT count(*) AS c FROM nodes GROUP BY"
            " what, lib, kind, level, parent)"
        ).fetchone()[0]
        levels = shelf.execute("SELECT max(level) FROM nodes").fetchone()[0]
    finally:
        shelf.close()
    assert largest <= 8 and fanout <= 4 and levels >= 6
    for conn in _catalog(root):
        with schema.transaction(conn):
            conn.execute("DELETE FROM track_artists WHERE track_id > 1000")
            conn.execute("DELETE FROM track_genres WHERE track_id > 1000")
            conn.execute("DELETE FROM tracks WHERE id > 1000")
        library.refresh(conn)
    _same_as_full(root, tmp_path, inode)


def test_a_large_change_makes_the_file_again(root: Path, tmp_path: Path) -> None:
    inode = (root / library.LIBRARY_FILE).stat().st_ino
    for conn in _catalog(root):
        with schema.transaction(conn):
            conn.execute("UPDATE tracks SET popularity = 100 - coalesce(popularity, 0)")
        assert library_delta.MIN_LIMIT > TRACKS  # so make the limit small for the test
    limit = library_delta.MIN_LIMIT
    try:
        library_delta.MIN_LIMIT = 10
        for conn in _catalog(root):
            library.refresh(conn)
    finally:
        library_delta.MIN_LIMIT = limit
    path = root / library.LIBRARY_FILE
    assert path.stat().st_ino != inode
    library.build(root / "catalog.sqlite3", tmp_path / "full.sqlite3", [HELD])
    assert answers(path, root / "catalog.sqlite3") == answers(
        tmp_path / "full.sqlite3", root / "catalog.sqlite3"
    )


def test_a_bulk_load_journals_nothing_and_makes_the_file_again(root: Path) -> None:
    for conn in _catalog(root):
        with schema.transaction(conn):
            schema.postpone_indexes(conn, 1)
            conn.execute("INSERT INTO tracks(public_id, title) VALUES('t:bulk', 'Bulk')")
        rows = conn.execute("SELECT what FROM library_changes").fetchall()
        assert rows == [(-1,)]  # only the mark: everything changed
        catalog = root / "catalog.sqlite3"
        assert library.update(catalog, root / library.LIBRARY_FILE, [HELD]) is None


def _steps_of_update(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    steps: list[int] = []
    connect = sqlite3.connect

    def counted(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)

        def tick() -> int:
            steps.append(1)
            return 0

        conn.set_progress_handler(tick, 100)
        return conn

    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", counted)
        catalog = root / "catalog.sqlite3"
        assert library.update(catalog, root / library.LIBRARY_FILE, [HELD]) is not None
    return len(steps) * 100


def test_an_import_costs_the_same_whatever_the_catalog_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same records imported into a catalog and into one with 20 times more tracks
    (of other albums and artists): the in-place change runs about as many SQLite steps."""
    runs = []
    change = _renamed(_lines(tmp_path, 60, 7), "new")
    base = _lines(tmp_path, TRACKS, 5)
    moved = [dict(base[i], album=base[i + 1000]["album"]) for i in range(0, 200, 10)]
    for extra in (0, 20 * TRACKS):
        root = _archive(tmp_path, extra=extra)
        path = root / library.LIBRARY_FILE
        # The changes land in the catalog; the file is changed after, with steps counted.
        monkeypatch.setattr(library, "refresh", lambda *a, **k: False)
        monkeypatch.setattr(library, "refresher", lambda *a, **k: None)  # an import's end
        _import(root, change, "new")
        _import(root, moved, "moved")
        monkeypatch.undo()
        runs.append(_steps_of_update(root, monkeypatch))
        full = tmp_path / f"full{extra}.sqlite3"
        library.build(root / "catalog.sqlite3", full, [HELD])
        assert answers(path, root / "catalog.sqlite3") == answers(full, root / "catalog.sqlite3")
    small, large = runs
    # A scan of the catalog or of a list would cost 20 times more.
    assert large < 1.5 * small, runs


KILLED_MIDWAY = r"""
import os, signal, sys
from pathlib import Path
from phonotheca.catalog import library, library_rank

settle = library_rank.settle

def killed(conn, orders):
    conn.execute("PRAGMA cache_size = 1")  # pages go to the file before the commit
    settle(conn, orders[:1])
    conn.execute("DELETE FROM album_order")
    os.kill(os.getpid(), signal.SIGKILL)

library_rank.settle = killed
root = Path(sys.argv[1])
library.update(root / "catalog.sqlite3", root / library.LIBRARY_FILE, sys.argv[2:])
"""


def test_a_killed_update_is_rolled_back_then_done_again(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / library.LIBRARY_FILE
    catalog = root / "catalog.sqlite3"
    before = answers(path, catalog)
    monkeypatch.setattr(library, "refresh", lambda *a, **k: False)
    monkeypatch.setattr(library, "refresher", lambda *a, **k: None)  # an import's end
    _import(root, _renamed(_lines(tmp_path, 100, 7), "new"), "new")
    monkeypatch.undo()
    run = subprocess.run([sys.executable, "-c", KILLED_MIDWAY, str(root), HELD], check=False)
    assert run.returncode == -9
    assert path.with_name(path.name + "-journal").exists()  # the change was under way
    library._settle(path)
    assert answers(path, catalog) == before  # rolled back
    inode = path.stat().st_ino
    for conn in _catalog(root):
        assert library.refresh(conn)
    _same_as_full(root, tmp_path, inode)
