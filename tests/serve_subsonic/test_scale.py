"""Lists at scale: every list call reads index ranges, counts agree with lists, both folders.

A synthetic catalog of 20,000 tracks is imported as a user does; a tenth of its tracks
are then "held": packed in a collection present on disk (the ledger says so, as after a
build). Every statement the server runs for a call is captured and its query plan
checked: no SCAN of a table that grows with the catalog, and no temporary B-tree (a sort)
in the list queries, at offset 0 and at the end of each list.
"""

from __future__ import annotations

import gzip
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libsonic
import pytest
from click.testing import CliRunner

from phonotheca.catalog import schema
from phonotheca.catalog.library import LIBRARY_FILE
from phonotheca.cli import main
from phonotheca.serve import budget
from phonotheca.serve.context import ServeContext
from phonotheca.serve.state import StateStore
from phonotheca.serve.subsonic import browsing
from tests.serve_subsonic.conftest import LiveServer
from tests.statements import Recorder, recording

TRACKS = 20_000
HELD = "scale_pop-000-100_0001"
BIG = {
    "tracks",
    "albums",
    "artists",
    "track_genres",
    "album_genres",
    "track_artists",
    "album_artists",
    "ledger",
    "song_order",
    "album_order",
    "artist_order",
    "artist_albums",
    "album_stats",
    "artist_stats",
}


@dataclass
class Scale:
    root: Path
    api_key: str
    user: str
    password: str
    held_tracks: int


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Scale:
    base = tmp_path_factory.mktemp("scale")
    root, catalog = base / "scale", base / "catalog.jsonl"
    _run("synth", "catalog", "--tracks", str(TRACKS), "--seed", "3", str(catalog))
    _run("init", str(root), "--name", "scale")
    _run("import", "jsonl", "--archive", str(root), str(catalog))
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO plans(id, created_at, budget, settings) VALUES(1, '2026', 1, '{}')"
            )
            conn.execute(
                "INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume,"
                " offset, length, codec, position)"
                " SELECT id, 1, 'packed', 'original', ?, 'scale.0001.tar', 512, 1000, 'flac',"
                " row_number() OVER (ORDER BY id) - 1 FROM tracks WHERE id % 10 = 3",
                (HELD,),
            )
            held = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
            conn.execute(
                "INSERT INTO collections(name, kind, seq, plan_id, status, items, built_at)"
                " VALUES(?, 'audio', 1, 1, 'published', ?, '2026-01-01T00:00:00Z')",
                (HELD, held),
            )
    finally:
        conn.close()
    (root / "torrents" / HELD / "data").mkdir(parents=True)
    store = StateStore(root / "state.sqlite3")
    store.add_user("bob", "bob's web password")
    creds = store.rotate_subsonic_credentials("bob")
    store.close()
    return Scale(root, creds.api_key, creds.user, creds.password, held)


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def server(scale: Scale, recorder: Recorder) -> Iterator[LiveServer]:
    with recording(recorder):
        live = LiveServer(scale.root)
        live.start()
        try:
            yield live
        finally:
            live.stop()


class Api:
    def __init__(self, live: LiveServer, key: str) -> None:
        self.client = httpx.Client(base_url=live.url, timeout=60)
        self.key = key

    def raw(self, method: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        return self.client.get(
            f"/rest/{method}", params={"f": "json", **params, "apiKey": self.key}, headers=headers
        )

    def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.raw(method, **params).json()["subsonic-response"]
        assert body["status"] == "ok", body
        return body


@pytest.fixture(scope="module")
def api(server: LiveServer, scale: Scale) -> Iterator[Api]:
    client = Api(server, scale.api_key)
    try:
        yield client
    finally:
        client.client.close()


@pytest.fixture(scope="module")
def sonic(server: LiveServer, scale: Scale) -> libsonic.Connection:
    return libsonic.Connection(
        "http://127.0.0.1",
        scale.user,
        scale.password,
        port=server.port,
        serverPath="/rest",
        appName="phonotheca-tests",
        apiVersion="1.16.1",
        insecure=True,
    )


@pytest.fixture(scope="module")
def catalog(scale: Scale) -> Iterator[sqlite3.Connection]:
    conn = schema.connect(scale.root / "catalog.sqlite3", readonly=True)
    try:
        yield conn
    finally:
        conn.close()


_SCAN = re.compile(r"\bSCAN (\w+)")


def _problems(scale: Scale, statements: list[tuple[str, str]]) -> list[str]:
    """Plans that scan a table growing with the catalog, or sort a list query's rows."""
    conn = sqlite3.connect(f"{(scale.root / LIBRARY_FILE).as_uri()}?mode=ro", uri=True)
    conn.execute("ATTACH ? AS c", (f"{(scale.root / 'catalog.sqlite3').as_uri()}?mode=ro",))
    out = []
    try:
        for where, sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
                detail = str(row[3])
                scanned = _SCAN.search(detail)
                if scanned and scanned.group(1) in BIG:
                    out.append(f"{where}: {detail}: {sql[:200]}")
                if where == "library" and "TEMP B-TREE" in detail:
                    out.append(f"{where}: {detail}: {sql[:200]}")
    finally:
        conn.close()
    return out


def _indexed(api: Api, scale: Scale, recorder: Recorder, method: str, **params: Any) -> Any:
    """The call's answer, after checking the plans of what it ran, twice (the first call
    may make a prepared answer the second reuses)."""
    recorder.take()
    api(method, **params)
    body = api(method, **params)
    assert _problems(scale, recorder.take()) == [], method
    return body


def _albums_in(catalog: sqlite3.Connection, folder: int) -> int:
    if folder == 2:
        return int(catalog.execute("SELECT count(*) FROM albums").fetchone()[0])
    return int(
        catalog.execute(
            "SELECT count(DISTINCT t.album_id) FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " WHERE l.status = 'packed' AND t.album_id IS NOT NULL"
        ).fetchone()[0]
    )


@pytest.mark.parametrize("folder", [1, 2])
def test_every_list_reads_an_index_range(
    api: Api, scale: Scale, recorder: Recorder, catalog: sqlite3.Connection, folder: int
) -> None:
    albums = _albums_in(catalog, folder)
    songs = scale.held_tracks if folder == 1 else TRACKS
    genre = catalog.execute(
        "SELECT g.name FROM album_genres ag JOIN genres g ON g.id = ag.genre_id"
        " GROUP BY g.id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    f = {"musicFolderId": folder}
    for kind in ("newest", "alphabeticalByName", "alphabeticalByArtist", "random", "highest"):
        for offset in (0, albums - 3):
            body = _indexed(
                api, scale, recorder, "getAlbumList2", type=kind, size=5, offset=offset, **f
            )
            expected = 0 if kind == "highest" else 5 if kind == "random" or offset == 0 else 3
            assert len(body["albumList2"]["album"]) == expected, (kind, offset)
    for kind in ("frequent", "recent", "starred"):
        _indexed(api, scale, recorder, "getAlbumList2", type=kind, size=5, **f)
    years = _indexed(
        api, scale, recorder, "getAlbumList2", type="byYear", fromYear=2020, toYear=1950, size=50,
        offset=10, **f,
    )["albumList2"]["album"]  # fmt: skip
    assert [a["year"] for a in years] == sorted((a["year"] for a in years), reverse=True)
    by_genre = _indexed(
        api, scale, recorder, "getAlbumList2", type="byGenre", genre=genre, size=50, **f
    )["albumList2"]["album"]
    assert by_genre and all(genre in [g["name"] for g in a["genres"]] for a in by_genre)
    deep = _indexed(
        api, scale, recorder, "search3", query="", artistCount=0, albumCount=0, songCount=10,
        songOffset=songs - 4, **f,
    )["searchResult3"]  # fmt: skip
    assert len(deep["song"]) == 4
    for method, params in (
        ("getArtists", {}),
        ("getIndexes", {}),
        ("getGenres", {}),
        ("getSongsByGenre", {"genre": genre, "count": 20, "offset": 100}),
        ("getRandomSongs", {"size": 20}),
        ("getRandomSongs", {"size": 20, "genre": genre}),
        ("getRandomSongs", {"size": 20, "fromYear": 1990, "toYear": 1999}),
        ("search3", {"query": "", "artistCount": 20, "albumCount": 20, "songCount": 0,
                     "artistOffset": 50, "albumOffset": albums - 1}),
    ):  # fmt: skip
        _indexed(api, scale, recorder, method, **params, **f)
    artist = api("getArtists", **f)["artists"]["index"][0]["artist"][0]
    listed = _indexed(api, scale, recorder, "getArtist", id=artist["id"], **f)["artist"]
    assert listed["albumCount"] == len(listed["album"]) == artist["albumCount"]
    _indexed(api, scale, recorder, "getMusicDirectory", id=artist["id"], **f)


@pytest.mark.parametrize("folder", [1, 2])
def test_counts_agree_with_the_lists_they_count(
    api: Api, sonic: libsonic.Connection, catalog: sqlite3.Connection, scale: Scale, folder: int
) -> None:
    # Every artist of the index: albumCount is the length of getArtist's album list.
    index = sonic.getArtists(musicFolderId=folder)["artists"]["index"]
    artists = [a for group in index for a in group["artist"]]
    assert artists and [g["name"] for g in index] == sorted(g["name"] for g in index)
    for artist in artists[:: max(1, len(artists) // 40)]:
        got = api("getArtist", id=artist["id"], musicFolderId=folder)["artist"]
        assert len(got["album"]) == got["albumCount"] == artist["albumCount"], artist
    # Genres: songCount and albumCount are what getSongsByGenre and byGenre page through.
    genres = api("getGenres", musicFolderId=folder)["genres"]["genre"]
    for genre in sorted(genres, key=lambda g: -g["songCount"])[:2]:
        songs: list[str] = []
        while page := sonic.getSongsByGenre(
            genre["value"], count=500, offset=len(songs), musicFolderId=folder
        )["songsByGenre"].get("song", []):
            songs += [s["id"] for s in page]
        assert len(songs) == len(set(songs)) == genre["songCount"] > 0
        albums: list[str] = []
        while page := sonic.getAlbumList2(
            "byGenre", size=500, offset=len(albums), genre=genre["value"], musicFolderId=folder
        )["albumList2"].get("album", []):
            albums += [a["id"] for a in page]
        assert len(albums) == len(set(albums)) == genre["albumCount"] > 0
    # Syncing the whole folder through search3 gives each of its albums once.
    total = _albums_in(catalog, folder)
    synced: list[str] = []
    while page := sonic.search3(
        "", artistCount=0, albumCount=500, albumOffset=len(synced), songCount=0,
        musicFolderId=folder,
    )["searchResult3"].get("album", []):  # fmt: skip
        synced += [a["id"] for a in page]
    assert len(synced) == len(set(synced)) == total


def test_folders_and_their_default(api: Api, sonic: libsonic.Connection, scale: Scale) -> None:
    folders = sonic.getMusicFolders()["musicFolders"]["musicFolder"]
    assert [(f["id"], f["name"]) for f in folders] == [(1, "In this mirror"), (2, "Whole catalog")]
    held = {
        s["id"]
        for s in api("getSongsByGenre", genre=_top_genre(api), count=500)["songsByGenre"]["song"]
    }
    in_mirror = {
        s["id"]
        for s in api("getSongsByGenre", genre=_top_genre(api), count=500, musicFolderId=1)[
            "songsByGenre"
        ]["song"]
    }
    assert held == in_mirror  # no musicFolderId: [serve] subsonic_library = "playable"
    bad = api.raw("getAlbumList2", type="newest", musicFolderId=3).json()["subsonic-response"]
    assert bad["error"]["code"] == 70 and "Whole catalog" in bad["error"]["message"]
    big = api.raw("getAlbumList2", type="newest", size=501).json()["subsonic-response"]
    assert big["error"]["code"] == 0 and "at most 500" in big["error"]["message"]


def _top_genre(api: Api) -> str:
    genres = api("getGenres", musicFolderId=1)["genres"]["genre"]
    return str(max(genres, key=lambda g: g["songCount"])["value"])


def test_get_artists_is_prepared_with_an_etag(api: Api) -> None:
    first = api.raw("getArtists", musicFolderId=2)
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
    again = api.raw("getArtists", headers={"If-None-Match": etag}, musicFolderId=2)
    assert again.status_code == 304 and again.content == b""
    other = api.raw("getArtists", headers={"If-None-Match": etag}, musicFolderId=1)
    assert other.status_code == 200 and other.headers["etag"] != etag
    assert other.json()["subsonic-response"]["artists"]["index"]
    # The caller's stars are part of the answer: starring an artist changes the ETag.
    artist = first.json()["subsonic-response"]["artists"]["index"][0]["artist"][0]
    api("star", artistId=artist["id"])
    starred = api.raw("getArtists", headers={"If-None-Match": etag}, musicFolderId=2)
    assert starred.status_code == 200 and starred.headers["etag"] != etag
    mine = starred.json()["subsonic-response"]["artists"]["index"][0]["artist"][0]
    assert mine["id"] == artist["id"] and mine["starred"]
    api("unstar", artistId=artist["id"])


def test_starred_in_a_folder(api: Api, catalog: sqlite3.Connection) -> None:
    held, other = (
        catalog.execute(
            "SELECT 'tr-' || public_id FROM tracks WHERE id % 10 = ? ORDER BY id LIMIT 1", (r,)
        ).fetchone()[0]
        for r in (3, 4)
    )
    api("star", id=[held, other])
    try:
        every = {s["id"] for s in api("getStarred2")["starred2"]["song"]}
        in_mirror = {s["id"] for s in api("getStarred2", musicFolderId=1)["starred2"]["song"]}
        whole = {s["id"] for s in api("getStarred", musicFolderId=2)["starred"]["song"]}
        assert every == whole == {held, other} and in_mirror == {held}
    finally:
        api("unstar", id=[held, other])


def _most_albums(api: Api, folder: int) -> list[dict[str, Any]]:
    """The folder's artists, most albums first."""
    index = api("getArtists", musicFolderId=folder)["artists"]["index"]
    return sorted((a for g in index for a in g["artist"]), key=lambda a: -a["albumCount"])


@contextmanager
def _counting_steps() -> Iterator[list[int]]:
    """SQLite VM steps (in hundreds) of the server's catalog connections while inside.
    The connections keep the counting handler after, which still applies the query
    budget (a handler can only be set from the connection's own thread)."""
    ticks, inside = [0], [True]
    catalog = ServeContext.catalog

    def tick() -> int:
        ticks[0] += inside[0]
        spent = budget.current()
        return 1 if spent is not None and spent.over() else 0

    def counted(self: ServeContext) -> sqlite3.Connection:
        conn = catalog(self)
        conn.set_progress_handler(tick, 100)
        return conn

    patch = pytest.MonkeyPatch()
    patch.setattr(ServeContext, "catalog", counted)
    try:
        yield ticks
    finally:
        inside[0] = False
        patch.undo()


@pytest.mark.parametrize("folder", [1, 2])
def test_get_artist_of_many_albums_is_prepared_and_batched(
    api: Api, sonic: libsonic.Connection, monkeypatch: pytest.MonkeyPatch, folder: int
) -> None:
    top = _most_albums(api, folder)[0]
    assert top["albumCount"] >= browsing.PREPARED_ALBUMS
    if folder == 1:  # py-sonic names no folder: the default one, "In this mirror"
        got = sonic.getArtist(top["id"])["artist"]
    else:
        got = api("getArtist", id=top["id"], musicFolderId=2)["artist"]
    albums = [a["id"] for a in got["album"]]
    assert len(albums) == len(set(albums)) == got["albumCount"] == top["albumCount"]
    # Made in batches (here of 16 albums), each with a fresh query budget: a format of
    # its own (JSONP with this callback) so that the answer is made, not reused.
    batches = []
    monkeypatch.setattr(browsing, "BATCH", 16)
    monkeypatch.setattr(browsing, "renew_budget", lambda: batches.append(1))
    jsonp = api.raw("getArtist", id=top["id"], musicFolderId=folder, f="jsonp", callback="b")
    assert jsonp.text.startswith("b(") and jsonp.text.count('"al-') >= top["albumCount"]
    assert len(batches) == -(-top["albumCount"] // 16)
    # Prepared: compressed, an ETag, 304 on a repeat; the caller's stars change it.
    first = api.raw("getArtist", id=top["id"], musicFolderId=folder)
    etag = first.headers["etag"]
    assert first.headers["content-encoding"] == "gzip"
    assert first.json()["subsonic-response"]["artist"]["album"] == got["album"]
    again = api.raw(
        "getArtist", headers={"If-None-Match": etag}, id=top["id"], musicFolderId=folder
    )
    assert again.status_code == 304 and again.content == b""
    api("star", albumId=albums[-1])
    try:
        starred = api.raw(
            "getArtist", headers={"If-None-Match": etag}, id=top["id"], musicFolderId=folder
        )
        assert starred.status_code == 200 and starred.headers["etag"] != etag
        assert starred.json()["subsonic-response"]["artist"]["album"][-1]["starred"]
    finally:
        api("unstar", albumId=albums[-1])
    # Its folder-shaped twin too.
    directory = api.raw("getMusicDirectory", id=top["id"], musicFolderId=folder)
    children = directory.json()["subsonic-response"]["directory"]["child"]
    assert [c["id"] for c in children] == albums
    again = api.raw(
        "getMusicDirectory",
        headers={"If-None-Match": directory.headers["etag"]},
        id=top["id"],
        musicFolderId=folder,
    )
    assert again.status_code == 304
    # An artist with few albums is answered as before, without an ETag.
    few = next(a for a in _most_albums(api, folder) if a["albumCount"] < browsing.PREPARED_ALBUMS)
    assert "etag" not in api.raw("getArtist", id=few["id"], musicFolderId=folder).headers


def test_get_artist_costs_the_same_per_album_at_any_length(api: Api) -> None:
    """SQLite steps per album of getArtist (made again: each in another format) for the
    artist with most albums and for one with a tenth as many: the same (a per-album cost
    that grew with the list would show here)."""
    artists = _most_albums(api, 2)
    top = artists[0]
    small = next(a for a in artists if a["albumCount"] <= top["albumCount"] // 10)
    per_album = {}
    for artist in (top, small):
        with _counting_steps() as ticks:
            body = api.raw("getArtist", id=artist["id"], musicFolderId=2, f="xml").text
        assert body.count("<album ") == artist["albumCount"]
        per_album[artist["id"]] = ticks[0] * 100 / artist["albumCount"]
    assert per_album[top["id"]] <= 1.25 * per_album[small["id"]], per_album


def test_a_repeat_is_304_without_making_the_answer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ETag comes from what the answer is made of: a server process that has not
    made it (another worker; here: a cache that keeps nothing) answers 304 at once."""
    from phonotheca.serve.subsonic import prepared

    top = _most_albums(api, 2)[0]
    first = api.raw("getArtist", id=top["id"], musicFolderId=2, f="xml")
    made: list[int] = []
    render = prepared.render
    monkeypatch.setattr(prepared, "render", lambda *a: made.append(1) or render(*a))
    monkeypatch.setattr(prepared.PreparedCache, "get", lambda self, key: None)
    for method in ("getArtist", "getMusicDirectory"):
        tagged = api.raw(method, id=top["id"], musicFolderId=2, f="xml")
        again = api.raw(
            method,
            headers={"If-None-Match": tagged.headers["etag"]},
            id=top["id"],
            musicFolderId=2,
            f="xml",
        )
        assert again.status_code == 304
    assert len(made) == 2  # the two full answers, not the 304s
    assert tagged.headers["etag"] != first.headers["etag"]  # another method


def test_requests_for_an_answer_being_made_wait_for_it() -> None:
    from phonotheca.serve.subsonic.prepared import PreparedCache

    cache, order = PreparedCache(), []

    def second() -> None:
        with cache.making("getArtists"):
            order.append("second")

    with cache.making("getArtists"):
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(0.2)  # it cannot get in while the answer is being made
        order.append("first")
    waiting.join()
    assert order == ["first", "second"] and cache.locks == {}


def test_another_process_sends_the_answer_one_made(
    api: Api, server: LiveServer, scale: Scale, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer made once is kept on disk beside the library file: a server process
    that has not made it (here: a fresh in-memory cache) sends it without making it, and
    a damaged file is made again."""
    from phonotheca.serve.subsonic import prepared

    top = _most_albums(api, 2)[0]
    first = api.raw("getArtist", id=top["id"], musicFolderId=2, f="xml")
    kept = sorted((scale.root / prepared.PREPARED_DIR).glob("*.answer"))
    assert kept, "nothing kept on disk"
    made: list[int] = []
    render = prepared.render
    monkeypatch.setattr(prepared, "render", lambda *a: made.append(1) or render(*a))
    server.ctx.library.prepared = None  # as in a process that made nothing yet
    again = api.raw("getArtist", id=top["id"], musicFolderId=2, f="xml")
    assert made == [] and again.text == first.text
    assert again.headers["etag"] == first.headers["etag"]
    answer = next(p for p in kept if p.stem == first.headers["etag"].strip('"'))
    answer.write_bytes(answer.read_bytes()[:-20])  # cut short
    server.ctx.library.prepared = None
    remade = api.raw("getArtist", id=top["id"], musicFolderId=2, f="xml")
    assert made == [1] and remade.text == first.text


def test_kept_answers_stay_within_their_disk_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phonotheca.serve.subsonic import prepared

    monkeypatch.setattr(prepared, "DISK_BYTES", 3500)
    cache = prepared.PreparedCache(tmp_path / "kept")
    for n in range(6):
        body = os.urandom(1000)  # does not compress: about 1,040 bytes a file
        answer = prepared._Answer('"x"', "text/xml", body, gzip.compress(body))
        with cache.making(f"answer {n}"):
            cache.put(f"answer {n}", answer)
        os.utime(cache._file(f"answer {n}", ".answer"), (n, n))  # in order of making
    left = sorted(p.stat().st_mtime for p in (tmp_path / "kept").glob("*.answer"))
    assert left == [3.0, 4.0, 5.0]
    assert prepared.PreparedCache(tmp_path / "kept").get("answer 5") is not None
    assert prepared.PreparedCache(tmp_path / "kept").get("answer 0") is None
