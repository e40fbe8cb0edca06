"""The catalog's public playlists in the Subsonic API, through py-sonic and plain calls.

A copy of the package's archive gets catalog playlists (tests/playlists.py) and its own
server: they are listed beside the user's own, public and read-only; their entries come
a page at a time; ``createPlaylist`` copies one; changing one is error 50.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import libsonic
import pytest
from libsonic.errors import AuthError, DataNotFoundError, SonicError

from phonotheca.catalog.library import CATALOG, PLAYABLE
from phonotheca.serve.subsonic import catalog_playlists
from phonotheca.serve.subsonic.catalog_playlists import CATALOG_LISTED
from phonotheca.serve.subsonic.envelope import XML_NAMESPACE
from tests.playlists import Given, add_playlist
from tests.serve_subsonic.conftest import Fixture, LiveServer
from tests.serve_subsonic.test_lists import Api
from tests.serve_subsonic.test_pysonic import connect

MIX = "pl:mix"
BIG = "pl:big"
OTHERS = 60  # more than getPlaylists lists by default
LOST = Given("Lost Song", "Nobody", "Nowhere", 200_000)


@pytest.fixture(scope="module")
def setup(
    archive_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Playlists in a copy of the archive: ids of the tracks they hold, by kind."""
    root = tmp_path_factory.mktemp("catalog-playlists") / "demo"
    shutil.copytree(archive_fixture.root, root)
    conn = sqlite3.connect(root / "catalog.sqlite3", isolation_level=None)
    try:
        present = [p.public_id for p in archive_fixture.present]
        packed = {*present, archive_fixture.absent.public_id}
        no_audio = [r[0] for r in conn.execute("SELECT public_id FROM tracks ORDER BY id")
                    if r[0] not in packed]  # fmt: skip
        add_playlist(
            conn,
            MIX,
            "Summer Mix",
            [
                present[0],
                archive_fixture.absent.public_id,
                LOST,
                no_audio[0],
                present[1],
                present[0],
            ],
            creator="DJ Test",
            annotation="for the road",
        )
        add_playlist(conn, BIG, "Big One", [no_audio[i % len(no_audio)] for i in range(1200)])
        for i in range(OTHERS):
            add_playlist(conn, f"pl:o{i:03d}", f"Other {i}", [LOST])
    finally:
        conn.close()
    return {"root": [str(root)], "present": present, "no_audio": no_audio}


@pytest.fixture(scope="module")
def server(setup: dict[str, list[str]]) -> Iterator[LiveServer]:
    live = LiveServer(Path(setup["root"][0]))
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(params=[False, True], ids=["token", "enc-password"])
def sonic(
    request: pytest.FixtureRequest, server: LiveServer, archive_fixture: Fixture
) -> libsonic.Connection:
    creds = archive_fixture.creds
    return connect(server, creds.user, creds.password, legacy=request.param)


@pytest.fixture
def api(server: LiveServer, archive_fixture: Fixture) -> Iterator[Api]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Api(client, archive_fixture.creds.api_key)


def test_catalog_playlists_are_listed_beside_the_user_s_own(
    sonic: libsonic.Connection, setup: dict[str, list[str]]
) -> None:
    mine = sonic.createPlaylist(name="my own", songIds=[f"tr-{setup['present'][0]}"])["playlist"]
    try:
        listed = sonic.getPlaylists()["playlists"]["playlist"]
        ids = [p["id"] for p in listed]
        assert ids[0] == mine["id"] and not listed[0].get("readonly")
        catalog = [p for p in listed if p["id"].startswith("pl:")]
        assert len(catalog) == CATALOG_LISTED  # bounded, of 62
        assert [p["id"] for p in catalog] == sorted(p["id"] for p in catalog)
        mix = next(p for p in catalog if p["id"] == MIX)
        assert mix["public"] is True and mix["readonly"] is True
        assert (mix["name"], mix["owner"], mix["comment"]) == (
            "Summer Mix",
            "DJ Test",
            "for the road",
        )
        assert (mix["songCount"], mix["entryCount"]) == (5, 6)
        other = next(p for p in catalog if p["id"] == "pl:o000")
        assert other["owner"] == "catalog" and other["songCount"] == 0
    finally:
        sonic.deletePlaylist(mine["id"])


def test_get_playlists_pages_through_the_catalog_s(api: Api) -> None:
    seen: list[str] = []
    after = ""
    while True:
        body = api("getPlaylists", catalogCount=25, catalogAfter=after)
        page = [p["id"] for p in body["playlists"]["playlist"] if p["id"].startswith("pl:")]
        if not page:
            break
        seen += page
        after = page[-1]
    assert seen == sorted([BIG, MIX, *(f"pl:o{i:03d}" for i in range(OTHERS))])
    assert api("getPlaylists", catalogCount=501)["error"]["code"] == 0
    none = api("getPlaylists", catalogCount=0)["playlists"]["playlist"]
    assert not [p for p in none if p["id"].startswith("pl:")]


def test_get_playlist_lists_the_entries_it_can_play(
    sonic: libsonic.Connection, api: Api, setup: dict[str, list[str]], archive_fixture: Fixture
) -> None:
    present, no_audio = setup["present"], setup["no_audio"]
    # The default music folder is "In this mirror": only the tracks held here.
    got = sonic.getPlaylist(MIX)["playlist"]
    assert [s["id"] for s in got["entry"]] == [
        f"tr-{present[0]}",
        f"tr-{present[1]}",
        f"tr-{present[0]}",
    ]
    assert got["readonly"] is True and got["songCount"] == 5 and got["entryCount"] == 6
    # The whole catalog: every matched entry, in order; the unmatched one is left out.
    whole = api("getPlaylist", id=MIX, musicFolderId=CATALOG)["playlist"]
    assert [s["id"] for s in whole["entry"]] == [
        f"tr-{t}"
        for t in (present[0], archive_fixture.absent.public_id, no_audio[0], present[1], present[0])
    ]
    assert api("getPlaylist", id=MIX, musicFolderId=PLAYABLE)["playlist"]["entry"] == got["entry"]
    with pytest.raises(DataNotFoundError):
        sonic.getPlaylist("pl:nope")
    # In XML, as the Subsonic schema has it: scalars as attributes, songs as children.
    xml = api.client.get("/rest/getPlaylist", params={"id": MIX, "apiKey": api.api_key})
    playlist = ElementTree.fromstring(xml.text).find(f"{{{XML_NAMESPACE}}}playlist")
    assert playlist is not None
    assert playlist.get("readonly") == "true" and playlist.get("owner") == "DJ Test"
    assert len(playlist.findall(f"{{{XML_NAMESPACE}}}entry")) == 3


def test_a_large_catalog_playlist_comes_a_page_at_a_time(
    api: Api, setup: dict[str, list[str]]
) -> None:
    no_audio = setup["no_audio"]
    first = api("getPlaylist", id=BIG, musicFolderId=CATALOG)["playlist"]
    assert len(first["entry"]) == 500 and first["offset"] == 0
    assert first["songCount"] == 1200 and first["entryCount"] == 1200
    page = api("getPlaylist", id=BIG, musicFolderId=CATALOG, offset=1150, size=100)["playlist"]
    assert [s["id"] for s in page["entry"]] == [
        f"tr-{no_audio[i % len(no_audio)]}" for i in range(1150, 1200)
    ]
    assert api("getPlaylist", id=BIG, offset=5000, musicFolderId=CATALOG)["playlist"]["entry"] == []
    assert api("getPlaylist", id=BIG, size=501)["error"]["code"] == 0


def test_create_playlist_copies_a_catalog_playlist(
    sonic: libsonic.Connection, api: Api, setup: dict[str, list[str]], archive_fixture: Fixture
) -> None:
    present, no_audio = setup["present"], setup["no_audio"]
    copy = sonic.createPlaylist(playlistId=MIX)["playlist"]
    try:
        assert copy["id"].startswith("pl-") and copy["name"] == "Summer Mix"
        assert not copy.get("readonly") and copy["owner"] == archive_fixture.creds.user
        assert [s["id"] for s in copy["entry"]] == [
            f"tr-{t}"
            for t in (
                present[0],
                archive_fixture.absent.public_id,
                no_audio[0],
                present[1],
                present[0],
            )
        ]
        # The copy is the user's own: they may change it.
        sonic.updatePlaylist(copy["id"], name="renamed")
        assert sonic.getPlaylist(copy["id"])["playlist"]["name"] == "renamed"
    finally:
        sonic.deletePlaylist(copy["id"])
    named = api("createPlaylist", playlistId=BIG, name="big copy")["playlist"]
    assert named["name"] == "big copy" and named["songCount"] == 1200
    api("deletePlaylist", id=named["id"])
    with pytest.raises(DataNotFoundError):
        sonic.createPlaylist(playlistId="pl:nope")
    with pytest.MonkeyPatch.context() as patch:  # the server runs in this process
        patch.setattr(catalog_playlists, "MAX_COPY", 1000)
        too_big = api("createPlaylist", playlistId=BIG)
    assert too_big["error"]["code"] == 0 and "1,200 entries" in too_big["error"]["message"]
    with_songs = api("createPlaylist", playlistId=MIX, songId=f"tr-{present[0]}")
    assert with_songs["error"]["code"] == 0 and "updatePlaylist" in with_songs["error"]["message"]


def test_catalog_playlists_are_read_only(sonic: libsonic.Connection, api: Api) -> None:
    with pytest.raises(AuthError, match="read-only"):
        sonic.updatePlaylist(MIX, name="mine now")
    with pytest.raises(AuthError, match="read-only"):
        sonic.deletePlaylist(MIX)
    assert sonic.getPlaylist(MIX)["playlist"]["name"] == "Summer Mix"
    with pytest.raises(SonicError):
        sonic.getPlaylist("pl-999999")
