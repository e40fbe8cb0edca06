"""The library file follows the catalog and the collections held: made by imports and
reindex, made again by the server when a collection appears (before answering, or in the
background for a large catalog), and never left half-written."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from phonotheca.catalog import library, library_rank, schema
from phonotheca.cli import main
from phonotheca.serve import library as server_library
from phonotheca.serve.context import ServeContext
from phonotheca.serve.state import StateStore
from tests.serve_subsonic.conftest import LiveServer
from tests.serve_subsonic.test_library_update import answers

TRACKS = 2000


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root, catalog = tmp_path / "lib", tmp_path / "catalog.jsonl"
    _run("synth", "catalog", "--tracks", str(TRACKS), "--seed", "5", str(catalog))
    _run("init", str(root), "--name", "lib")
    _run("import", "jsonl", "--archive", str(root), str(catalog))
    return root


def _hold(root: Path, name: str, remainder: int) -> int:
    """Mark the tracks with ``id % 10 == remainder`` packed in collection ``name``, present
    on disk (as a build leaves them); how many."""
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO plans(id, created_at, budget, settings)"
                " VALUES(1, 'x', 1, '{}')"
            )
            count = conn.execute(
                "INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume, offset,"
                " length, position) SELECT id, 1, 'packed', 'original', ?, 'v.tar', 512, 10,"
                " row_number() OVER (ORDER BY id) - 1 FROM tracks WHERE id % 10 = ?",
                (name, remainder),
            ).rowcount
            conn.execute(
                "INSERT INTO collections(name, kind, seq, plan_id, status, items, built_at)"
                " VALUES(?, 'audio', ?, 1, 'published', ?, 'x')",
                (name, remainder, count),
            )
    finally:
        conn.close()
    (root / "torrents" / name / "data").mkdir(parents=True)
    return int(count)


@pytest.fixture
def client(root: Path) -> Iterator[tuple[httpx.Client, ServeContext, str]]:
    store = StateStore(root / "state.sqlite3")
    store.add_user("eve", "eve's web password")
    key = store.rotate_subsonic_credentials("eve").api_key
    store.close()
    live = LiveServer(root)
    live.ctx.media.sampler.ttl = 0  # see new collections at once
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            yield http, live.ctx, key
    finally:
        live.stop()


def _call(client: httpx.Client, key: str, method: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"/rest/{method}", params={**params, "apiKey": key, "f": "json"})
    body: dict[str, Any] = r.json()["subsonic-response"]
    assert body["status"] == "ok", body
    return body


def _sync(client: httpx.Client, key: str, folder: int | None = None) -> int:
    """Songs an app syncing the folder through search3 gets."""
    extra = {} if folder is None else {"musicFolderId": folder}
    total = 0
    while songs := _call(
        client, key, "search3", query="", songCount=500, songOffset=total, artistCount=0,
        albumCount=0, **extra,
    )["searchResult3"].get("song", []):  # fmt: skip
        total += len(songs)
    return total


def test_imports_and_reindex_make_the_file(root: Path) -> None:
    path = root / library.LIBRARY_FILE
    conn = schema.connect(root / "catalog.sqlite3", readonly=True)
    try:
        assert library.is_current(path, library.catalog_stamp(conn), [])
    finally:
        conn.close()
    # A build killed while writing leaves a .partial beside the last good file.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(b"half a file")
    held = _hold(root, "lib_pop-000-100_0001", 3)
    _run("reindex", "--archive", str(root))
    assert not partial.exists()
    shelf = sqlite3.connect(path)
    try:
        counts = dict(
            shelf.execute("SELECT lib, count(*) FROM song_order WHERE kind = 0 GROUP BY lib")
        )
        playable = shelf.execute("SELECT sum(playable), sum(tracks) FROM album_stats").fetchone()
    finally:
        shelf.close()
    assert counts == {library.PLAYABLE: held, library.CATALOG: TRACKS}
    assert playable[0] <= held and playable[1] <= TRACKS


def test_the_server_follows_the_collections_it_holds(
    root: Path, client: tuple[httpx.Client, ServeContext, str]
) -> None:
    http, _, key = client
    # Holding nothing: the default folder is the whole catalog, folder 1 is empty.
    assert _sync(http, key) == TRACKS and _sync(http, key, 1) == 0
    first = _hold(root, "lib_pop-000-100_0001", 3)
    assert _sync(http, key) == _sync(http, key, 1) == first  # made again before answering
    assert _sync(http, key, 2) == TRACKS


def _page(client: httpx.Client, key: str, folder: int) -> int:
    """Songs on the first page of 500 of a folder (one call, one library file)."""
    result = _call(
        client, key, "search3", query="", songCount=500, artistCount=0, albumCount=0,
        musicFolderId=folder,
    )["searchResult3"]  # fmt: skip
    return len(result.get("song", []))


def test_a_large_catalog_is_made_again_in_the_background(
    root: Path, client: tuple[httpx.Client, ServeContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, ctx, key = client
    first = _hold(root, "lib_pop-000-100_0001", 3)
    assert _page(http, key, 1) == first
    monkeypatch.setattr(server_library, "INLINE_BUILD_TRACKS", 0)
    build = server_library.ServerLibrary._build
    release = threading.Event()

    def held_back(self: server_library.ServerLibrary, held: list[str]) -> None:
        release.wait(timeout=120)  # until the call below has answered
        build(self, held)

    monkeypatch.setattr(server_library.ServerLibrary, "_build", held_back)
    second = _hold(root, "lib_pop-000-100_0002", 4)
    assert first + second <= 500
    assert _page(http, key, 1) == first  # the previous file answers meanwhile
    worker = ctx.library._worker
    assert worker is not None and worker.is_alive()
    release.set()
    worker.join()
    assert _page(http, key, 1) == first + second


def test_index_letters_skip_articles() -> None:
    assert library.sort_key("The Beatles") == "beatles"
    assert [library.index_letter(n) for n in ("The Beatles", "los lobos", "2Pac", "Édith")] == [
        "B",
        "L",
        "#",
        "É",
    ]
    assert library.index_letter("The") == "T"  # an article alone is a name


def test_an_import_under_way_keeps_the_lists_until_it_ends(
    root: Path, client: tuple[httpx.Client, ServeContext, str]
) -> None:
    http, _, key = client
    assert _sync(http, key, 2) == TRACKS
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO imports(kind, path, fingerprint, started_at)"
                " VALUES('jsonl', 'more.jsonl', 'x', 'now')"
            )
            conn.execute("INSERT INTO tracks(public_id, title) VALUES('t:new', 'New')")
        assert _sync(http, key, 2) == TRACKS  # half an import is not listed
        conn.execute("UPDATE imports SET finished_at = 'later' WHERE finished_at IS NULL")
    finally:
        conn.close()
    assert _sync(http, key, 2) == TRACKS + 1


# -- the file changed in place when only the collections held change --------------------------


def _contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a library file (meta: what names its content)."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {}
        for table in tables:
            width = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
            order = ", ".join(str(i) for i in range(1, width + 1))
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            out[table] = [r for r in rows if table != "meta" or r[0] != "built_at"]
        return out
    finally:
        conn.close()


def _collection(root: Path, name: str, seq: int, where: str, built: str = "x") -> None:
    """Collection ``name`` packs the tracks ``where`` selects (that no other packs), built at
    ``built``; its directory is present."""
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute("DELETE FROM ledger WHERE collection = ?", (name,))
            conn.execute(
                "INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume, offset,"
                " length, position) SELECT id, 1, 'packed', 'original', ?, 'v.tar', 512, 10,"
                f" row_number() OVER (ORDER BY id) - 1 FROM tracks WHERE {where}",
                (name,),
            )
            conn.execute(
                "INSERT INTO collections(name, kind, seq, plan_id, status, items, built_at)"
                " VALUES(?, 'audio', ?, 1, 'published', 0, ?)"
                " ON CONFLICT(name) DO UPDATE SET built_at = excluded.built_at",
                (name, seq, built),
            )
    finally:
        conn.close()
    (root / "torrents" / name / "data").mkdir(parents=True, exist_ok=True)


def _with_plan(root: Path) -> Path:
    """The archive with a plan (as any build has) and its library file made for it."""
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO plans(id, created_at, budget, settings) VALUES(1, 'x', 1, '{}')"
            )
        assert library.refresh(conn)
    finally:
        conn.close()
    return root / library.LIBRARY_FILE


def test_collections_held_change_the_file_in_place_as_a_full_build_would(
    root: Path, tmp_path: Path
) -> None:
    path = _with_plan(root)
    catalog = root / "catalog.sqlite3"
    full = tmp_path / "full.sqlite3"
    a, b, c = "lib_pop-000-100_0001", "lib_pop-000-100_0002", "lib_pop-000-100_0003"

    def same_as_full(held: list[str]) -> None:
        inode = path.stat().st_ino
        assert library.update(catalog, path, held) is not None
        assert path.stat().st_ino == inode  # changed in place, not made again
        library.build(catalog, full, held)
        assert answers(path, catalog) == answers(full, catalog)

    _collection(root, a, 1, "id % 10 = 3")
    same_as_full([a])  # a collection gained
    _collection(root, b, 2, "id % 7 = 1 AND id % 10 != 3")
    same_as_full([a, b])  # another one, sharing albums and artists with the first
    _collection(root, c, 3, "id % 10 = 5 AND id % 7 != 1")
    same_as_full([a, b])  # assigned (not held here): only the stamp changes
    same_as_full([b, c])  # one dropped, one gained at once
    # A collection built again with other tracks (a new build time).
    _collection(root, b, 2, "id % 7 = 1 AND id % 10 NOT IN (3, 5) AND id < 1500", built="y")
    same_as_full([b, c])
    same_as_full([])  # every one dropped
    # A new plan (which may change any ledger row) needs the whole file made again; a
    # change of the catalog's content is taken in place (test_library_update.py).
    conn = schema.connect(catalog)
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO plans(id, created_at, budget, settings) VALUES(2, 'y', 1, '{}')"
            )
    finally:
        conn.close()
    assert library.update(catalog, path, [a]) is None


def _grow(root: Path, tracks: int) -> None:
    """Add ``tracks`` tracks (one album and artist per 4) that no collection packs."""
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            base = conn.execute("SELECT max(id) FROM tracks").fetchone()[0]
            n = (
                "WITH RECURSIVE s(i) AS"
                f" (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {tracks})"
            )
            group = "(((i - 1) / 4 + 1) * 4)"
            conn.execute(
                f"{n} INSERT INTO artists(public_id, name) SELECT 'x:ar' || i, 'Extra ' || i"
                " FROM s WHERE i % 4 = 0"
            )
            conn.execute(
                f"{n} INSERT INTO albums(public_id, title, release_date)"
                " SELECT 'x:al' || i, 'Extra ' || i, '1999' FROM s WHERE i % 4 = 0"
            )
            conn.execute(
                f"{n} INSERT INTO tracks(id, public_id, title, album_id) SELECT {base} + i,"
                f" 'x:t' || i, 'Extra ' || i,"
                f" (SELECT id FROM albums WHERE public_id = 'x:al' || {group}) FROM s"
            )
            conn.execute(
                f"{n} INSERT INTO track_artists(track_id, position, artist_id)"
                f" SELECT {base} + i, 0,"
                f" (SELECT id FROM artists WHERE public_id = 'x:ar' || {group}) FROM s"
            )
    finally:
        conn.close()


def test_a_collection_gained_costs_the_same_whatever_the_catalog_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same collection held by a catalog and by that catalog with 20 times more
    tracks: the in-place change runs about as many SQLite steps (it reads index ranges of
    the collection's tracks, never the catalog)."""
    steps: list[int] = []
    connect = sqlite3.connect

    def counted(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)

        def tick() -> int:
            steps.append(1)
            return 0

        conn.set_progress_handler(tick, 100)
        return conn

    catalog = tmp_path / "catalog.jsonl"
    _run("synth", "catalog", "--tracks", str(TRACKS), "--seed", "5", str(catalog))
    runs = []
    for extra in (0, 20 * TRACKS):
        root = tmp_path / f"lib{extra}"
        _run("init", str(root), "--name", "lib")
        _run("import", "jsonl", "--archive", str(root), str(catalog))
        if extra:
            _grow(root, extra)
        path = _with_plan(root)
        _collection(root, "lib_pop-000-100_0001", 1, f"id % 10 = 3 AND id <= {TRACKS}")
        steps.clear()
        with monkeypatch.context() as patch:
            patch.setattr(sqlite3, "connect", counted)
            assert library.update(root / "catalog.sqlite3", path, ["lib_pop-000-100_0001"])
        runs.append(len(steps) * 100)
    small, large = runs
    # A scan of the catalog would cost 20 times more; index seeks one B-tree level more.
    assert large < 1.5 * small, runs


def test_an_in_place_change_cut_short_leaves_the_file_as_it_was(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _with_plan(root)
    before = _contents(path)
    _collection(root, "lib_pop-000-100_0001", 1, "id % 10 = 3")

    def killed(conn: sqlite3.Connection, orders: Any) -> None:
        conn.execute("DELETE FROM album_order")  # half done
        raise KeyboardInterrupt

    monkeypatch.setattr(library_rank, "settle", killed)
    with pytest.raises(KeyboardInterrupt):
        library.update(root / "catalog.sqlite3", path, ["lib_pop-000-100_0001"])
    assert _contents(path) == before
    monkeypatch.undo()
    assert library.update(root / "catalog.sqlite3", path, ["lib_pop-000-100_0001"])
    assert _contents(path) != before


KILLED_MIDWAY = r"""
import os, signal, sys
from pathlib import Path
from phonotheca.catalog import library, library_rank

def killed(conn, orders):
    conn.execute("PRAGMA cache_size = 1")  # pages go to the file before the commit
    conn.execute("DELETE FROM album_order")
    conn.execute("DELETE FROM song_order")
    os.kill(os.getpid(), signal.SIGKILL)

library_rank.settle = killed
root = Path(sys.argv[1])
library.update(root / "catalog.sqlite3", root / library.LIBRARY_FILE, sys.argv[2:])
"""


def test_a_killed_in_place_change_is_rolled_back_then_done_again(
    root: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = _with_plan(root)
    name = "lib_pop-000-100_0001"
    _collection(root, name, 1, "id % 10 = 3")
    run = subprocess.run([sys.executable, "-c", KILLED_MIDWAY, str(root), name], check=False)
    assert run.returncode == -9
    assert path.with_name(path.name + "-journal").exists()  # the change was under way
    # Run again: the half change is rolled back, then made as a full build makes it.
    assert library.update(root / "catalog.sqlite3", path, [name])
    library.build(root / "catalog.sqlite3", tmp_path / "full.sqlite3", [name])
    catalog = root / "catalog.sqlite3"
    assert answers(path, catalog) == answers(tmp_path / "full.sqlite3", catalog)


def test_the_server_changes_the_file_in_place_for_a_new_collection(
    root: Path, client: tuple[httpx.Client, ServeContext, str]
) -> None:
    http, _, key = client
    first = _hold(root, "lib_pop-000-100_0001", 3)  # the first plan: the file made again
    assert _sync(http, key, 1) == first
    path = root / library.LIBRARY_FILE
    inode = path.stat().st_ino
    second = _hold(root, "lib_pop-000-100_0002", 4)
    assert _sync(http, key, 1) == first + second
    assert path.stat().st_ino == inode  # changed in place
    assert _sync(http, key, 2) == TRACKS
