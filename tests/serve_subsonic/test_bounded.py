"""Bounded calls: offsets past the cap, absurd numbers, transcodes without a free slot."""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zstandard

from phonotheca.serve.subsonic.call import MAX_OFFSET
from phonotheca.serve.subsonic.folders import MAX_LIST
from phonotheca.serve.transcode import (
    MAX_TRANSCODES,
    RETRY_AFTER,
    LiveTranscode,
    Target,
    TranscodeBusy,
)
from tests.serve_subsonic.conftest import Fixture, LiveServer, Packed
from tests.serve_subsonic.test_lists import Api


@pytest.fixture
def api(live: LiveServer, archive_fixture: Fixture) -> Iterator[Api]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield Api(client, archive_fixture.creds.api_key)


def _error(body: dict) -> tuple[int, str]:
    assert body["status"] == "failed", body
    return int(body["error"]["code"]), str(body["error"]["message"])


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("search3", {"query": "a", "songOffset": MAX_OFFSET + 1}),
        ("search3", {"query": "a", "albumOffset": 1 << 40}),
    ],
)
def test_offsets_past_the_cap_are_a_clear_error(api: Api, method: str, params: dict) -> None:
    """A word search skips its matches (capped); lists and the library sync are read by
    position, so any depth an integer can say costs the same (tests/serve_subsonic/
    test_scale.py checks their query plans)."""
    code, message = _error(api(method, **params))
    name = next(k for k in params if k.endswith("ffset"))
    assert code == 0
    assert f"parameter '{name}' is at most" in message


def test_deep_offsets_are_answered(api: Api) -> None:
    body = api("getAlbumList2", type="newest", offset=1_000_000, musicFolderId=2)
    assert body["status"] == "ok" and body["albumList2"].get("album", []) == []
    body = api("search3", query="", songOffset=10**9, albumCount=0, artistCount=0)
    assert body["status"] == "ok" and body["searchResult3"].get("song", []) == []
    body = api("search3", query="a", songOffset=MAX_OFFSET, albumCount=0, artistCount=0)
    assert body["status"] == "ok"


def test_sizes_past_500_are_a_clear_error(api: Api) -> None:
    full = api("getAlbumList2", type="newest", size=MAX_LIST)
    assert full["status"] == "ok"
    code, message = _error(api("getAlbumList2", type="newest", size=10**6))
    assert code == 0 and f"parameter 'size' is at most {MAX_LIST}" in message


def test_absurd_numbers_are_refused_without_converting_them(api: Api) -> None:
    code, message = _error(api("getAlbumList2", type="newest", size="9" * 5000))
    assert code == 0 and "parameter 'size' must be an integer" in message
    assert len(message) < 200


def _transcode_of(archive_fixture: Fixture, packed: Packed) -> LiveTranscode:
    """A real transcode of ``packed`` opened here, holding one of the server's slots (the
    live server runs in this process)."""
    volume = archive_fixture.root / "torrents" / packed.collection / "data" / packed.volume
    return LiveTranscode(volume, packed.offset, packed.length, Target("mp3", 64))


def test_a_transcode_without_a_free_slot_is_503_with_retry_after(
    live: LiveServer, archive_fixture: Fixture
) -> None:
    packed = archive_fixture.present[0]
    params = {
        "id": f"tr-{packed.public_id}",
        "maxBitRate": "64",
        "format": "mp3",
        "apiKey": archive_fixture.creds.api_key,
        "f": "json",
    }
    running = [_transcode_of(archive_fixture, packed) for _ in range(MAX_TRANSCODES)]
    try:
        with pytest.raises(TranscodeBusy):
            _transcode_of(archive_fixture, packed)
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for _ in range(3):  # answered at once, and again: no thread waits for a slot
                r = client.get("/rest/stream", params=params)
                assert r.status_code == 503
                assert r.headers["retry-after"] == str(RETRY_AFTER)
                assert r.headers["content-type"] == "application/json"
                code, message = _error(r.json()["subsonic-response"])
                assert code == 0 and "transcoding slots" in message and "busy" in message
            # The stored file needs no slot.
            stored = client.get("/rest/stream", params={**params, "format": "raw"})
            assert stored.status_code == 200 and stored.content == packed.source.read_bytes()
            running.pop().close()
            r = client.get("/rest/stream", params=params)
            assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
            assert len(r.content) > 0
    finally:
        for t in running:
            t.close()


def test_a_transcode_never_read_gives_its_slot_back(archive_fixture: Fixture) -> None:
    packed = archive_fixture.present[0]
    for _ in range(MAX_TRANSCODES + 2):
        dropped = _transcode_of(archive_fixture, packed)
        del dropped
        gc.collect()
    # Every slot is free again: as many as there are can be taken together.
    held = [_transcode_of(archive_fixture, packed) for _ in range(MAX_TRANSCODES)]
    for t in held:
        t.close()


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_subsonic_answers_are_compressed_when_asked(
    live: LiveServer, archive_fixture: Fixture, fmt: str
) -> None:
    params = {"type": "newest", "size": "500", "apiKey": archive_fixture.creds.api_key, "f": fmt}

    def raw(encoding: str) -> tuple[httpx.Response, bytes]:
        with (
            httpx.Client(base_url=live.url, timeout=30) as client,
            client.stream(
                "GET", "/rest/getAlbumList2", params=params, headers={"Accept-Encoding": encoding}
            ) as r,
        ):
            return r, b"".join(r.iter_raw())

    plain, plain_body = raw("identity")
    assert "content-encoding" not in plain.headers and len(plain_body) > 1000
    gz, gz_body = raw("gzip")
    assert gz.headers["content-encoding"] == "gzip"
    assert zlib.decompress(gz_body, 31) == plain_body
    zs, zs_body = raw("zstd, gzip")
    assert zs.headers["content-encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zs_body) == plain_body


def test_search_counts_are_capped_at_500(api: Api) -> None:
    body = api("search3", query="a", songCount=10**6, albumCount=10**6, artistCount=10**6)
    assert body["status"] == "ok"
    capped = body["searchResult3"]
    same = api("search3", query="a", songCount=500, albumCount=500, artistCount=500)
    assert capped == same["searchResult3"]


def test_a_real_call_past_its_budget_is_error_0(archive_fixture: Fixture, tmp_path: Path) -> None:
    """A catalog with a million genres and a budget of 20 ms: looking a genre up by a name in
    another case scans them all (the deliberately expensive query), which the budget stops."""
    root = tmp_path / "big"
    shutil.copytree(archive_fixture.root, root)
    conn = sqlite3.connect(root / "catalog.sqlite3")
    with conn:
        conn.execute(
            "INSERT INTO genres(name) SELECT 'generated genre ' || value FROM json_each(?)",
            (json.dumps(list(range(1_000_000))),),
        )
    conn.close()
    settings = root / "phonotheca.toml"
    text = settings.read_text()
    # Into the [serve] table the fixture may already have (TOML refuses a second one).
    if "[serve]\n" in text:
        text = text.replace("[serve]\n", "[serve]\nquery_budget_ms = 20\n", 1)
    else:
        text += "\n[serve]\nquery_budget_ms = 20\n"
    settings.write_text(text)
    server = LiveServer(root)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            api = Api(client, archive_fixture.creds.api_key)
            code, message = _error(api("getAlbumList2", type="byGenre", genre="NO SUCH GENRE"))
            assert code == 0 and "20 ms budget" in message
            r = client.get("/rest/getOpenSubsonicExtensions", params={"f": "json"})
            assert r.json()["subsonic-response"]["status"] == "ok"
    finally:
        server.stop()
