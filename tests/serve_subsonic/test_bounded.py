"""Bounded calls: offsets past the cap, absurd numbers, transcodes without a free slot."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from phonotheca.serve.subsonic.call import MAX_OFFSET, MAX_SYNC_OFFSET
from phonotheca.serve.subsonic.lists import MAX_LIST
from tests.serve_subsonic.conftest import Fixture, LiveServer
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
        ("getAlbumList2", {"type": "newest", "offset": MAX_OFFSET + 1}),
        ("getAlbumList2", {"type": "alphabeticalByName", "offset": 1 << 40}),
        ("search3", {"query": "a", "songOffset": MAX_OFFSET + 1}),
        ("search3", {"query": "a", "albumOffset": 1 << 40}),
        ("search3", {"query": "", "songOffset": MAX_SYNC_OFFSET + 1}),
    ],
)
def test_offsets_past_the_cap_are_a_clear_error(api: Api, method: str, params: dict) -> None:
    code, message = _error(api(method, **params))
    name = next(k for k in params if k.endswith("ffset"))
    assert code == 0
    assert f"parameter '{name}' is at most" in message


def test_offsets_at_the_cap_are_answered(api: Api) -> None:
    body = api("getAlbumList2", type="newest", offset=MAX_OFFSET)
    assert body["status"] == "ok" and body["albumList2"]["album"] == []
    body = api("search3", query="", songOffset=MAX_SYNC_OFFSET, albumCount=0, artistCount=0)
    assert body["status"] == "ok" and body["searchResult3"].get("song", []) == []


def test_sizes_are_capped_at_500(api: Api) -> None:
    capped = api("getAlbumList2", type="newest", size=10**6)
    full = api("getAlbumList2", type="newest", size=MAX_LIST)
    assert capped["status"] == "ok"
    assert capped["albumList2"] == full["albumList2"]


def test_absurd_numbers_are_refused_without_converting_them(api: Api) -> None:
    code, message = _error(api("getAlbumList2", type="newest", size="9" * 5000))
    assert code == 0 and "parameter 'size' must be an integer" in message
    assert len(message) < 200
