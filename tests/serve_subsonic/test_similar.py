"""``getSimilarSongs`` and ``getSimilarSongs2``: the same artists and genres, the songs this
server plays first, ``count`` honoured; and every query a bounded index range."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import httpx
import libsonic
import pytest
from libsonic.errors import DataNotFoundError

from phonotheca.archive import open_archive
from phonotheca.catalog import schema
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.subsonic import similar
from phonotheca.serve.subsonic.call import Call
from tests.serve_subsonic.conftest import Fixture, LiveServer
from tests.serve_subsonic.test_protocol import children, json_call, xml_call
from tests.serve_subsonic.test_pysonic import connect


@pytest.fixture
def catalog(archive_fixture: Fixture) -> Iterator[sqlite3.Connection]:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def sonic(live: LiveServer, archive_fixture: Fixture) -> libsonic.Connection:
    return connect(live, archive_fixture.creds.user, archive_fixture.creds.password, legacy=False)


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def key(fixture: Fixture) -> dict[str, str]:
    return {"apiKey": fixture.creds.api_key, "v": "1.16.1", "c": "test"}


def rowid(conn: sqlite3.Connection, song_id: str) -> int:
    row = conn.execute("SELECT id FROM tracks WHERE public_id = ?", (song_id[3:],)).fetchone()
    return int(row[0])


def artists_of(conn: sqlite3.Connection, track: int) -> set[int]:
    return {
        r[0]
        for r in conn.execute("SELECT artist_id FROM track_artists WHERE track_id = ?", (track,))
    }


def genres_of(conn: sqlite3.Connection, track: int) -> set[int]:
    """A track's genres: its own, else its album's."""
    own = {
        r[0] for r in conn.execute("SELECT genre_id FROM track_genres WHERE track_id = ?", (track,))
    }
    if own:
        return own
    return {
        r[0]
        for r in conn.execute(
            "SELECT g.genre_id FROM tracks t JOIN album_genres g ON g.album_id = t.album_id"
            " WHERE t.id = ?",
            (track,),
        )
    }


def playable_first(ids: list[str], fixture: Fixture) -> int:
    """How many of the songs this server plays, checking that they come first."""
    present = {f"tr-{p.public_id}" for p in fixture.present}
    here = [i in present for i in ids]
    assert here == sorted(here, reverse=True), "a song this server plays after one it does not"
    return sum(here)


def test_similar_songs2_of_an_artist(
    sonic: libsonic.Connection, archive_fixture: Fixture, catalog: sqlite3.Connection
) -> None:
    artist_id, artist_pid = catalog.execute(
        "SELECT ar.id, ar.public_id FROM track_artists x JOIN artists ar ON ar.id = x.artist_id"
        " GROUP BY ar.id ORDER BY count(*) DESC, ar.id LIMIT 1"
    ).fetchone()
    own = {
        r[0]
        for r in catalog.execute(
            "SELECT track_id FROM track_artists WHERE artist_id = ?", (artist_id,)
        )
    }
    assert 1 < len(own) < similar.DEFAULT_COUNT
    songs = sonic.getSimilarSongs2(f"ar-{artist_pid}")["similarSongs2"]["song"]
    ids = [s["id"] for s in songs]
    assert len(ids) == len(set(ids)) <= similar.DEFAULT_COUNT
    found = {rowid(catalog, i) for i in ids}
    assert own <= found  # an artist with few tracks: all of them
    artist_genres = set().union(*(genres_of(catalog, t) for t in own))
    assert all(genres_of(catalog, t) & artist_genres for t in found - own)
    assert found - own, "songs of the same genres by other artists"
    assert playable_first(ids, archive_fixture) > 0


def test_similar_songs_of_a_song(
    sonic: libsonic.Connection, archive_fixture: Fixture, catalog: sqlite3.Connection
) -> None:
    for packed in archive_fixture.present:
        seed = f"tr-{packed.public_id}"
        track = rowid(catalog, seed)
        songs = sonic.getSimilarSongs(seed, count=20)["similarSongs"]["song"]
        ids = [s["id"] for s in songs]
        assert seed not in ids and len(ids) == len(set(ids)) <= 20
        for other in (rowid(catalog, i) for i in ids):
            same_artist = artists_of(catalog, other) & artists_of(catalog, track)
            assert same_artist or genres_of(catalog, other) & genres_of(catalog, track)
        playable_first(ids, archive_fixture)


def test_count_is_honoured_and_capped(
    sonic: libsonic.Connection, archive_fixture: Fixture, catalog: sqlite3.Connection
) -> None:
    (album_pid,) = catalog.execute(
        "SELECT a.public_id FROM albums a JOIN tracks t ON t.album_id = a.id"
        " GROUP BY a.id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    album = f"al-{album_pid}"
    assert len(sonic.getSimilarSongs2(album, count=3)["similarSongs2"]["song"]) == 3
    assert len(sonic.getSimilarSongs2(album, count=1)["similarSongs2"]["song"]) == 1
    assert not sonic.getSimilarSongs2(album, count=0)["similarSongs2"].get("song")
    everything = sonic.getSimilarSongs2(album, count=10**9)["similarSongs2"]["song"]
    assert 3 < len(everything) <= similar.MAX_COUNT
    playable_first([s["id"] for s in everything], archive_fixture)


def test_xml_json_and_errors(
    client: httpx.Client, archive_fixture: Fixture, catalog: sqlite3.Connection
) -> None:
    (album_pid,) = catalog.execute("SELECT public_id FROM albums ORDER BY id LIMIT 1").fetchone()
    params = {**key(archive_fixture), "id": f"al-{album_pid}", "count": "4"}
    (similar_songs,) = children(xml_call(client, "getSimilarSongs", **params), "similarSongs")
    songs = children(similar_songs, "song")
    assert 0 < len(songs) <= 4
    assert all(s.get("id", "").startswith("tr-") and s.get("isDir") == "false" for s in songs)
    (similar2,) = children(xml_call(client, "getSimilarSongs2.view", **params), "similarSongs2")
    assert 0 < len(children(similar2, "song")) <= 4
    body = json_call(client, "getSimilarSongs2", **params)
    assert 0 < len(body["similarSongs2"]["song"]) <= 4
    assert all(s["type"] == "music" for s in body["similarSongs2"]["song"])
    body = json_call(client, "getSimilarSongs", **params)
    assert 0 < len(body["similarSongs"]["song"]) <= 4

    for method in ("getSimilarSongs", "getSimilarSongs2"):
        for extra, code in (({}, 10), ({"id": "tr-no:such:track"}, 70), ({"id": "junk"}, 70)):
            body = json_call(client, method, **key(archive_fixture), **extra)
            assert body["status"] == "failed" and body["error"]["code"] == code, (method, extra)
            root = xml_call(client, method, **key(archive_fixture), **extra)
            assert children(root, "error")[0].get("code") == str(code)


def test_py_sonic_errors(sonic: libsonic.Connection) -> None:
    with pytest.raises(DataNotFoundError):
        sonic.getSimilarSongs2("ar-no:such:artist")
    with pytest.raises(DataNotFoundError):
        sonic.getSimilarSongs("tr-no:such:track")


# Tables whose size follows the catalog's: a query may look rows up in them through an
# index, never read them through.
_BIG = {"tracks", "track_artists", "track_genres", "album_genres", "albums", "album_artists",
        "artists", "ledger", "images", "external_ids", "search_rank"}  # fmt: skip


def test_every_query_is_a_bounded_index_range(
    archive_fixture: Fixture, catalog: sqlite3.Connection
) -> None:
    """The cost of a call does not grow with the catalog: no query reads a big table
    through (SCAN), none sorts at random, every list of candidates has a LIMIT."""
    ctx = ServeContext(open_archive(archive_fixture.root).settings, [archive_fixture.root])
    create_app(ctx)  # attaches the state and the media library
    user = ctx.state.get_user(archive_fixture.creds.user)
    conn = ctx.catalog()
    seeds = [
        f"tr-{archive_fixture.present[0].public_id}",
        "al-" + catalog.execute("SELECT public_id FROM albums LIMIT 1").fetchone()[0],
        "ar-" + catalog.execute("SELECT public_id FROM artists LIMIT 1").fetchone()[0],
    ]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        for seed in seeds:
            call = Call(ctx, None, [("id", seed), ("count", "30")], user)  # type: ignore[arg-type]
            assert similar.get_similar_songs2(call)["similarSongs2"]["song"]
    finally:
        conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert any("FROM track_artists WHERE artist_id" in s for s in selects)  # same artist
    assert any("SELECT min(id) FROM tracks" in s for s in selects)  # genre draws, catalog
    assert any("INDEXED BY ledger_collection" in s for s in selects)  # genre draws, playable
    for sql in selects:
        assert "random()" not in sql.lower(), sql
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        for step in plan:
            scanned = re.match(r"SCAN (\w+)", step)
            assert scanned is None or scanned.group(1) not in _BIG, (sql, plan)
        if "FROM track_artists WHERE artist_id" in sql:
            assert "LIMIT" in sql or "min(" in sql or "max(" in sql, sql
            assert any("track_artists_artist" in step for step in plan), plan
