"""A playlist of 10,000 entries and a catalog of 3,000 playlists, a page at a time.

As tests/serve/test_long_lists.py does for artists and genres: the catalog is made by
direct inserts, the real app serves it over uvicorn, and every statement a request runs
is captured. Its query plans read index ranges (no SCAN of a table that grows with the
catalog, no temporary B-tree), and the work it does (SQLite VM steps) is the same deep
in the playlist, or deep in the list of playlists, as at the start: on the web pages, in
the JSON API and in Subsonic's ``getPlaylist``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from phonotheca.catalog import library, schema
from phonotheca.cli import main
from phonotheca.serve.playlists import ENTRIES_PER_PAGE, PLAYLISTS_PER_PAGE
from phonotheca.serve.state import StateStore
from tests.playlists import Given, add_playlist
from tests.serve.conftest import FAST_COST, LiveServer, make_app
from tests.serve.test_long_lists import BIG, Cost
from tests.statements import Recorder, recording

TRACKS = 12_000
ENTRIES = 10_000
PLAYLISTS = 3_000
PLAYLIST = "pl:big"
SUBSONIC_PAGE = 500
TABLES = BIG | {"playlists", "playlist_entries"}


def _fill(conn: sqlite3.Connection) -> None:
    """Tracks on 2,400 albums; 3,000 one-entry playlists ``pl:x00000``...; then the big
    playlist: every tenth of its entries unmatched, the others tracks 1 to 9,000."""
    conn.executescript(
        f"""
        BEGIN;
        INSERT INTO artists(id, public_id, name) VALUES (1, 'long:artist:1', 'Artist');
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TRACKS // 5})
        INSERT INTO albums(id, public_id, title, artist_credit)
        SELECT i, 'long:album:' || i, 'Album ' || i, 'Artist' FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TRACKS})
        INSERT INTO tracks(id, public_id, title, artist_credit, album_id, track_number,
                           duration_ms, popularity)
        SELECT i, 'long:track:' || i, 'Track ' || i, 'Artist', (i - 1) / 5 + 1,
               (i - 1) % 5 + 1, 180000, i % 101 FROM n;
        INSERT INTO track_artists(track_id, position, artist_id) SELECT id, 0, 1 FROM tracks;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {PLAYLISTS})
        INSERT INTO playlists(id, public_id, title, entries, matched)
        SELECT i, printf('pl:x%05d', i), 'Filler ' || i, 1, 1 FROM n;
        INSERT INTO playlist_entries(playlist_id, position, track_id, match)
        SELECT id, 0, id, 'mbid' FROM playlists;
        INSERT INTO playlist_search(rowid, title, creator) SELECT id, title, '' FROM playlists;
        COMMIT;
        """
    )
    entries: list[int | Given] = [
        Given(f"Unmatched {i}") if i % 10 == 9 else i - i // 10 + 1 for i in range(ENTRIES)
    ]
    add_playlist(conn, PLAYLIST, "The Long Playlist", entries, creator="Patient")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long-playlists") / "arc"
    result = CliRunner().invoke(main, ["init", str(root), "--name", "long"])
    assert result.exit_code == 0, result.output
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        _fill(conn)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    library.build(root / "catalog.sqlite3", root / library.LIBRARY_FILE, [])
    return root


@pytest.fixture(scope="module")
def api_key(big: Path) -> str:
    store = StateStore(big / "state.sqlite3", password_cost=FAST_COST)
    try:
        store.add_user("reader", "a long enough password")
        return store.rotate_subsonic_credentials("reader").api_key
    finally:
        store.close()


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def client(big: Path, api_key: str, recorder: Recorder) -> Iterator[httpx.Client]:
    with (
        recording(recorder),
        LiveServer(make_app(big)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        yield http


def _get(
    client: httpx.Client, recorder: Recorder, big: Path, url: str, **params: object
) -> tuple[httpx.Response, Cost]:
    client.get(url, params=params)  # the first request may make the library file current
    recorder.take()
    response = client.get(url, params=params)
    assert response.status_code == 200, url
    return response, Cost(big, recorder.take(), TABLES)


def _problems(cost: Cost, songs: bool = False) -> list[str]:
    """The cost's problems; with ``songs``, less the sorts of Subsonic's song query, which
    orders each song's few credits and genres (as tests/serve_subsonic/test_scale.py
    allows in every song list)."""
    if not songs:
        return cost.problems
    return [p for p in cost.problems if "TEMP B-TREE" not in p or "playlist" in p]


def _same(first: Cost, deep: Cost, songs: bool = False) -> None:
    """Both read index ranges only, and the deep page costs what the first does."""
    assert _problems(first, songs) == [] and _problems(deep, songs) == []
    # The entries' own range: the same, give or take a step where the key's bytes differ.
    entries = first.of("playlist_entries")
    assert abs(deep.of("playlist_entries") - entries) <= entries // 100
    assert abs(deep.total - first.total) <= first.total // 20, (first.total, deep.total)


def test_the_playlist_page_costs_the_same_at_any_depth(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    url = f"/playlists/{quote(PLAYLIST, safe='')}"
    first, first_cost = _get(client, recorder, big, url)
    deep, deep_cost = _get(client, recorder, big, url, at=ENTRIES - ENTRIES_PER_PAGE)
    assert f"1–{ENTRIES_PER_PAGE} of 10,000 entries" in first.text
    assert "9,901–10,000 of 10,000 entries" in deep.text
    shown = [int(t) for t in re.findall(r'data-track-id="long:track:(\d+)"', deep.text)]
    assert shown == [i - i // 10 + 1 for i in range(9_900, 10_000) if i % 10 != 9]
    assert deep.text.count('<tr class="entry unmatched">') == 10
    _same(first_cost, deep_cost)
    # Bounded by the page: the entries' range takes a dozen steps an entry (reading
    # the playlist's 10,000 would take ten times the page's), the whole page a few dozen.
    assert deep_cost.of("playlist_entries") < 15 * ENTRIES_PER_PAGE, deep_cost.steps
    assert deep_cost.total < 100 * ENTRIES_PER_PAGE, deep_cost.total


def test_the_api_pages_the_playlist_at_the_same_cost(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    url = f"/api/v1/playlists/{PLAYLIST}"
    first, first_cost = _get(client, recorder, big, url, limit=500)
    deep, deep_cost = _get(client, recorder, big, url, offset=ENTRIES - 500, limit=500)
    assert [e["position"] for e in deep.json()["entries"]] == list(range(9_500, 10_000))
    assert len(first.json()["entries"]) == 500
    _same(first_cost, deep_cost)


def test_subsonic_get_playlist_pages_at_the_same_cost(
    client: httpx.Client, recorder: Recorder, big: Path, api_key: str
) -> None:
    auth = {"apiKey": api_key, "f": "json", "id": PLAYLIST, "size": SUBSONIC_PAGE}
    first, first_cost = _get(client, recorder, big, "/rest/getPlaylist", **auth)
    deep, deep_cost = _get(
        client, recorder, big, "/rest/getPlaylist", **auth, offset=ENTRIES - SUBSONIC_PAGE
    )
    got = deep.json()["subsonic-response"]["playlist"]
    assert got["songCount"] == 9_000 and got["entryCount"] == ENTRIES
    assert [s["id"] for s in got["entry"]] == [
        f"tr-long:track:{i - i // 10 + 1}" for i in range(9_500, 10_000) if i % 10 != 9
    ]
    assert len(first.json()["subsonic-response"]["playlist"]["entry"]) == 450
    _same(first_cost, deep_cost, songs=True)


def test_the_list_of_playlists_costs_the_same_at_any_depth(
    client: httpx.Client, recorder: Recorder, big: Path, api_key: str
) -> None:
    first, first_cost = _get(client, recorder, big, "/playlists")
    assert len(re.findall(r'href="/playlists/pl%3A', first.text)) == PLAYLISTS_PER_PAGE
    deep, deep_cost = _get(client, recorder, big, "/playlists", after="pl:x02900")
    shown = re.findall(r'href="/playlists/pl%3Ax(\d+)"', deep.text)
    assert [int(s) for s in shown] == list(range(2_901, 2_901 + PLAYLISTS_PER_PAGE))
    for cost in (first_cost, deep_cost):
        assert cost.problems == []
    assert abs(deep_cost.total - first_cost.total) <= first_cost.total // 20
    assert deep_cost.total < 100 * PLAYLISTS_PER_PAGE, deep_cost.total
    back, _ = _get(client, recorder, big, "/playlists", before="pl:x02951")
    assert re.findall(r'href="/playlists/pl%3Ax(\d+)"', back.text) == shown
    sonic, sonic_cost = _get(
        client, recorder, big, "/rest/getPlaylists", apiKey=api_key, f="json",
        catalogAfter="pl:x02900", catalogCount=500,
    )  # fmt: skip
    listed = sonic.json()["subsonic-response"]["playlists"]["playlist"]
    assert [p["id"] for p in listed][:2] == ["pl:x02901", "pl:x02902"] and len(listed) == 100
    assert sonic_cost.problems == []


def test_search_finds_playlists_without_scanning(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    for q in ("long playl", "patient", "fill"):
        found, cost = _get(client, recorder, big, "/api/v1/search", q=q)
        assert found.json()["playlists"], q
        assert cost.problems == [], q
    found, _ = _get(client, recorder, big, "/api/v1/search", q="long playl")
    assert [p["id"] for p in found.json()["playlists"]] == [PLAYLIST]
