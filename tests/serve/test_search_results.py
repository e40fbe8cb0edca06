"""``GET /api/v1/search`` is encoded straight from catalog rows (serve.search_results):
it must say exactly what the pydantic models the pages use say, in the documented shape."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from phonotheca.catalog.search import search_keys
from phonotheca.config import load_settings
from phonotheca.serve.app import create_app
from phonotheca.serve.browse import Browser
from phonotheca.serve.context import ServeContext
from phonotheca.serve.models import SearchResults
from tests.serve.conftest import HOSTILE_TITLE


@pytest.fixture(scope="module")
def browser(built_archive: Path) -> Browser:
    ctx = ServeContext(settings=load_settings(built_archive), roots=[built_archive])
    create_app(ctx)  # attaches the media library the browser needs
    return Browser(ctx)


@pytest.mark.parametrize(
    ("q", "limit", "offset"),
    [
        ("a", 20, 0),
        ("e", 50, 3),
        ("e", 100, 1),
        ("quotes double", 5, 0),  # the hostile record: markup and quotes in the title
        ("path like", 5, 0),  # a path-like id
        ("qzxv nothing matches", 20, 0),
        ("", 20, 0),
    ],
)
def test_search_json_matches_the_models(
    client: httpx.Client, browser: Browser, q: str, limit: int, offset: int
) -> None:
    r = client.get("/api/v1/search", params={"q": q, "limit": limit, "offset": offset})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    keys = search_keys(browser.conn(), q, limit, offset)
    expected = SearchResults(
        query=q,
        offset=offset,
        limit=limit,
        tracks=browser.search(q, limit, offset),
        next_after=keys[-1] if len(keys) == limit else None,
    )
    assert r.json() == json.loads(expected.model_dump_json())
    SearchResults.model_validate_json(r.content)  # the shape /openapi.json documents


def test_search_json_has_playable_and_unplayable_tracks(client: httpx.Client) -> None:
    """The fixture has both, so the comparisons above cover audio_url and its absence."""
    tracks = client.get("/api/v1/search", params={"q": "a", "limit": 1000}).json()["tracks"]
    assert any(t["playable"] and t["audio_url"] for t in tracks)
    assert any(not t["playable"] and t["audio_url"] is None for t in tracks)
    hostile = client.get("/api/v1/search", params={"q": "quotes"}).json()["tracks"]
    assert [t["title"] for t in hostile] == [HOSTILE_TITLE]


def test_search_pages_by_key_as_by_offset(client: httpx.Client) -> None:
    """Following ``next_after`` gives the pages ``offset`` gives, without the playlists."""
    everything = client.get("/api/v1/search", params={"q": "e", "limit": 1000}).json()
    ids = [t["id"] for t in everything["tracks"]]
    assert len(ids) > 12 and everything["next_after"] is None
    seen: list[str] = []
    params: dict[str, object] = {"q": "e", "limit": 5}
    while True:
        page = client.get("/api/v1/search", params=params).json()
        seen += [t["id"] for t in page["tracks"]]
        if len(seen) > 5:
            assert page["playlists"] == []
        if page["next_after"] is None:
            break
        params["after"] = page["next_after"]
    assert seen == ids
    assert client.get("/api/v1/search", params={"q": "e", "after": -1}).status_code == 422
