"""An artist with 10,000 albums and a genre with 50,000 tracks, a page at a time.

The catalog is made by direct inserts (as large as needed for a scan to show), its
library file by :func:`phonotheca.catalog.library.build`, and the real app serves it over
uvicorn. Every statement a page runs is captured: its query plan reads index ranges (no
SCAN of a table that grows with the catalog, no temporary B-tree), and the work it does
(SQLite virtual machine steps, counted by a progress handler when it is run again) is the
same on a page deep in a list as near its start, and far below the list's length.
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
from playwright.sync_api import Browser

from phonotheca.catalog import library, schema
from phonotheca.cli import main
from phonotheca.serve.library import ServerLibrary
from phonotheca.serve.listing import ALBUMS_PER_PAGE, TRACKS_PER_PAGE, Pager
from tests.serve.conftest import LiveServer, copy_archive, make_app
from tests.serve.test_layout import BROKEN_WORDS_JS, OVERFLOW_JS, WIDTHS
from tests.statements import Recorder, recording

ALBUMS = 12_000
BIG_ARTIST_ALBUMS = 10_000
TRACKS_PER_ALBUM = 5
TRACKS = ALBUMS * TRACKS_PER_ALBUM
GENRE = "Drone / Doom"  # a slash: the genre's name is a path segment, percent-encoded
GENRE_TRACKS = 50_000
BIG_ARTIST = "big:artist:1"
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
    "ranges",
}
_SCAN = re.compile(r"\bSCAN (\w+)")
TILE = re.compile(r'class="tile-link" href="/albums/big%3Aalbum%3A(\d+)"')
_AT = re.compile(r'href="[^"?]*(?:\?at=(\d+))?" rel="(\w+)"')


def _fill(conn: sqlite3.Connection) -> None:
    """Artist 1 has albums 1-10,000; 400 others share the rest. Tracks 1-50,000 have the
    genre; 50,001-55,000 "Jazz"; the last 5,000 none of their own, their albums "Folk"
    (the first ten albums too, which their tracks' own genre overrides)."""
    conn.executescript(
        f"""
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 401)
        INSERT INTO artists(id, public_id, name) SELECT i, 'big:artist:' || i, 'Artist ' || i
        FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ALBUMS})
        INSERT INTO albums(id, public_id, title, artist_credit, release_date)
        SELECT i, 'big:album:' || i, 'Album ' || i, 'Artist',
               printf('%04d-%02d-01', 1950 + i % 70, 1 + i % 12) FROM n;
        INSERT INTO album_artists(album_id, position, artist_id)
        SELECT id, 0, CASE WHEN id <= {BIG_ARTIST_ALBUMS} THEN 1 ELSE 2 + id % 400 END
        FROM albums;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TRACKS})
        INSERT INTO tracks(id, public_id, title, artist_credit, album_id, track_number,
                           duration_ms, popularity)
        SELECT i, 'big:track:' || i, 'Track ' || i, 'Artist',
               (i - 1) / {TRACKS_PER_ALBUM} + 1, (i - 1) % {TRACKS_PER_ALBUM} + 1,
               180000, i % 101 FROM n;
        INSERT INTO track_artists(track_id, position, artist_id)
        SELECT t.id, 0, aa.artist_id FROM tracks t
        JOIN album_artists aa ON aa.album_id = t.album_id;
        INSERT INTO genres(id, name) VALUES (1, '{GENRE}'), (2, 'Jazz'), (3, 'Folk');
        INSERT INTO track_genres SELECT id, 1 FROM tracks WHERE id <= {GENRE_TRACKS};
        INSERT INTO track_genres SELECT id, 2 FROM tracks
        WHERE id > {GENRE_TRACKS} AND id <= {GENRE_TRACKS + 5000};
        INSERT INTO album_genres SELECT DISTINCT album_id, 3 FROM tracks
        WHERE id > {GENRE_TRACKS + 5000} OR album_id <= 10;
        COMMIT;
        """
    )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long") / "arc"
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
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def live(big: Path, recorder: Recorder) -> Iterator[LiveServer]:
    with recording(recorder), LiveServer(make_app(big)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as http:
        yield http


def _connections(root: Path) -> dict[str, sqlite3.Connection]:
    catalog = sqlite3.connect(f"{(root / 'catalog.sqlite3').as_uri()}?mode=ro", uri=True)
    lib = sqlite3.connect(f"{(root / library.LIBRARY_FILE).as_uri()}?mode=ro", uri=True)
    lib.execute("ATTACH ? AS c", (f"{(root / 'catalog.sqlite3').as_uri()}?mode=ro",))
    return {"catalog": catalog, "library": lib}


class Cost:
    """A page's statements: their plans' problems and the VM steps they take."""

    def __init__(self, root: Path, statements: list[tuple[str, str]], big: set[str] = BIG) -> None:
        self.problems: list[str] = []
        self.steps: dict[str, int] = {}
        conns = _connections(root)
        try:
            for where, sql in statements:
                if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                conn = conns[where]
                for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
                    detail = str(row[3])
                    scanned = _SCAN.search(detail)
                    if (scanned and scanned.group(1) in big) or "TEMP B-TREE" in detail:
                        self.problems.append(f"{where}: {detail}: {sql[:300]}")
                counter = [0]

                def count(counter: list[int] = counter) -> int:
                    counter[0] += 1
                    return 0

                conn.set_progress_handler(count, 1)
                conn.execute(sql).fetchall()
                conn.set_progress_handler(None, 1)
                self.steps[sql] = self.steps.get(sql, 0) + counter[0]
        finally:
            for conn in conns.values():
                conn.close()

    @property
    def total(self) -> int:
        return sum(self.steps.values())

    def of(self, table: str) -> int:
        return sum(n for sql, n in self.steps.items() if f" {table} " in sql)


def _page(client: httpx.Client, recorder: Recorder, big: Path, url: str) -> tuple[str, Cost]:
    client.get(url)  # the first request may make the library file current
    recorder.take()
    response = client.get(url)
    assert response.status_code == 200, url
    return response.text, Cost(big, recorder.take())


def _links(html: str) -> dict[str, int]:
    """The pager's links: rel -> position (the first page's link has none)."""
    return {rel: int(at or 0) for at, rel in _AT.findall(html)}


def test_an_artist_s_albums_page_through_by_position(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    base = f"/artists/{quote(BIG_ARTIST, safe='')}"
    first, first_cost = _page(client, recorder, big, base)
    assert f"1–{ALBUMS_PER_PAGE} of 10,000 albums" in first
    assert _links(first) == {"next": ALBUMS_PER_PAGE, "last": 9_960}
    assert first.count('class="tile"') == ALBUMS_PER_PAGE
    order = [
        int(a)
        for (a,) in sqlite3.connect(big / "catalog.sqlite3").execute(
            "SELECT id FROM albums WHERE id <= ? ORDER BY release_date, title, id",
            (BIG_ARTIST_ALBUMS,),
        )
    ]
    shown = [int(a) for a in TILE.findall(first)]
    assert shown == order[:ALBUMS_PER_PAGE]

    second, second_cost = _page(client, recorder, big, f"{base}?at={ALBUMS_PER_PAGE}")
    assert TILE.findall(second) == [str(a) for a in order[ALBUMS_PER_PAGE : 2 * ALBUMS_PER_PAGE]]
    deep, deep_cost = _page(client, recorder, big, f"{base}?at=9000")
    last, _ = _page(client, recorder, big, f"{base}?at=9960")
    shown = [int(a) for a in TILE.findall(deep)]
    assert shown == order[9000 : 9000 + ALBUMS_PER_PAGE]
    assert _links(deep) == {"first": 0, "prev": 8940, "next": 9060, "last": 9960}
    assert "Most popular tracks" in first and "Most popular tracks" not in deep
    assert _links(last) == {"first": 0, "prev": 9900}
    assert "9,961–10,000 of 10,000 albums" in last

    for cost in (first_cost, second_cost, deep_cost):
        assert cost.problems == []
    # The list's own reads cost the same at any depth; the whole page as the second.
    assert first_cost.of("artist_albums") == deep_cost.of("artist_albums")
    assert abs(deep_cost.total - second_cost.total) <= second_cost.total // 20
    # Bounded by the page: a few dozen steps an album, where the list has 10,000.
    assert deep_cost.total < 100 * ALBUMS_PER_PAGE < BIG_ARTIST_ALBUMS

    past, _ = _page(client, recorder, big, f"{base}?at=20000")
    assert "No albums this far" in past and _links(past) == {"first": 0, "prev": 9960}
    far, _ = _page(client, recorder, big, f"{base}?at={2**53}")
    assert _links(far) == {"first": 0, "prev": 9960}
    assert client.get(f"{base}?at={2**63}").status_code == 422
    assert client.get(f"{base}?at=-1").status_code == 422


def test_a_genre_s_tracks_page_through_by_position(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    base = f"/genres/{quote(GENRE, safe='')}"
    first, first_cost = _page(client, recorder, big, base)
    assert f"1–{TRACKS_PER_PAGE} of 50,000 tracks" in first
    shown = [int(t) for t in re.findall(r'href="/tracks/big%3Atrack%3A(\d+)"', first)]
    assert shown == list(range(1, TRACKS_PER_PAGE + 1))
    deep, deep_cost = _page(client, recorder, big, f"{base}?at=45000")
    shown = [int(t) for t in re.findall(r'href="/tracks/big%3Atrack%3A(\d+)"', deep)]
    assert shown == list(range(45_001, 45_001 + TRACKS_PER_PAGE))
    assert _links(deep) == {"first": 0, "prev": 44_900, "next": 45_100, "last": 49_900}

    assert first_cost.problems == [] and deep_cost.problems == []
    # The same seeks at any depth (a node of the positions' tree may take a step more).
    assert abs(first_cost.of("song_order") - deep_cost.of("song_order")) <= 8
    assert abs(deep_cost.total - first_cost.total) <= first_cost.total // 20
    assert deep_cost.total < 200 * TRACKS_PER_PAGE < GENRE_TRACKS

    # A track's own genre wins over its album's; without one, its album's.
    jazz, _ = _page(client, recorder, big, "/genres/Jazz")
    assert "1–100 of 5,000 tracks" in jazz
    folk, _ = _page(client, recorder, big, "/genres/Folk")
    assert "1–100 of 5,000 tracks" in folk
    assert client.get("/genres/Polka").status_code == 404
    etag = client.get(base).headers["etag"]
    assert client.get(base, headers={"If-None-Match": etag}).status_code == 304


def test_track_and_album_pages_link_their_genres(
    client: httpx.Client, recorder: Recorder, big: Path
) -> None:
    track, _ = _page(client, recorder, big, "/tracks/big%3Atrack%3A3")
    assert f'<a href="/genres/{quote(GENRE, safe="")}">{GENRE}</a>' in track
    assert "/genres/Folk" not in track  # its own genre wins over its album's
    track, _ = _page(client, recorder, big, f"/tracks/big%3Atrack%3A{TRACKS}")
    assert '<a href="/genres/Folk">Folk</a>' in track
    album, _ = _page(client, recorder, big, "/albums/big%3Aalbum%3A1")
    assert '<a href="/genres/Folk">Folk</a>' in album
    api = client.get("/api/v1/tracks/big%3Atrack%3A3").json()
    assert api["genres"] == [GENRE]
    artist = client.get(
        f"/api/v1/artists/{quote(BIG_ARTIST, safe='')}", params={"offset": 9990, "limit": 50}
    ).json()
    assert artist["album_count"] == BIG_ARTIST_ALBUMS and artist["albums_offset"] == 9990
    assert len(artist["albums"]) == 10 and artist["top_tracks"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_long_list_pages_fit_a_phone_and_a_desktop(
    browser: Browser, live: LiveServer, width: int, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=live.url, viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        for name, path in (
            ("artist", f"/artists/{quote(BIG_ARTIST, safe='')}?at=9000"),
            ("genre", f"/genres/{quote(GENRE, safe='')}?at=45000"),
        ):
            page.goto(path)
            page.wait_for_load_state("load")
            page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
            assert page.evaluate(OVERFLOW_JS) == [], (name, width)
            assert page.evaluate(BROKEN_WORDS_JS) == [], (name, width)
            for nav in page.locator("nav.pager").all():  # above and below the list
                rels = nav.locator("a").evaluate_all("links => links.map(a => a.rel)")
                assert rels == ["first", "prev", "next", "last"], (name, rels)
    finally:
        context.close()


@pytest.mark.parametrize(
    ("at", "total", "previous", "following", "last"),
    [
        (0, 0, None, None, 0),
        (0, 60, None, None, 0),  # one full page
        (0, 61, None, 60, 60),
        (60, 61, 0, None, 60),
        (30, 200, 0, 90, 180),  # a position off the grid pages from where it is
        (500, 200, 180, None, 180),  # past the end: back to the last page
    ],
)
def test_pager_positions(
    at: int, total: int, previous: int | None, following: int | None, last: int
) -> None:
    pager = Pager(at, 60, total)
    assert (pager.previous, pager.next, pager.last) == (previous, following, last)


def test_an_older_library_file_shows_albums_without_top_tracks(
    built_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 1 had no ``artist_top``: while a large catalog's new file is made in the
    background, the server answers from the old one, and the artist page still works."""
    root = copy_archive(built_archive, tmp_path / "arc")
    library.build(root / "catalog.sqlite3", root / library.LIBRARY_FILE, [])
    shelf = sqlite3.connect(root / library.LIBRARY_FILE)
    shelf.execute("DROP TABLE artist_top")
    shelf.commit()
    shelf.close()
    monkeypatch.setattr(ServerLibrary, "_ensure_current", lambda self: None)
    artist = (
        sqlite3.connect(root / "catalog.sqlite3")
        .execute(
            "SELECT ar.public_id FROM artists ar JOIN album_artists aa ON aa.artist_id = ar.id"
            " LIMIT 1"
        )
        .fetchone()[0]
    )
    with (
        LiveServer(make_app(root)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        page = http.get(f"/artists/{quote(artist, safe='')}")
        assert page.status_code == 200
        assert 'class="tile"' in page.text and "Most popular tracks" not in page.text
