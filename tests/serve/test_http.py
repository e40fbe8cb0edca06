"""HTTP as clients expect it: zstd and gzip for text answers when asked, never for audio
or ranges; weak validators on the answers that change only with the archive, and 304s."""

from __future__ import annotations

import email.utils
import sqlite3
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import zstandard
from starlette.datastructures import Headers

from phonotheca.serve.compression import negotiate
from phonotheca.serve.conditional import VERSION_TTL, not_modified, validated
from tests.serve.conftest import LiveServer, copy_archive, make_app, packed_tracks, sign_in

IDENTITY = {"Accept-Encoding": "identity"}


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("gzip, deflate, br", "gzip"),
        ("gzip, zstd", "zstd"),
        ("zstd;q=0.5, gzip", "gzip"),
        ("zstd;q=0, gzip;q=0", None),
        ("GZIP;Q=0.3", "gzip"),
        ("*", "zstd"),
        ("*, zstd;q=0", "gzip"),
        ("gzip;q=nonsense", None),
    ],
)
def test_negotiation(header: str | None, coding: str | None) -> None:
    assert negotiate(header) == coding


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/api/v1/tracks/syn:track:1", "", True),
        ("/api/v1/search", "q=a", True),
        ("/albums/a%2Fb", "", True),
        ("/", "q=pink", True),
        ("/", "", False),  # the home page's selection rotates
        ("/", "q=", False),
        ("/tracks/x/audio", "", False),
        ("/albums/x/cover", "", False),
        ("/api/v1/shuffle", "", False),
        ("/shuffle", "", False),
        ("/rest/getAlbum", "", False),
    ],
)
def test_which_answers_get_validators(path: str, query: str, expected: bool) -> None:
    assert validated(path, query) is expected


def _raw(client: httpx.Client, url: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """The response and its body as sent (not decoded by httpx)."""
    with client.stream("GET", url, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def _decode(coding: str, body: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(body, 31)
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_json_and_html_are_compressed_when_asked(
    client: httpx.Client, built_archive: Path, coding: str
) -> None:
    track_id = quote(str(packed_tracks(built_archive)[0]["id"]), safe="")
    for url in ("/api/v1/search?q=a&limit=100", f"/tracks/{track_id}", "/openapi.json"):
        plain, plain_body = _raw(client, url, **IDENTITY)
        assert "content-encoding" not in plain.headers
        assert "accept-encoding" in plain.headers["vary"].lower()
        packed, packed_body = _raw(client, url, **{"Accept-Encoding": f"{coding}, br"})
        assert packed.status_code == 200
        assert packed.headers["content-encoding"] == coding
        assert "accept-encoding" in packed.headers["vary"].lower()
        assert int(packed.headers["content-length"]) == len(packed_body) < len(plain_body)
        assert _decode(coding, packed_body) == plain_body, url


def test_audio_ranges_and_small_answers_are_never_compressed(
    signed_in: httpx.Client, built_archive: Path
) -> None:
    entry = max(packed_tracks(built_archive), key=lambda e: int(str(e["length"])))
    url = f"/tracks/{quote(str(entry['id']), safe='')}/audio"
    both = {"Accept-Encoding": "zstd, gzip"}
    whole, body = _raw(signed_in, url, **both)
    assert whole.status_code == 200 and "content-encoding" not in whole.headers
    assert len(body) == int(str(entry["length"]))
    part, body = _raw(signed_in, url, Range="bytes=10-19", **both)
    assert part.status_code == 206 and "content-encoding" not in part.headers
    assert len(body) == 10
    css, _ = _raw(signed_in, "/static/style.css", **both)  # served with byte ranges
    assert css.status_code == 200 and "content-encoding" not in css.headers
    missing, _ = _raw(signed_in, "/api/v1/tracks/no-such-track", **both)  # a few bytes
    assert missing.status_code == 404 and "content-encoding" not in missing.headers


def test_a_repeat_with_the_etag_is_304(client: httpx.Client, built_archive: Path) -> None:
    entry = packed_tracks(built_archive)[0]
    track_id = quote(str(entry["id"]), safe="")
    # A page that sets the CSRF cookie has no validator (the next one will be different).
    fresh = client.get(f"/tracks/{track_id}")
    assert "set-cookie" in fresh.headers and "etag" not in fresh.headers
    for url in (
        f"/api/v1/tracks/{track_id}",
        f"/tracks/{track_id}",
        "/api/v1/search?q=a",
        "/?q=a",
        "/api/v1/stats",
    ):
        first = client.get(url)
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert etag.startswith('W/"')
        assert first.headers["cache-control"] == "private, no-cache"
        last_modified = first.headers["last-modified"]
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert "accept-encoding" in again.headers["vary"].lower()
        # Compressed or not, it is the same (weak) validator.
        assert client.get(url, headers=IDENTITY).headers["etag"] == etag
        listed = client.get(url, headers={"If-None-Match": f'"other", {etag}'})
        assert listed.status_code == 304
        # If-Modified-Since holds once the last change is a whole second old.
        changed = email.utils.parsedate_to_datetime(last_modified).timestamp()
        time.sleep(max(0.0, changed + 2 - time.time()))
        since = client.get(url, headers={"If-Modified-Since": last_modified})
        assert since.status_code == 304
        stale = client.get(url, headers={"If-None-Match": 'W/"something-else"'})
        assert stale.status_code == 200 and stale.content == first.content
    # Another URL has another validator; answers that vary get none.
    other = client.get("/api/v1/search?q=e").headers["etag"]
    assert other != client.get("/api/v1/search?q=a").headers["etag"]
    assert "etag" not in client.get("/api/v1/shuffle").headers
    assert "etag" not in client.get("/").headers


@pytest.fixture
def changing_archive(built_archive: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    root = copy_archive(built_archive, tmp_path / "arc")
    with LiveServer(make_app(root)) as server:
        yield server, root


def test_the_validator_changes_with_the_catalog(
    changing_archive: tuple[LiveServer, Path],
) -> None:
    server, root = changing_archive
    with httpx.Client(base_url=server.url, timeout=30) as client:
        url = "/api/v1/search?q=a"
        first = client.get(url)
        etag = first.headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        conn = sqlite3.connect(root / "catalog.sqlite3")
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.execute("UPDATE tracks SET title = title || ' (remastered)' WHERE id = 1")
        conn.close()
        # The version read is reused for up to VERSION_TTL seconds: ask until it is not.
        deadline = time.monotonic() + VERSION_TTL + 20
        while (after := client.get(url, headers={"If-None-Match": etag})).status_code == 304:
            assert time.monotonic() < deadline, "the validator did not change"
            time.sleep(VERSION_TTL / 4)
        assert after.status_code == 200
        assert after.headers["etag"] != etag


def test_a_private_catalog_checks_access_before_304(built_archive: Path, tmp_path: Path) -> None:
    root = copy_archive(built_archive, tmp_path / "arc")
    with (
        LiveServer(make_app(root, public_catalog=False)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        sign_in(client)
        first = client.get("/api/v1/stats")
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert client.get("/api/v1/stats", headers={"If-None-Match": etag}).status_code == 304
        anonymous = httpx.get(
            f"{server.url}/api/v1/stats", headers={"If-None-Match": etag}, timeout=30
        )
        assert anonymous.status_code == 401


def test_if_modified_since_needs_a_whole_second_and_yields_to_if_none_match() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 5, usegmt=True)
    tag = 'W/"abc"'
    just_changed = Headers({"if-modified-since": date})
    assert not not_modified(just_changed, tag, now)  # a change later this second is possible
    assert not_modified(just_changed, tag, now - 10)
    assert not not_modified(Headers({"if-modified-since": "not a date"}), tag, now - 10)
    both = Headers({"if-modified-since": date, "if-none-match": '"other"'})
    assert not not_modified(both, tag, now - 10)  # If-None-Match wins
    assert not_modified(Headers({"if-none-match": '"abc"'}), tag, now)  # weak comparison
    assert not_modified(Headers({"if-none-match": "*"}), tag, now)
