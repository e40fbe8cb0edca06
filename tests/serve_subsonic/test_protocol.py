"""The wire protocol: XML (shape per the Subsonic XSD), JSON and JSONP, authentication
mechanisms and their error codes, GET and form POST, ``.view`` suffixes, byte ranges."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from tests.serve_subsonic.conftest import Fixture, LiveServer

NS = "{http://subsonic.org/restapi}"


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


@pytest.fixture
def auth(archive_fixture: Fixture) -> dict[str, str]:
    """Token authentication parameters, as most apps send them."""
    salt = "c0ffee42"
    token = hashlib.md5((archive_fixture.creds.password + salt).encode()).hexdigest()
    return {"u": archive_fixture.creds.user, "t": token, "s": salt, "v": "1.16.1", "c": "test"}


def xml_call(client: httpx.Client, method: str, **params: str) -> ET.Element:
    r = client.get(f"/rest/{method}", params=params)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.tag == f"{NS}subsonic-response"
    assert root.get("version") == "1.16.1" and root.get("type") == "phonotheca"
    assert root.get("openSubsonic") == "true" and root.get("serverVersion")
    for element in root.iter():
        for name, value in element.attrib.items():
            assert value not in ("None", "True", "False"), (element.tag, name)
    return root


def json_call(client: httpx.Client, method: str, **params: str) -> dict:
    r = client.get(f"/rest/{method}", params={**params, "f": "json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()["subsonic-response"]


def error_code(body: dict) -> int:
    assert body["status"] == "failed", body
    return int(body["error"]["code"])


def children(element: ET.Element, name: str) -> list[ET.Element]:
    return element.findall(f"{NS}{name}")


def test_xml_shapes(client: httpx.Client, auth: dict[str, str], archive_fixture: Fixture) -> None:
    root = xml_call(client, "ping.view", **auth)
    assert root.get("status") == "ok" and len(root) == 0

    folders = xml_call(client, "getMusicFolders", **auth)
    listed = children(children(folders, "musicFolders")[0], "musicFolder")
    assert [(f.get("id"), f.get("name")) for f in listed] == [
        ("1", "In this mirror"),
        ("2", "Whole catalog"),
    ]

    artists = children(xml_call(client, "getArtists", **auth), "artists")[0]
    assert artists.get("ignoredArticles")
    index = children(artists, "index")
    first = children(index[0], "artist")[0]
    assert index[0].get("name") and first.get("id", "").startswith("ar-")
    assert int(first.get("albumCount", "-1")) >= 1

    indexes = children(xml_call(client, "getIndexes", **auth), "indexes")[0]
    assert int(indexes.get("lastModified", "0")) > 0 and children(
        children(indexes, "index")[0], "artist"
    )

    directory = children(
        xml_call(client, "getMusicDirectory", id=first.get("id", ""), **auth), "directory"
    )[0]
    album_dir = children(directory, "child")[0]
    assert album_dir.get("isDir") == "true" and album_dir.get("id", "").startswith("al-")
    songs_dir = children(
        xml_call(client, "getMusicDirectory", id=album_dir.get("id", ""), **auth), "directory"
    )[0]
    assert all(c.get("isDir") == "false" for c in children(songs_dir, "child"))

    album = children(xml_call(client, "getAlbum", id=album_dir.get("id", ""), **auth), "album")[0]
    for attribute in ("id", "name", "songCount", "duration", "created"):
        assert album.get(attribute), attribute
    song = children(album, "song")[0]
    for attribute in ("id", "parent", "title", "isDir", "type", "albumId", "artistId", "duration"):
        assert song.get(attribute), attribute
    # OpenSubsonic lists are child elements.
    assert children(song, "artists")[0].get("id") == song.get("artistId")

    genres = children(children(xml_call(client, "getGenres", **auth), "genres")[0], "genre")
    assert genres and all(g.text and int(g.get("songCount", "-1")) >= 0 for g in genres)

    result = children(
        xml_call(client, "search3", query="", songCount="3", **auth), "searchResult3"
    )[0]
    assert len(children(result, "song")) == 3 and children(result, "album")
    lists = children(
        xml_call(client, "getAlbumList2", type="alphabeticalByName", **auth), "albumList2"
    )[0]
    names = [a.get("name", "") for a in children(lists, "album")]
    assert names == sorted(names, key=str.lower)
    randoms = children(xml_call(client, "getRandomSongs", size="2", **auth), "randomSongs")[0]
    assert len(children(randoms, "song")) == 2
    assert children(xml_call(client, "getStarred2", **auth), "starred2")
    assert children(xml_call(client, "getPlaylists", **auth), "playlists")

    extensions = children(xml_call(client, "getOpenSubsonicExtensions"), "openSubsonicExtensions")
    names = {e.get("name") for e in extensions}
    assert "apiKeyAuthentication" in names
    assert all(children(e, "versions")[0].text == "1" for e in extensions)


def test_xml_error(client: httpx.Client, auth: dict[str, str]) -> None:
    root = xml_call(client, "getAlbum", **auth)
    assert root.get("status") == "failed"
    (error,) = children(root, "error")
    assert error.get("code") == "10" and "id" in (error.get("message") or "")


def test_json_and_jsonp(client: httpx.Client, auth: dict[str, str]) -> None:
    body = json_call(client, "getGenres", **auth)
    assert body["status"] == "ok" and body["openSubsonic"] is True
    assert all(isinstance(g["value"], str) and g["songCount"] >= 0 for g in body["genres"]["genre"])
    r = client.get("/rest/getGenres.view", params={**auth, "f": "jsonp", "callback": "app.got"})
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    match = re.fullmatch(r"app\.got\((.*)\);", r.text, re.S)
    assert match and json.loads(match.group(1))["subsonic-response"]["genres"] == body["genres"]
    # A callback that is not a plain name would let a page inject script: refused.
    r = client.get("/rest/ping", params={**auth, "f": "jsonp", "callback": "alert(1)//"})
    assert error_code(r.json()["subsonic-response"]) == 10


def test_form_post_and_view_suffix(client: httpx.Client, auth: dict[str, str]) -> None:
    r = client.post("/rest/search3.view", data={**auth, "f": "json", "query": "", "songCount": "2"})
    body = r.json()["subsonic-response"]
    assert body["status"] == "ok" and len(body["searchResult3"]["song"]) == 2


def test_authentication_errors(
    client: httpx.Client, auth: dict[str, str], archive_fixture: Fixture
) -> None:
    creds = archive_fixture.creds
    assert json_call(client, "ping", apiKey=creds.api_key)["status"] == "ok"
    assert error_code(json_call(client, "ping", apiKey="pk_wrong")) == 44
    assert error_code(json_call(client, "ping", apiKey=creds.api_key, u=creds.user)) == 43
    assert error_code(json_call(client, "ping", **auth, p=creds.password)) == 43
    assert error_code(json_call(client, "ping", apiKey=creds.api_key, s="salt")) == 43
    assert error_code(json_call(client, "ping")) == 10
    assert error_code(json_call(client, "ping", u=creds.user)) == 10
    assert error_code(json_call(client, "ping", u=creds.user, t=auth["t"])) == 10  # no salt
    assert error_code(json_call(client, "ping", **{**auth, "s": "other"})) == 40
    assert error_code(json_call(client, "ping", u=creds.user, p="wrong-password")) == 40
    hexed = "enc:" + creds.password.encode().hex()
    assert json_call(client, "ping", u=creds.user, p=hexed)["status"] == "ok"
    assert json_call(client, "ping", u=creds.user, p=creds.password)["status"] == "ok"
    assert error_code(json_call(client, "ping", u=creds.user, p="enc:zz")) == 40
    # Extensions are listed before a client logs in.
    assert json_call(client, "getOpenSubsonicExtensions")["status"] == "ok"


def test_unknown_method(client: httpx.Client, auth: dict[str, str]) -> None:
    r = client.get("/rest/getPodcasts", params={**auth, "f": "json"})
    assert r.status_code == 404 and error_code(r.json()["subsonic-response"]) == 0


def test_not_in_openapi(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/rest")]


def test_stream_ranges_and_head(
    client: httpx.Client, auth: dict[str, str], archive_fixture: Fixture
) -> None:
    packed = archive_fixture.present[0]
    expected = packed.tar_bytes(archive_fixture.root)
    params = {**auth, "id": f"tr-{packed.public_id}"}
    r = client.get("/rest/stream", params=params, headers={"Range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == expected[10:100]
    assert r.headers["content-range"] == f"bytes 10-99/{len(expected)}"
    head = client.head("/rest/stream", params=params)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(expected)
    download = client.get("/rest/download", params=params)
    assert download.content == expected and "attachment" in download.headers["content-disposition"]
    song = json_call(client, "getSong", **params)["song"]
    assert (
        song["size"] == len(expected)
        and song["suffix"]
        and song["contentType"].startswith("audio/")
    )


def test_absent_track_is_listed_but_not_streamed(
    client: httpx.Client, auth: dict[str, str], archive_fixture: Fixture
) -> None:
    absent = archive_fixture.absent
    song = json_call(client, "getSong", **auth, id=f"tr-{absent.public_id}")["song"]
    assert song["title"]
    r = client.get("/rest/stream", params={**auth, "id": f"tr-{absent.public_id}", "f": "json"})
    body = r.json()["subsonic-response"]
    assert error_code(body) == 70 and f"{absent.collection}.torrent" in body["error"]["message"]


def test_indexes_if_modified_since(client: httpx.Client, auth: dict[str, str]) -> None:
    first = json_call(client, "getIndexes", **auth)["indexes"]
    assert first["index"]
    again = json_call(client, "getIndexes", **auth, ifModifiedSince=str(first["lastModified"]))
    assert again["indexes"]["lastModified"] == first["lastModified"]
    assert not again["indexes"].get("index")


def test_concurrent_clients(
    live: LiveServer, auth: dict[str, str], archive_fixture: Fixture
) -> None:
    """Many calls at once, reads and writes: each worker thread has its own connections."""
    from concurrent.futures import ThreadPoolExecutor

    packed = archive_fixture.present[0]
    expected = packed.tar_bytes(archive_fixture.root)
    song = f"tr-{packed.public_id}"

    def one(n: int) -> bool:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            if n % 3 == 0:
                return c.get("/rest/stream", params={**auth, "id": song}).content == expected
            method = "star" if n % 3 == 1 else "unstar"
            r = c.post(f"/rest/{method}", data={**auth, "f": "json", "id": song})
            return bool(r.json()["subsonic-response"]["status"] == "ok")

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(48)))
