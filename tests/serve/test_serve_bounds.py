"""Serving paths that must cost the same on a small and a large catalog.

Two catalogs made alike by direct inserts, the second 15 times the first: the web search
pages (keyset links), word searches and similar songs in a music folder, album pages
(tracks read in index order), and the statistics (kept counts). Every statement a
request runs is captured (tests/statements.py) and run again here: its query plan reads
index ranges (no SCAN of a table that grows with the catalog, no temporary B-tree), and
the SQLite virtual machine steps it takes (counted by a progress handler) are the same on
both catalogs, and on a page deep in a list as on the first.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import libsonic
import pytest
from click.testing import CliRunner

from phonotheca.catalog import library, schema, search
from phonotheca.cli import main
from phonotheca.serve.pages import PAGE_SIZE
from phonotheca.serve.state import StateStore
from phonotheca.serve.subsonic.searching import FOLDER_BATCH, FOLDER_BATCHES
from tests.serve.conftest import LiveServer, make_app
from tests.serve.test_long_lists import _connections
from tests.statements import Recorder, recording

SMALL, LARGE = 6_000, 90_000
HELD = "bounds_pop-000-100_0001"
TRACKS_PER_ALBUM = 8
BIG = {
    "tracks",
    "albums",
    "artists",
    "genres",
    "track_genres",
    "album_genres",
    "track_artists",
    "album_artists",
    "images",
    "ledger",
    "search_rank",
    "song_order",
    "album_order",
    "artist_order",
    "artist_albums",
    "album_stats",
    "artist_stats",
    "playable",
    "ranges",
}
NEXT = re.compile(r'href="/\?q=[^"&]*&amp;after=(\d+)" rel="next"')
PREV = re.compile(r'href="/\?q=[^"&]*&amp;before=(\d+)" rel="prev"')
TRACK_LINK = re.compile(r'href="/tracks/bounds%3Atrack%3A(\d+)"')


def _fill(conn: sqlite3.Connection, n: int) -> None:
    """``n`` tracks titled "Lovely song <i>", 8 to an album, on two discs numbered against
    the rowid order (so that rowid order is not the album's); every tenth track (ids
    ending in 3) packed in the collection :data:`HELD`, the others skipped."""
    albums = n // TRACKS_PER_ALBUM
    artists = 50 + n // 200
    conn.executescript(
        f"""
        BEGIN;
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {artists})
        INSERT INTO artists(id, public_id, name) SELECT i, 'bounds:artist:' || i,
        'Singer ' || i FROM k;
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {albums})
        INSERT INTO albums(id, public_id, title, artist_credit, release_date)
        SELECT i, 'bounds:album:' || i, 'Love album ' || i, 'Singer ' || (i % {artists} + 1),
               printf('%04d-01-01', 1960 + i % 60) FROM k;
        INSERT INTO album_artists(album_id, position, artist_id)
        SELECT id, 0, id % {artists} + 1 FROM albums;
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n})
        INSERT INTO tracks(id, public_id, title, artist_credit, album_id, disc_number,
                           track_number, duration_ms, popularity)
        SELECT i, 'bounds:track:' || i, 'Lovely song ' || i,
               'Singer ' || (((i - 1) / {TRACKS_PER_ALBUM} + 1) % {artists} + 1),
               (i - 1) / {TRACKS_PER_ALBUM} + 1, 2 - ((i - 1) % 8) / 4, 4 - (i - 1) % 4,
               200000, i % 101 FROM k;
        INSERT INTO track_artists(track_id, position, artist_id)
        SELECT t.id, 0, aa.artist_id FROM tracks t
        JOIN album_artists aa ON aa.album_id = t.album_id;
        INSERT INTO genres(id, name) VALUES (1, 'Soul'), (2, 'Jazz'), (3, 'Folk');
        INSERT INTO track_genres SELECT id, id % 3 + 1 FROM tracks;
        INSERT INTO plans(id, created_at, budget, settings) VALUES (1, '2026', 1, '{{}}');
        INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume, offset, length,
                           codec, position)
        SELECT id, 1, 'packed', 'original', '{HELD}', 'bounds.0001.tar', 512, 1000, 'flac',
               row_number() OVER (ORDER BY id) - 1 FROM tracks WHERE id % 10 = 3;
        INSERT INTO ledger(track_id, plan_id, status, tier, planned_size)
        SELECT id, 1, 'skipped_budget', 'metadata', 0 FROM tracks WHERE id % 10 <> 3;
        INSERT INTO collections(name, kind, seq, plan_id, status, items, built_at)
        SELECT '{HELD}', 'audio', 1, 1, 'published', count(*), '2026-01-01T00:00:00Z'
        FROM ledger WHERE status = 'packed';
        COMMIT;
        """
    )


@dataclass
class Site:
    root: Path
    tracks: int
    live: LiveServer
    http: httpx.Client
    sonic: libsonic.Connection
    api_key: str

    def subsonic(self, method: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(
            f"/rest/{method}", params={**params, "apiKey": self.api_key, "f": "json"}
        ).json()["subsonic-response"]
        assert body["status"] == "ok", body
        return body


def _make(base: Path, n: int) -> Path:
    root = base / f"arc{n}"
    result = CliRunner().invoke(main, ["init", str(root), "--name", "bounds"])
    assert result.exit_code == 0, result.output
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        _fill(conn, n)
        search.rebuild_search(conn)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    (root / "torrents" / HELD / "data").mkdir(parents=True)
    library.build(root / "catalog.sqlite3", root / library.LIBRARY_FILE, [HELD])
    return root


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[list[Site]]:
    base = tmp_path_factory.mktemp("bounds")
    out: list[Site] = []
    with recording(recorder):
        try:
            for n in (SMALL, LARGE):
                root = _make(base, n)
                store = StateStore(root / "state.sqlite3", password_cost=12)
                store.add_user("eve", "eve's web password")
                creds = store.rotate_subsonic_credentials("eve")
                store.close()
                live = LiveServer(make_app(root)).__enter__()
                sonic = libsonic.Connection(
                    "http://127.0.0.1", creds.user, creds.password, port=live.port,
                    serverPath="/rest", appName="bounds-tests", apiVersion="1.16.1",
                    insecure=True,
                )  # fmt: skip
                http = httpx.Client(base_url=live.url, timeout=60)
                out.append(Site(root, n, live, http, sonic, creds.api_key))
            yield out
        finally:
            for site in out:
                site.http.close()
                site.live.__exit__(None, None, None)


_SCAN = re.compile(r"\bSCAN (\w+)")
SMALL_SORTS = ("ORDER BY i.kind != 'front', i.position", "FROM plans WHERE report IS NOT NULL")
"""Statements that may sort rows whose number does not grow with the catalog: an album's
images (a handful, front cover first); the plans (one per ``phonotheca plan`` run, where
ANALYZE saw one row: SQLite sorts it rather than walk the rowids backwards)."""


class Cost:
    """A request's statements: their plans' problems and the VM steps they take, run
    again here. A sort inside a correlated subquery (a song's few genre names, in order)
    is bounded by the item, not the catalog: only sorts of a statement's own rows count."""

    def __init__(self, root: Path, statements: list[tuple[str, str]]) -> None:
        self.problems: list[str] = []
        self.total = 0
        conns = _connections(root)
        try:
            for where, sql in statements:
                if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                conn = conns[where]
                nodes: dict[int, tuple[int, str]] = {}
                for node, parent, _, detail in conn.execute("EXPLAIN QUERY PLAN " + sql):
                    nodes[node] = (parent, str(detail))
                    scanned = _SCAN.search(detail)
                    if (scanned and scanned.group(1) in BIG) or (
                        "TEMP B-TREE" in detail
                        and not _in_subquery(nodes, parent)
                        and not any(ok in sql for ok in SMALL_SORTS)
                    ):
                        self.problems.append(f"{where}: {detail}: {sql[:300]}")
                steps = [0]

                def count(steps: list[int] = steps) -> int:
                    steps[0] += 1
                    return 0

                conn.set_progress_handler(count, 1)
                conn.execute(sql).fetchall()
                conn.set_progress_handler(None, 1)
                self.total += steps[0]
        finally:
            for conn in conns.values():
                conn.close()


def _in_subquery(nodes: dict[int, tuple[int, str]], parent: int) -> bool:
    while parent in nodes:
        parent, detail = nodes[parent]
        if "CORRELATED" in detail:
            return True
    return False


def _cost(site: Site, recorder: Recorder, url: str) -> tuple[httpx.Response, Cost]:
    """The answer to ``url`` and the cost of its statements, the second time it is asked
    (the first may make the library file current or fill a cache)."""
    site.http.get(url)
    recorder.take()
    response = site.http.get(url)
    return response, Cost(site.root, recorder.take())


def _same(small: int, large: int) -> bool:
    """VM steps "the same" on both catalogs: within 10 % (a B-tree one level deeper)."""
    return abs(large - small) <= small // 10


# -- the web search pages ----------------------------------------------------------------------


def test_search_pages_by_keyset_at_any_depth(sites: list[Site], recorder: Recorder) -> None:
    totals = []
    for site in sites:
        first, first_cost = _cost(site, recorder, "/?q=love")
        assert first.status_code == 200
        shown = TRACK_LINK.findall(first.text)
        assert len(shown) == PAGE_SIZE and not PREV.search(first.text)
        (after,) = NEXT.findall(first.text)
        second, _ = _cost(site, recorder, f"/?q=love&after={after}")
        again = TRACK_LINK.findall(second.text)
        assert len(again) == PAGE_SIZE and not set(again) & set(shown)
        # Back from the second page: the first page again.
        (before,) = PREV.findall(second.text)
        back, _ = _cost(site, recorder, f"/?q=love&before={before}")
        assert TRACK_LINK.findall(back.text) == shown and not PREV.search(back.text)
        # The index's rank order is the pages' order.
        conn = sqlite3.connect(site.root / "catalog.sqlite3")
        keys = [int(k) for (k,) in conn.execute("SELECT key FROM search_rank ORDER BY key")]
        by_key = dict(conn.execute("SELECT key, track_id FROM search_rank"))
        conn.close()
        assert [int(t) for t in shown] == [by_key[k] for k in keys[:PAGE_SIZE]]
        # A page near the end costs what the first does.
        deep_key = keys[-PAGE_SIZE - 10]
        deep, deep_cost = _cost(site, recorder, f"/?q=love&after={deep_key}")
        assert [int(t) for t in TRACK_LINK.findall(deep.text)] == [
            by_key[k] for k in keys[-PAGE_SIZE - 9 : -9]
        ]
        last, _ = _cost(site, recorder, f"/?q=love&after={keys[-5]}")
        assert len(TRACK_LINK.findall(last.text)) == 4 and not NEXT.search(last.text)
        for cost in (first_cost, deep_cost):
            assert cost.problems == []
        assert _same(first_cost.total, deep_cost.total), (first_cost.total, deep_cost.total)
        totals.append(deep_cost.total)
    assert _same(*totals), totals


def test_old_numbered_search_pages_lead_to_the_first(sites: list[Site]) -> None:
    site = sites[0]
    for page in ("2", "201", "-1", "many"):
        r = site.http.get(f"/?q=love%20song&page={page}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/?q=love%20song", page
    assert site.http.get("/?q=love&page=7", follow_redirects=True).status_code == 200
    assert site.http.get("/?q=love&after=-1").status_code == 422
    past = site.http.get(f"/?q=love&after={1 << 61}")
    assert past.status_code == 200 and not TRACK_LINK.search(past.text)


# -- word searches and similar songs in a music folder ----------------------------------------


def _held(song_ids: list[str]) -> list[bool]:
    return [int(s.rsplit(":", 1)[1]) % 10 == 3 for s in song_ids]


def test_word_searches_honour_the_music_folder(sites: list[Site], recorder: Recorder) -> None:
    totals = []
    for site in sites:
        mirror = site.sonic.search3("love", songCount=100, albumCount=20, artistCount=20,
                                    musicFolderId=1)["searchResult3"]  # fmt: skip
        songs = [s["id"] for s in mirror["song"]]
        assert len(songs) == 100 and all(_held(songs))
        assert mirror["album"]
        whole = site.sonic.search3("love", songCount=100, musicFolderId=2)["searchResult3"]
        assert not all(_held([s["id"] for s in whole["song"]]))
        # No folder: the server's default ([serve] subsonic_library = "playable").
        default = site.sonic.search3("love", songCount=100)["searchResult3"]
        assert [s["id"] for s in default["song"]] == songs
        two = site.sonic.search2("love", songCount=30, musicFolderId=1)["searchResult2"]
        assert all(_held([s["id"] for s in two["song"]]))
        # Deeper pages of the folder follow on.
        more = site.sonic.search3("love", songCount=50, songOffset=100, musicFolderId=1)
        assert all(_held([s["id"] for s in more["searchResult3"]["song"]]))
        assert not {s["id"] for s in more["searchResult3"]["song"]} & set(songs)
        _, cost = _cost(
            site, recorder,
            f"/rest/search3?query=love&songCount=100&musicFolderId=1&f=json&apiKey={site.api_key}",
        )  # fmt: skip
        assert cost.problems == []
        totals.append(cost.total)
    assert _same(*totals), totals


def test_a_long_prefix_in_a_folder_walks_its_first_letters(
    sites: list[Site], recorder: Recorder
) -> None:
    """ "lovely" (longer than the prefix indexes, and common) is looked for among the
    matches of "love" batch after batch, never by the plain prefix query."""
    for site in sites:
        recorder.take()
        found = site.subsonic("search3", query="lovely", songCount=100, albumCount=0,
                              artistCount=0, musicFolderId=1)["searchResult3"]["song"]  # fmt: skip
        assert len(found) == 100 and all(_held([s["id"] for s in found]))
        ran = [sql for _, sql in recorder.take()]
        assert any("""MATCH '"love"*'""" in sql for sql in ran), ran
        assert not any("""MATCH '"lovely"*'""" in sql for sql in ran), ran


def test_a_folder_with_few_matches_looks_at_a_bounded_number(sites: list[Site]) -> None:
    """Past the batches a search looks at, the folder's deeper matches are not found: an
    empty page, not a walk of every match."""
    site = sites[1]
    reach = FOLDER_BATCH * FOLDER_BATCHES // 10  # a tenth of the matches are held
    beyond = site.subsonic("search3", query="love", songCount=20, songOffset=reach + 100,
                           albumCount=0, artistCount=0, musicFolderId=1)  # fmt: skip
    assert beyond["searchResult3"].get("song", []) == []
    within = site.subsonic("search3", query="love", songCount=20, songOffset=reach - 40,
                           albumCount=0, artistCount=0, musicFolderId=1)  # fmt: skip
    assert len(within["searchResult3"]["song"]) == 20


def test_similar_and_top_songs_honour_a_named_folder(sites: list[Site]) -> None:
    site = sites[1]
    seed = "ar-bounds:artist:7"
    # py-sonic passes no musicFolderId to these calls (the API defines none): an app may.
    mirror = site.subsonic("getSimilarSongs2", id=seed, count=40, musicFolderId=1)
    songs = mirror["similarSongs2"]["song"]
    assert songs and all(_held([s["id"] for s in songs]))
    whole = site.subsonic("getSimilarSongs2", id=seed, count=40)["similarSongs2"]["song"]
    assert not all(_held([s["id"] for s in whole]))
    top = site.subsonic("getTopSongs", artist="Singer 7", count=50, musicFolderId=1)
    found = [s["id"] for s in top["topSongs"]["song"]]
    assert found and all(_held(found))
    every = site.subsonic("getTopSongs", artist="Singer 7", count=50)["topSongs"]["song"]
    assert not all(_held([s["id"] for s in every]))


# -- album pages ---------------------------------------------------------------------------------


def test_album_tracks_are_read_in_index_order(sites: list[Site], recorder: Recorder) -> None:
    album = "bounds:album:77"
    # Tracks 609-616: disc 2 holds the first four ids, each disc is numbered backwards.
    expected = [616, 615, 614, 613, 612, 611, 610, 609]
    totals: list[tuple[int, int, int]] = []
    for site in sites:
        page, web = _cost(site, recorder, f"/albums/{quote(album, safe='')}")
        assert [int(t) for t in TRACK_LINK.findall(page.text)] == expected
        api, json_cost = _cost(site, recorder, f"/api/v1/albums/{quote(album, safe='')}")
        assert [t["id"] for t in api.json()["tracks"]] == [f"bounds:track:{t}" for t in expected]
        sub, sub_cost = _cost(
            site, recorder, f"/rest/getAlbum?id=al-{album}&f=json&apiKey={site.api_key}"
        )
        songs = sub.json()["subsonic-response"]["album"]["song"]
        assert [s["id"] for s in songs] == [f"tr-bounds:track:{t}" for t in expected]
        for cost in (web, json_cost, sub_cost):
            assert cost.problems == []
        totals.append((web.total, json_cost.total, sub_cost.total))
    for small, large in zip(*totals, strict=True):
        assert _same(small, large), totals


# -- statistics ------------------------------------------------------------------------------------


def test_stats_are_read_from_kept_counts(sites: list[Site], recorder: Recorder) -> None:
    """A server computes the figures once per few minutes (then serves them from memory):
    a new server's first request computes them, reading the kept counts, not the ledger."""
    totals = []
    for site in sites:
        held = len(range(3, site.tracks + 1, 10))
        for url in ("/stats", "/api/v1/stats"):
            with LiveServer(make_app(site.root)) as fresh, httpx.Client(base_url=fresh.url) as c:
                recorder.take()
                response = c.get(url)
                ran = recorder.take()
            assert response.status_code == 200
            cost = Cost(site.root, ran)
            # The published collections by kind are still counted: one row per torrent,
            # thousands of times fewer than tracks.
            assert [p for p in cost.problems if "FROM collections" not in p] == []
            assert cost.total > 0
            assert any("ledger_counts" in sql for _, sql in ran)
            assert not [sql for _, sql in ran if re.search(r"\bledger\b", sql)], ran
        stats = response.json()
        assert stats["ledger"] == {"packed": held, "skipped_budget": site.tracks - held}
        assert stats["tiers"] == {"original": held}
        totals.append(cost.total)
    assert _same(*totals), totals


def test_a_built_archive_s_counts_are_its_ledger_s(built_archive: Path) -> None:
    """Plan, build and publish kept ``ledger_counts`` equal to a count of the ledger."""
    conn = sqlite3.connect(built_archive / "catalog.sqlite3")
    try:
        kept = {(s, t): n for s, t, n in conn.execute("SELECT * FROM ledger_counts") if n}
        counted = {
            (s, t): n
            for s, t, n in conn.execute(
                "SELECT status, coalesce(tier, ''), count(*) FROM ledger GROUP BY 1, 2"
            )
        }
    finally:
        conn.close()
    assert kept == counted and kept[("packed", "original")] > 0


WEB_AND_API = [
    "/",
    "/?q=love%20so",
    "/tracks/bounds%3Atrack%3A613",
    "/artists/bounds%3Aartist%3A7",
    "/artists/bounds%3Aartist%3A7?at=5",
    "/genres/Soul?at=1500",
    "/playlists",
    "/shuffle",
    "/torrents",
    "/api/v1/search?q=love&limit=50",
    "/api/v1/search?q=lovel&limit=50",
    "/api/v1/tracks/bounds%3Atrack%3A613",
    "/api/v1/artists/bounds%3Aartist%3A7?offset=3&limit=5",
    "/api/v1/playlists",
    "/api/v1/shuffle?n=20",
    "/api/v1/shuffle?n=20&playable=true",
    "/api/v1/torrents",
]


@pytest.mark.parametrize("url", WEB_AND_API)
def test_every_page_and_api_call_reads_index_ranges(
    sites: list[Site], recorder: Recorder, url: str
) -> None:
    for site in sites:
        response, cost = _cost(site, recorder, url)
        assert response.status_code == 200, url
        assert cost.problems == [], url


SUBSONIC = [
    ("getAlbum", {"id": "al-bounds:album:77"}),
    ("getSong", {"id": "tr-bounds:track:613"}),
    ("getMusicDirectory", {"id": "al-bounds:album:77"}),
    ("getMusicDirectory", {"id": "ar-bounds:artist:7"}),
    ("getArtist", {"id": "ar-bounds:artist:7"}),
    ("getGenres", {}),
    ("getAlbumList", {"type": "alphabeticalByName", "size": 20, "offset": 300}),
    ("getAlbumList2", {"type": "byGenre", "genre": "Jazz", "size": 20, "offset": 100}),
    ("getRandomSongs", {"size": 20}),
    ("getSongsByGenre", {"genre": "Folk", "count": 20, "offset": 500}),
    ("getStarred2", {}),
    ("getPlaylists", {}),
    ("getNowPlaying", {}),
    ("getLyricsBySongId", {"id": "tr-bounds:track:613"}),
    ("search2", {"query": "love", "songCount": 20}),
    ("search3", {"query": "lovel", "songCount": 20, "albumCount": 5, "artistCount": 5}),
    ("search3", {"query": "", "songCount": 20, "songOffset": 400}),
    ("getTopSongs", {"artist": "Singer 7", "count": 20}),
    ("getSimilarSongs", {"id": "tr-bounds:track:613", "count": 20}),
    ("getSimilarSongs2", {"id": "al-bounds:album:77", "count": 20}),
]


@pytest.mark.parametrize(("method", "params"), SUBSONIC)
@pytest.mark.parametrize("folder", [1, 2])
def test_every_subsonic_call_reads_index_ranges(
    sites: list[Site], recorder: Recorder, method: str, params: dict[str, Any], folder: int
) -> None:
    for site in sites:
        query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
        url = f"/rest/{method}?{query}&musicFolderId={folder}&f=json&apiKey={site.api_key}"
        response, cost = _cost(site, recorder, url)
        assert response.json()["subsonic-response"]["status"] == "ok", response.text
        whole = LISTS_WHOLE.get(method)
        assert [p for p in cost.problems if not whole or f"SCAN {whole} " not in p] == [], url


LISTS_WHOLE = {"getGenres": "genres"}
"""Calls whose answer the API makes a whole table (every genre, in name order: a read of
the name index, as long as the answer)."""


def test_api_search_pages_by_key_at_any_depth(sites: list[Site], recorder: Recorder) -> None:
    totals = []
    for site in sites:
        first, first_cost = _cost(site, recorder, "/api/v1/search?q=love&limit=50")
        conn = sqlite3.connect(site.root / "catalog.sqlite3")
        (deep,) = conn.execute(
            "SELECT key FROM search_rank ORDER BY key DESC LIMIT 1 OFFSET 60"
        ).fetchone()
        conn.close()
        page, deep_cost = _cost(site, recorder, f"/api/v1/search?q=love&limit=50&after={deep}")
        assert len(first.json()["tracks"]) == len(page.json()["tracks"]) == 50
        assert first_cost.problems == deep_cost.problems == []
        assert _same(first_cost.total, deep_cost.total), (first_cost.total, deep_cost.total)
        totals.append(deep_cost.total)
    assert _same(*totals), totals
