"""Album lists, genres, search2 and playlists between users, checked against the catalog."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from phonotheca.catalog import schema
from phonotheca.serve.state import StateStore
from tests.serve_subsonic.conftest import Fixture, LiveServer


@pytest.fixture
def catalog(archive_fixture: Fixture) -> Iterator[sqlite3.Connection]:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        yield conn
    finally:
        conn.close()


class Api:
    def __init__(self, client: httpx.Client, api_key: str) -> None:
        self.client = client
        self.api_key = api_key

    def __call__(self, method: str, **params: object) -> dict:
        r = self.client.get(
            f"/rest/{method}", params={**params, "apiKey": self.api_key, "f": "json"}
        )
        body = r.json()["subsonic-response"]
        return body


@pytest.fixture
def api(live: LiveServer, archive_fixture: Fixture) -> Iterator[Api]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield Api(client, archive_fixture.creds.api_key)


def albums(body: dict) -> list[dict]:
    assert body["status"] == "ok", body
    return body["albumList2"]["album"]


def test_album_list_orders(api: Api, catalog: sqlite3.Connection) -> None:
    """The whole catalog's albums (music folder 2) in each order."""
    total = catalog.execute("SELECT count(*) FROM albums").fetchone()[0]
    newest = albums(api("getAlbumList2", musicFolderId=2, type="newest", size=500))
    ids = [r[0] for r in catalog.execute("SELECT public_id FROM albums ORDER BY id DESC")]
    assert [a["id"] for a in newest] == [f"al-{p}" for p in ids]
    by_artist = albums(api("getAlbumList2", musicFolderId=2, type="alphabeticalByArtist", size=500))
    keys = [(a["artist"].lower(), a["name"].lower()) for a in by_artist]
    assert keys == sorted(keys)
    page = albums(
        api("getAlbumList2", musicFolderId=2, type="alphabeticalByName", size=2, offset=1)
    )
    full = albums(api("getAlbumList2", musicFolderId=2, type="alphabeticalByName", size=500))
    assert page == full[1:3]
    randoms = albums(api("getAlbumList2", musicFolderId=2, type="random", size=500))
    assert len(randoms) == total and len({a["id"] for a in randoms}) == total
    bad = api("getAlbumList2", musicFolderId=2, type="bestOf")
    assert bad["status"] == "failed" and "newest" in bad["error"]["message"]


def test_album_list_by_year_and_genre(api: Api, catalog: sqlite3.Connection) -> None:
    years = sorted(
        int(r[0][:4])
        for r in catalog.execute("SELECT release_date FROM albums WHERE release_date IS NOT NULL")
    )
    low, high = years[0], years[len(years) // 2]
    found = albums(
        api("getAlbumList2", musicFolderId=2, type="byYear", fromYear=low, toYear=high, size=500)
    )
    assert len(found) == sum(low <= y <= high for y in years)
    assert [a["year"] for a in found] == sorted(a["year"] for a in found)
    backwards = albums(
        api("getAlbumList2", musicFolderId=2, type="byYear", fromYear=high, toYear=low, size=500)
    )
    assert {a["id"] for a in backwards} == {a["id"] for a in found}
    assert [a["year"] for a in backwards] == sorted((a["year"] for a in found), reverse=True)
    genre, count = catalog.execute(
        "SELECT g.name, count(*) FROM album_genres ag JOIN genres g ON g.id = ag.genre_id"
        " GROUP BY g.id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    in_genre = albums(api("getAlbumList2", musicFolderId=2, type="byGenre", genre=genre, size=500))
    assert len(in_genre) == count and all(
        genre in [g["name"] for g in a["genres"]] for a in in_genre
    )
    assert (
        api("getAlbumList2", musicFolderId=2, type="byGenre", genre="no such genre")["error"][
            "code"
        ]
        == 70
    )
    assert (
        api("getAlbumList2", musicFolderId=2, type="byYear", fromYear=1990)["error"]["code"] == 10
    )


def test_songs_by_genre_and_genre_counts(api: Api) -> None:
    genres = api("getGenres")["genres"]["genre"]
    genre = max(genres, key=lambda g: g["songCount"])
    songs: list[dict] = []
    while True:
        page = api("getSongsByGenre", genre=genre["value"], count=4, offset=len(songs))
        got = page["songsByGenre"]["song"]
        if not got:
            break
        songs += got
    assert len(songs) == genre["songCount"] == len({s["id"] for s in songs})
    assert all(genre["value"] in [g["name"] for g in s["genres"]] for s in songs)


def test_frequent_and_starred_albums(api: Api, archive_fixture: Fixture) -> None:
    store = StateStore(archive_fixture.root / "state.sqlite3")
    carol = store.add_user("carol", "carol's password")
    key = store.rotate_subsonic_credentials("carol").api_key
    carol_api = Api(api.client, key)
    album_of: dict[str, str] = {}
    for packed in archive_fixture.present:
        album = carol_api("getSong", id=f"tr-{packed.public_id}")["song"].get("albumId")
        if album is not None and album not in album_of.values():
            album_of[packed.public_id] = album
    assert len(album_of) >= 2, "fixture: packed tracks on two albums"
    first, second = list(album_of)[:2]
    for _ in range(3):
        carol_api("scrobble", id=f"tr-{second}", time=1_000)
    carol_api("scrobble", id=f"tr-{first}", time=9_000)
    carol_api("scrobble", id=f"tr-{first}", submission="false")  # now playing only
    frequent = albums(carol_api("getAlbumList2", type="frequent"))
    recent = albums(carol_api("getAlbumList2", type="recent"))
    assert [a["id"] for a in frequent] == [album_of[second], album_of[first]]
    assert [a["id"] for a in recent] == [album_of[first], album_of[second]]
    assert store.play_counts(carol.id)  # on disk, in the store the server shares
    # Stars are per user.
    carol_api("star", albumId=album_of[first])
    assert [a["id"] for a in albums(carol_api("getAlbumList2", type="starred"))] == [
        album_of[first]
    ]
    assert album_of[first] not in {a["id"] for a in albums(api("getAlbumList2", type="starred"))}
    assert carol_api("star", id="tr-no:such:track")["error"]["code"] == 70
    store.remove_user("carol")
    store.close()


def test_playlists_belong_to_their_owner(api: Api, archive_fixture: Fixture) -> None:
    store = StateStore(archive_fixture.root / "state.sqlite3")
    store.add_user("dave", "dave's password")
    dave = Api(api.client, store.rotate_subsonic_credentials("dave").api_key)
    song = f"tr-{archive_fixture.present[0].public_id}"
    made = api("createPlaylist", name="mine", songId=song)["playlist"]
    assert dave("getPlaylist", id=made["id"])["error"]["code"] == 50
    assert made["id"] not in {p["id"] for p in dave("getPlaylists")["playlists"]["playlist"]}
    api("updatePlaylist", playlistId=made["id"], public="true")
    assert dave("getPlaylist", id=made["id"])["playlist"]["entry"][0]["id"] == song
    assert dave("deletePlaylist", id=made["id"])["error"]["code"] == 50
    assert dave("updatePlaylist", playlistId=made["id"], name="stolen")["error"]["code"] == 50
    assert api("deletePlaylist", id=made["id"])["status"] == "ok"
    assert api("getPlaylist", id="pl-999999")["error"]["code"] == 70
    assert api("createPlaylist", name="bad", songId="tr-no:such")["error"]["code"] == 70
    store.remove_user("dave")
    store.close()


def test_search2_and_folders(api: Api, catalog: sqlite3.Connection) -> None:
    artist_pid, name = catalog.execute(
        "SELECT ar.public_id, ar.name FROM album_artists aa JOIN artists ar ON ar.id = aa.artist_id"
        " JOIN albums a ON a.id = aa.album_id JOIN tracks t ON t.album_id = a.id"
        " GROUP BY ar.id ORDER BY max(t.popularity) DESC LIMIT 1"
    ).fetchone()
    result = api("search2", query=name)["searchResult2"]
    assert f"ar-{artist_pid}" in [a["id"] for a in result["artist"]]
    assert all(a["isDir"] for a in result["album"])
    found3 = api("search3", query=name)["searchResult3"]
    assert found3["artist"][0]["id"] == f"ar-{artist_pid}"
    assert found3["album"] and all(name in a["artist"] for a in found3["album"])
    directory = api("getMusicDirectory", id=f"ar-{artist_pid}", musicFolderId=2)["directory"]
    assert directory["name"] == name and all(c["isDir"] for c in directory["child"])
    assert api("getMusicDirectory", id=directory["child"][0]["id"])["directory"]["child"]


def test_top_songs_of_an_artist(api: Api, catalog: sqlite3.Connection) -> None:
    artist_id, name, count = catalog.execute(
        "SELECT ar.id, ar.name, count(*) FROM track_artists ta JOIN artists ar"
        " ON ar.id = ta.artist_id GROUP BY ar.id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    popularity = dict(
        catalog.execute(
            "SELECT 'tr-' || t.public_id, coalesce(t.popularity, -1) FROM track_artists ta"
            " JOIN tracks t ON t.id = ta.track_id WHERE ta.artist_id = ?",
            (artist_id,),
        ).fetchall()
    )
    top = api("getTopSongs", artist=name, count=count + 5)["topSongs"]["song"]
    assert {s["id"] for s in top} == set(popularity)
    ranks = [popularity[s["id"]] for s in top]
    assert ranks == sorted(ranks, reverse=True)
    assert len(api("getTopSongs", artist=name, count=2)["topSongs"]["song"]) == 2


def test_token_info(api: Api, archive_fixture: Fixture) -> None:
    assert api("tokenInfo")["tokenInfo"]["username"] == archive_fixture.creds.user
