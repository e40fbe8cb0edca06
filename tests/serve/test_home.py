"""The home page: what this server plays, read by index ranges whatever the catalog's size;
placeholder art for albums without a cover; human labels on the statistics page."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest

from phonotheca.serve import showcase
from phonotheca.serve.artwork import colours, initials, placeholder
from phonotheca.serve.media import _COVER_SQL
from tests.serve.conftest import HOSTILE_ALBUM, LiveServer, copy_archive, make_app


def _catalog(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)


def _text(html: str) -> str:
    """What a reader sees: the page without its tags (attributes included)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _tiles(html: str, section: str) -> list[str]:
    """The album ids of the tiles under the heading with id ``section``."""
    start = html.index(f'id="{section}"')
    end = html.index("</ul>", start)
    found = re.findall(r'class="tile-link" href="/albums/([^"]+)"', html[start:end])
    return [unquote(m) for m in found]


# -- query plans -----------------------------------------------------------------------------


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


HOME_QUERIES: list[tuple[str, str, tuple[object, ...]]] = [
    ("tracks in the catalog", showcase.CATALOG_TRACKS_SQL, ()),
    ("albums in the catalog", showcase.CATALOG_ALBUMS_SQL, ()),
    ("artists in the catalog", showcase.CATALOG_ARTISTS_SQL, ()),
    ("a collection held", showcase.COLLECTION_SQL, ("x",)),
    ("recently added", showcase.RECENT_SQL, ("x", 10)),
    ("most listened", showcase.POPULAR_SQL, (0, 10)),
    ("newest albums", showcase.NEWEST_ALBUMS_SQL, (10,)),
    ("album rows", showcase.ALBUMS_SQL.format(marks="?,?,?"), (1, 2, 3)),
]


@pytest.mark.parametrize(("what", "sql", "params"), HOME_QUERIES, ids=[q[0] for q in HOME_QUERIES])
def test_home_queries_read_index_ranges(
    built_archive: Path, what: str, sql: str, params: tuple[object, ...]
) -> None:
    """No full scan and no sort: each query walks an index (or the rowid b-tree) from
    where it starts and stops at its LIMIT, so its cost does not grow with the catalog."""
    conn = _catalog(built_archive)
    try:
        plan = _plan(conn, sql, params)
    finally:
        conn.close()
    assert plan, what
    for step in plan:
        assert not step.startswith("SCAN"), (what, plan)
        assert "TEMP B-TREE" not in step, (what, plan)
    assert all(step.startswith(("SEARCH", "SCALAR SUBQUERY")) for step in plan), (what, plan)
    if sql is showcase.RECENT_SQL:
        assert any("INDEX ledger_collection" in s for s in plan), plan
    if sql is showcase.POPULAR_SQL:
        assert "SEARCH r USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan


def test_cover_lookup_of_a_tile_starts_from_the_album(built_archive: Path) -> None:
    """Each tile asks for its album's cover: by the album's public id, then its images;
    the only sort is over that one album's images."""
    conn = _catalog(built_archive)
    try:
        plan = _plan(conn, _COVER_SQL, ("x",))
    finally:
        conn.close()
    assert not any(step.startswith("SCAN") for step in plan), plan
    assert any("albums_public_id" in step for step in plan), plan
    assert any("images_album" in step for step in plan), plan


def test_counts_are_the_largest_ids(built_archive: Path) -> None:
    """The counts read as max(id) are the real counts: ids are dense, rows never deleted."""
    conn = _catalog(built_archive)
    try:
        for table in ("tracks", "albums", "artists"):
            count, largest = conn.execute(f"SELECT count(*), max(id) FROM {table}").fetchone()
            assert count == largest, table
    finally:
        conn.close()


# -- the home page ---------------------------------------------------------------------------


def _held_albums(root: Path) -> tuple[int, set[str]]:
    """Packed tracks and the public ids of their albums, straight from the catalog."""
    conn = _catalog(root)
    try:
        held = conn.execute("SELECT count(*) FROM ledger WHERE status = 'packed'").fetchone()[0]
        albums = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT a.public_id FROM ledger l JOIN tracks t ON t.id = l.track_id"
                " JOIN albums a ON a.id = t.album_id WHERE l.status = 'packed'"
            )
        }
    finally:
        conn.close()
    return int(held), albums


def test_home_page_shows_what_this_server_plays(client: httpx.Client, built_archive: Path) -> None:
    held, held_albums = _held_albums(built_archive)
    conn = _catalog(built_archive)
    tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
    conn.close()
    r = client.get("/")
    assert r.status_code == 200
    text = _text(r.text)
    assert f"{held:,} tracks to play here" in text
    assert f"{tracks:,} tracks in the catalog" in text
    recent = _tiles(r.text, "recent-title")
    popular = _tiles(r.text, "popular-title")
    assert recent and popular
    assert len(recent) == len(set(recent)) and len(popular) == len(set(popular))
    # Only albums of tracks this server holds; all of them, as there are fewer than a shelf.
    assert set(recent) == held_albums
    assert set(popular) == held_albums
    # Every tile has a picture: the cover, or a placeholder drawn inline.
    tiles = re.findall(r'<li class="tile">(.*?)</li>', r.text, re.S)
    assert tiles
    for tile in tiles:
        assert '<img class="art"' in tile or '<svg class="art placeholder"' in tile
    assert any("<img" in t for t in tiles) and any("<svg" in t for t in tiles)


def test_most_listened_comes_first(client: httpx.Client, built_archive: Path) -> None:
    """The shelf follows popularity: the album of the most popular track held leads."""
    conn = _catalog(built_archive)
    top = conn.execute(
        "SELECT a.public_id FROM ledger l JOIN tracks t ON t.id = l.track_id"
        " JOIN albums a ON a.id = t.album_id WHERE l.status = 'packed'"
        " ORDER BY t.popularity DESC, length(coalesce(t.listens, 0)) DESC, t.id LIMIT 1"
    ).fetchone()[0]
    conn.close()
    assert _tiles(client.get("/").text, "popular-title")[0] == top


def test_search_still_answers_on_the_home_url(client: httpx.Client) -> None:
    r = client.get("/", params={"q": "a"})
    assert r.status_code == 200
    assert "Tracks matching" in r.text
    assert 'id="recent-title"' not in r.text


def test_a_server_without_audio_shows_the_catalog(built_archive: Path, tmp_path: Path) -> None:
    """A catalog-only mirror (no collection on its disks): nothing to play, the newest and
    most listened albums of the catalog instead, and no page fails."""
    root = copy_archive(built_archive, tmp_path / "arc")
    shutil.rmtree(root / "torrents")
    (root / "torrents").mkdir()
    with LiveServer(make_app(root)) as server, httpx.Client(base_url=server.url) as c:
        r = c.get("/")
    assert r.status_code == 200
    text = _text(r.text)
    assert "0 tracks to play here" in text
    assert "Newest in the catalog" in text and "Most listened in the catalog" in text
    conn = _catalog(root)
    newest = conn.execute("SELECT public_id FROM albums ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.close()
    assert _tiles(r.text, "recent-title")[0] == newest
    assert len(_tiles(r.text, "popular-title")) == showcase.TILES


# -- placeholder art -------------------------------------------------------------------------


def test_placeholder_is_a_function_of_the_album() -> None:
    a = placeholder("syn:album:1", "Night Night")
    assert a == placeholder("syn:album:1", "Night Night")
    assert colours("syn:album:1") != colours("syn:album:2")
    assert len({colours(f"syn:album:{i}")[0] for i in range(200)}) > 150
    assert ">NN</text>" in a
    assert 'viewBox="0 0 100 100"' in a


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Night Night", "NN"),
        ("The Wall", "W"),
        ("The Dark Side of the Moon", "DS"),
        ("A", "A"),
        ("ok computer", "OC"),
        ("東京 Hits", "東H"),
        ("Ænima", "Æ"),
        ("...", "♪"),
        ("", "♪"),
        ("<script>alert(1)</script>", "SA"),
    ],
)
def test_initials(title: str, expected: str) -> None:
    assert initials(title) == expected


def test_placeholder_escapes_the_title() -> None:
    svg = str(placeholder("test:album:evil", HOSTILE_ALBUM))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_white_letters_stay_readable_on_every_colour() -> None:
    """Contrast of the white initials against the lighter stop: 3:1 at least (large text)."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    worst = min(1.05 / (luminance(colours(f"album:{i}")[0]) + 0.05) for i in range(3000))
    assert worst >= 3.0


def test_album_without_cover_gets_a_placeholder_of_the_cover_size(
    client: httpx.Client, built_archive: Path
) -> None:
    conn = _catalog(built_archive)
    bare = conn.execute(
        "SELECT public_id FROM albums a WHERE NOT EXISTS (SELECT 1 FROM images i"
        " WHERE i.album_id = a.id AND i.blob_sha256 IS NOT NULL) LIMIT 1"
    ).fetchone()[0]
    conn.close()
    html = client.get(f"/albums/{quote(bare, safe='')}").text
    assert '<svg class="cover placeholder"' in html
    assert "/cover" not in html.split("<main", 1)[1]


# -- statistics ------------------------------------------------------------------------------


def test_stats_page_speaks_words_not_ledger_keys(client: httpx.Client) -> None:
    r = client.get("/stats")
    assert r.status_code == 200
    text = _text(r.text)
    for key in ("missing_source", "skipped_budget", "skipped_duplicate", "packed"):
        assert key not in text
    assert re.search(r"\b[a-z]+_[a-z_]+\b", text) is None, text
    assert "No audio file yet" in text
    assert "Archived in a published torrent" in text
    assert "Original file, bit-exact" in text
