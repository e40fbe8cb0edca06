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

from phonotheca.catalog import library, schema
from phonotheca.cli import main
from phonotheca.serve import library as server_library
from phonotheca.serve.context import ServeContext
from phonotheca.serve.state import StateStore
from tests.serve_subsonic.conftest import LiveServer

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
