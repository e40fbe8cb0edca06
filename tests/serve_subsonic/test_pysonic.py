"""The Subsonic API as a real client library (py-sonic) uses it, against a live server.

py-sonic posts its parameters as a form with ``f=json``; with ``legacyAuth`` it sends the
password as ``p=enc:<hex>``, otherwise a salted md5 token (``t`` + ``s``). Both modes
run every test here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import libsonic
import pytest
from libsonic.errors import CredentialError, DataNotFoundError, ParameterError

from phonotheca.catalog import schema
from phonotheca.catalog.search import search
from tests.serve_subsonic.conftest import WEB_PASSWORD, Fixture, LiveServer


def connect(live: LiveServer, user: str, password: str, *, legacy: bool) -> libsonic.Connection:
    return libsonic.Connection(
        "http://127.0.0.1",
        user,
        password,
        port=live.port,
        serverPath="/rest",
        appName="phonotheca-tests",
        apiVersion="1.16.1",
        insecure=True,
        legacyAuth=legacy,
    )


@pytest.fixture(params=[False, True], ids=["token", "enc-password"])
def sonic(
    request: pytest.FixtureRequest, live: LiveServer, archive_fixture: Fixture
) -> libsonic.Connection:
    creds = archive_fixture.creds
    return connect(live, creds.user, creds.password, legacy=request.param)


def test_ping_and_envelope(sonic: libsonic.Connection) -> None:
    assert sonic.ping() is True
    reply = sonic.getLicense()
    assert reply["status"] == "ok" and reply["license"]["valid"] is True
    assert reply["version"] == "1.16.1" and reply["type"] == "phonotheca"
    assert reply["openSubsonic"] is True and reply["serverVersion"]


def test_wrong_password_is_error_40(live: LiveServer, archive_fixture: Fixture) -> None:
    for legacy in (False, True):
        bad = connect(live, archive_fixture.creds.user, "not-the-password", legacy=legacy)
        with pytest.raises(CredentialError):
            bad.ping()
        nobody = connect(live, "nobody", archive_fixture.creds.password, legacy=legacy)
        with pytest.raises(CredentialError):
            nobody.ping()


def test_web_password_does_not_open_subsonic(live: LiveServer, archive_fixture: Fixture) -> None:
    with pytest.raises(CredentialError):
        connect(live, archive_fixture.creds.user, WEB_PASSWORD, legacy=True).ping()


def test_artists_and_albums_match_the_catalog(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        # An artist's albums: credited as album artist, or on one of the album's tracks.
        album_artists = {
            r[0]
            for r in conn.execute(
                "SELECT ar.public_id FROM album_artists aa JOIN artists ar ON ar.id = aa.artist_id"
                " UNION SELECT ar.public_id FROM track_artists ta"
                " JOIN artists ar ON ar.id = ta.artist_id"
                " JOIN tracks t ON t.id = ta.track_id WHERE t.album_id IS NOT NULL"
            )
        }
        # The biggest album with a track this server plays (the default music folder).
        present = [p.public_id for p in archive_fixture.present]
        album_pid, title, count = conn.execute(
            "SELECT a.public_id, a.title, count(t.id) FROM albums a JOIN tracks t"
            " ON t.album_id = a.id GROUP BY a.id"
            " HAVING max(t.public_id IN (SELECT value FROM json_each(?)))"
            " ORDER BY count(t.id) DESC LIMIT 1",
            (json.dumps(present),),
        ).fetchone()
        rows = conn.execute(
            "SELECT t.title, CASE WHEN t.isrc_valid THEN t.isrc END FROM tracks t"
            " JOIN albums a ON a.id = t.album_id"
            " WHERE a.public_id = ? ORDER BY t.disc_number, t.track_number, t.id",
            (album_pid,),
        ).fetchall()
        titles = [r[0] for r in rows]
        isrcs = [[r[1]] if r[1] else [] for r in rows]
    finally:
        conn.close()
    indexes = sonic.getArtists(musicFolderId=2)["artists"]["index"]
    listed = [a for index in indexes for a in index["artist"]]
    assert {a["id"] for a in listed} == {f"ar-{p}" for p in album_artists}
    assert [i["name"] for i in indexes] == sorted(i["name"] for i in indexes)

    album = sonic.getAlbum(f"al-{album_pid}")["album"]
    assert album["name"] == title and album["songCount"] == count
    assert [s["title"] for s in album["song"]] == titles
    assert [s["isrc"] for s in album["song"]] == isrcs  # OpenSubsonic: valid ISRCs only
    song = album["song"][0]
    assert song["albumId"] == album["id"] and song["parent"] == album["id"]
    assert song["type"] == "music" and song["isDir"] is False
    assert song["artists"] and song["artists"][0]["id"] == song["artistId"]
    artist = sonic.getArtist(song["artistId"])["artist"]
    assert album["id"] in {a["id"] for a in artist["album"]}
    assert sonic.getSong(song["id"])["song"]["title"] == song["title"]


def test_search3_words_are_most_popular_first(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        # A word from a popular track's title, and the catalog's own ranking for it.
        title = conn.execute(
            "SELECT title FROM tracks ORDER BY popularity DESC, id LIMIT 1"
        ).fetchone()[0]
        word = title.split()[0]
        ranked = [f"tr-{h.id}" for h in search(conn, word, limit=1000)]
    finally:
        conn.close()
    found = sonic.search3(word, songCount=5, musicFolderId=2)["searchResult3"]
    assert [s["id"] for s in found["song"]] == ranked[:5]
    assert all(
        word.lower() in (s["title"] + s["artist"] + s["album"]).lower() for s in found["song"]
    )
    # "In this mirror" (also the default folder): the matches this server plays, in order.
    here = {f"tr-{p.public_id}" for p in archive_fixture.present}
    mirror = sonic.search3(word, songCount=5, musicFolderId=1)["searchResult3"]
    assert [s["id"] for s in mirror.get("song", [])] == [t for t in ranked if t in here][:5]
    assert sonic.search3(word, songCount=5)["searchResult3"] == mirror


def test_search3_empty_query_pages_through_everything(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        total_tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
        total_albums = conn.execute("SELECT count(*) FROM albums").fetchone()[0]
    finally:
        conn.close()
    seen: list[str] = []
    offset = 0
    while True:
        page = sonic.search3(
            "", artistCount=0, albumCount=0, songCount=7, songOffset=offset, musicFolderId=2
        )
        songs = page["searchResult3"].get("song", [])
        if not songs:
            break
        assert len(songs) <= 7
        seen += [s["id"] for s in songs]
        offset += len(songs)
    assert len(seen) == len(set(seen)) == total_tracks
    # Some clients send two quote characters for "everything".
    albums = sonic.search3('""', artistCount=0, albumCount=1000, songCount=0, musicFolderId=2)[
        "searchResult3"
    ]
    assert len(albums["album"]) == total_albums and not albums.get("song")


def test_random_songs_are_drawn_among_the_songs_this_server_plays(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    present = {f"tr-{p.public_id}" for p in archive_fixture.present}
    songs = sonic.getRandomSongs(size=5)["randomSongs"]["song"]
    assert len(songs) == 5 and len({s["id"] for s in songs}) == 5
    seen: set[str] = set()
    for _ in range(6):
        songs = sonic.getRandomSongs(size=len(present) + 10)["randomSongs"]["song"]
        ids = [s["id"] for s in songs]
        assert len(ids) == len(set(ids)) and set(ids) <= present
        seen.update(ids)
    assert seen == present  # never the 30 tracks without audio, nor the absent torrent's
    by_genre: dict[str, set[str]] = {}
    for song_id in present:
        for g in sonic.getSong(song_id)["song"].get("genres", []):
            by_genre.setdefault(g["name"], set()).add(song_id)
    genre, holders = max(by_genre.items(), key=lambda kv: (len(kv[1]), kv[0]))
    same = sonic.getRandomSongs(size=3, genre=genre)["randomSongs"]["song"]
    assert len(same) == min(3, len(holders))
    assert {s["id"] for s in same} <= holders
    years = sonic.getRandomSongs(size=50, fromYear=2000, toYear=2030)["randomSongs"]["song"]
    assert all(2000 <= s["year"] <= 2030 and s["id"] in present for s in years)


def test_random_songs_of_a_server_without_audio_come_from_the_catalog(
    tmp_path: Path, archive_fixture: Fixture
) -> None:
    assert len(archive_fixture.present) < 20
    root = tmp_path / "metadata-only"
    shutil.copytree(archive_fixture.root, root, ignore=shutil.ignore_patterns("torrents"))
    server = LiveServer(root)
    server.start()
    try:
        creds = archive_fixture.creds
        sonic = connect(server, creds.user, creds.password, legacy=False)
        songs = sonic.getRandomSongs(size=20)["randomSongs"]["song"]
        assert len({s["id"] for s in songs}) == 20  # more than it could play with audio
    finally:
        server.stop()


def test_stream_returns_the_packed_bytes(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    for packed in archive_fixture.present[:3]:
        body = sonic.stream(f"tr-{packed.public_id}", tformat="raw").read()
        expected = packed.tar_bytes(archive_fixture.root)
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
        assert body == packed.source.read_bytes()  # originals are kept bit-exact


def test_stream_of_a_track_elsewhere_names_its_torrent(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    with pytest.raises(DataNotFoundError, match=archive_fixture.absent.collection):
        sonic.stream(f"tr-{archive_fixture.absent.public_id}")


def test_cover_art(sonic: libsonic.Connection, archive_fixture: Fixture) -> None:
    conn = schema.connect(archive_fixture.root / "catalog.sqlite3", readonly=True)
    try:
        album_pid, sha256 = conn.execute(
            "SELECT a.public_id, i.blob_sha256 FROM images i JOIN albums a ON a.id = i.album_id"
            " WHERE i.blob_sha256 IS NOT NULL ORDER BY i.kind != 'front', i.position LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    data = sonic.getCoverArt(f"al-{album_pid}").read()
    assert hashlib.sha256(data).hexdigest() == sha256
    song = sonic.getAlbum(f"al-{album_pid}")["album"]["song"][0]
    assert song["coverArt"] == f"al-{album_pid}"


def test_unknown_ids_and_missing_parameters(sonic: libsonic.Connection) -> None:
    with pytest.raises(DataNotFoundError):
        sonic.getAlbum("al-no:such:album")
    with pytest.raises(DataNotFoundError):
        sonic.getSong("tr-no:such:track")
    with pytest.raises(DataNotFoundError):
        sonic.getAlbum("garbage")
    with pytest.raises(ParameterError):
        sonic.getAlbum(None)  # py-sonic drops None: no id parameter at all


def test_stars_scrobbles_and_playlists(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    ids = [f"tr-{p.public_id}" for p in archive_fixture.present[:3]]
    album_id = sonic.getSong(ids[0])["song"]["albumId"]
    sonic.star(sids=ids[:2], albumIds=[album_id])
    starred = sonic.getStarred2()["starred2"]
    assert {s["id"] for s in starred["song"]} >= set(ids[:2])
    assert album_id in {a["id"] for a in starred["album"]}
    assert all(s["starred"] for s in starred["song"])
    sonic.unstar(sids=ids[:2], albumIds=[album_id])
    assert not set(ids[:2]) & {s["id"] for s in sonic.getStarred2()["starred2"].get("song", [])}

    sonic.scrobble(ids[0])
    recent = sonic.getAlbumList2("recent", size=5)["albumList2"]["album"]
    assert recent[0]["id"] == album_id

    made = sonic.createPlaylist(name="road trip", songIds=[ids[0], ids[1], ids[0]])["playlist"]
    assert [e["id"] for e in made["entry"]] == [ids[0], ids[1], ids[0]]
    sonic.updatePlaylist(
        made["id"], name="road trip 2", songIdsToAdd=[ids[2]], songIndexesToRemove=[0]
    )
    got = sonic.getPlaylist(made["id"])["playlist"]
    assert got["name"] == "road trip 2" and [e["id"] for e in got["entry"]] == [
        ids[1],
        ids[0],
        ids[2],
    ]
    assert made["id"] in {p["id"] for p in sonic.getPlaylists()["playlists"]["playlist"]}
    sonic.deletePlaylist(made["id"])
    with pytest.raises(DataNotFoundError):
        sonic.getPlaylist(made["id"])
