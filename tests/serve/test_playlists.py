"""Catalog playlists on the web and in the JSON API, over a copy of the built archive.

Playlists are written into its catalog (tests/playlists.py): one with tracks this server
plays, a track it does not hold, an entry no catalog track matched and a repeat; one of
250 entries (three pages); 120 others to page through the list; hostile text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, expect

from phonotheca.serve.models import Playlist, PlaylistList, SearchResults
from phonotheca.serve.playlists import ENTRIES_PER_PAGE, PLAYLISTS_PER_PAGE
from tests.playlists import Given, add_playlist
from tests.serve.conftest import (
    CHROMIUM,
    PASSWORD,
    USER,
    LiveServer,
    copy_archive,
    make_app,
    packed_tracks,
)
from tests.serve.test_browser import shot
from tests.serve.test_layout import BROKEN_WORDS_JS, OVERFLOW_JS, WIDTHS

MIX = "pl:mix"
LONG = "pl:long"
EVIL = "pl:evil/../x"
FILLERS = 120
EVIL_TITLE = "<script>alert(3)</script> Évil"
LOST = Given("Lost Song", "Nobody", "Nowhere", 200_000, "https://musicbrainz.org/recording/x")


@pytest.fixture(scope="module")
def tracks(built_archive: Path) -> tuple[list[str], list[str]]:
    """Public ids of tracks this server plays, and of tracks it has no audio for."""
    playable = [str(e["id"]) for e in packed_tracks(built_archive)]
    conn = sqlite3.connect(built_archive / "catalog.sqlite3")
    try:
        others = [
            r[0]
            for r in conn.execute("SELECT public_id FROM tracks ORDER BY id")
            if r[0] not in set(playable)
        ]
    finally:
        conn.close()
    return playable, others


@pytest.fixture(scope="module")
def root(
    built_archive: Path, tmp_path_factory: pytest.TempPathFactory, tracks: tuple[list[str], ...]
) -> Path:
    playable, others = tracks
    arc = copy_archive(built_archive, tmp_path_factory.mktemp("playlists") / "arc")
    conn = sqlite3.connect(arc / "catalog.sqlite3", isolation_level=None)
    try:
        add_playlist(
            conn,
            MIX,
            "Summer Mix Café",
            [playable[0], others[0], LOST, playable[1], playable[0]],
            creator="DJ Test",
            annotation="<b>not bold</b>",
            identifier="https://example.org/playlists/1",
        )
        add_playlist(conn, LONG, "Long Haul", [others[i % len(others)] for i in range(250)])
        add_playlist(conn, EVIL, EVIL_TITLE, [LOST], identifier="javascript:alert(4)")
        add_playlist(conn, "pl:empty", "Nothing At All")
        for i in range(FILLERS):
            add_playlist(conn, f"pl:f{i:03d}", f"Filler {i}", [others[i % len(others)]])
    finally:
        conn.close()
    return arc


@pytest.fixture(scope="module")
def live(root: Path) -> Iterator[LiveServer]:
    with LiveServer(make_app(root)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def _url(public_id: str) -> str:
    return f"/playlists/{quote(public_id, safe='')}"


def test_a_playlist_page_marks_what_this_server_plays(
    client: httpx.Client, tracks: tuple[list[str], list[str]]
) -> None:
    playable, others = tracks
    r = client.get(_url(MIX))
    assert r.status_code == 200
    html = r.text
    assert "<h1>Summer Mix Café</h1>" in html and "DJ Test" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html and "<b>not bold" not in html
    assert 'href="https://example.org/playlists/1"' in html
    rows = re.findall(r'<tr class="(?:track" data-track-id="([^"]+)|entry (unmatched))"', html)
    assert [r[0] or r[1] for r in rows] == [
        playable[0],
        others[0],
        "unmatched",
        playable[1],
        playable[0],
    ]
    # Playable rows carry their audio for the page's player; the others say why not.
    for track_id in (playable[0], playable[1]):
        row = re.search(rf'data-track-id="{re.escape(track_id)}"[^>]*>', html)
        assert row is not None and "data-audio=" in row.group(0)
    absent = re.search(
        rf'<tr class="track" data-track-id="{re.escape(others[0])}".*?</tr>', html, re.S
    )
    assert (
        absent is not None and "not here" in absent.group(0) and "data-audio" not in absent.group(0)
    )
    lost = re.search(r'<tr class="entry unmatched">.*?</tr>', html, re.S)
    assert lost is not None
    assert "Lost Song" in lost.group(0) and "Nobody" in lost.group(0) and "Nowhere" in lost.group(0)
    assert "3:20" in lost.group(0) and "not in the catalog" in lost.group(0)
    assert client.get(_url("pl:nope")).status_code == 404


def test_hostile_text_is_escaped_and_only_web_links_are_links(client: httpx.Client) -> None:
    html = client.get(_url(EVIL)).text
    assert "<script>alert(3)" not in html and "&lt;script&gt;alert(3)&lt;/script&gt; Évil" in html
    assert 'href="javascript:' not in html and "javascript:alert(4)" in html


def test_a_long_playlist_pages_by_position(client: httpx.Client) -> None:
    first = client.get(_url(LONG)).text
    assert f"1–{ENTRIES_PER_PAGE} of 250 entries" in first
    assert first.count('<tr class="track"') == ENTRIES_PER_PAGE
    links = dict(
        (rel, at) for at, rel in re.findall(r'href="[^"?]*(?:\?at=(\d+))?" rel="(\w+)"', first)
    )
    assert links == {"next": "100", "last": "200"}
    last = client.get(_url(LONG) + "?at=200").text
    assert "201–250 of 250 entries" in last and last.count('<tr class="track"') == 50
    assert re.search(r'<td class="n-col num">201</td>', last)
    past = client.get(_url(LONG) + "?at=5000").text
    assert "No entries this far" in past
    assert client.get(_url(LONG) + "?at=-1").status_code == 422
    empty = client.get(_url("pl:empty")).text
    assert "This playlist has no entries." in empty


def _listed(html: str) -> list[str]:
    """The public ids a page of the list shows, in order."""
    found = re.findall(r'<li class="playlist-item">\s*<a href="/playlists/([^"]+)"', html)
    return [p.replace("%3A", ":").replace("%2F", "/") for p in found]


def test_the_list_of_playlists_pages_by_public_id(client: httpx.Client, root: Path) -> None:
    conn = sqlite3.connect(root / "catalog.sqlite3")
    everything = [r[0] for r in conn.execute("SELECT public_id FROM playlists ORDER BY public_id")]
    conn.close()
    seen: list[str] = []
    url: str | None = "/playlists"
    pages = []
    while url is not None:
        html = client.get(url).text
        pages.append(html)
        seen += _listed(html)
        found = re.search(r'href="(/playlists\?after=[^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == everything
    assert len(pages) == -(-len(everything) // PLAYLISTS_PER_PAGE)
    assert 'rel="prev"' not in pages[0] and 'rel="prev"' in pages[-1]
    # Back from the last page: the page before it, as it was on the way forward.
    prev = re.search(r'href="(/playlists\?before=[^"]+)" rel="prev"', pages[-1])
    assert prev is not None
    assert client.get(prev.group(1)).text.count("playlist-item") == PLAYLISTS_PER_PAGE
    assert client.get(prev.group(1)).text.split("<h1>")[1] == pages[-2].split("<h1>")[1]
    assert "No playlists this far" in client.get("/playlists?after=pl:zzz").text
    # Before an id past the end: the last 50, with no page after them.
    tail = client.get("/playlists?before=pl:zzz").text
    assert _listed(tail) == everything[-PLAYLISTS_PER_PAGE:]
    assert 'rel="next"' not in tail and 'rel="prev"' in tail


def test_search_finds_playlists_by_title_words_and_prefixes(client: httpx.Client) -> None:
    for q in ("summer", "sum", "cafe mix", "Summer M", "dj tes"):
        html = client.get("/", params={"q": q}).text
        assert f'href="{_url(MIX)}"' in html, q
    assert "Playlists matching" not in client.get("/", params={"q": "qzxv"}).text
    found = client.get("/api/v1/search", params={"q": "haul"}).json()
    assert [p["id"] for p in found["playlists"]] == [LONG]
    assert found["playlists"][0]["entry_count"] == 250
    SearchResults.model_validate(found)
    later = client.get("/api/v1/search", params={"q": "haul", "offset": 10}).json()
    assert later["playlists"] == []


def test_the_api_gives_playlists_like_albums(
    client: httpx.Client, tracks: tuple[list[str], list[str]]
) -> None:
    playable, others = tracks
    listed = PlaylistList.model_validate_json(client.get("/api/v1/playlists?limit=3").content)
    assert [p.id for p in listed.playlists] == ["pl:empty", "pl:evil/../x", "pl:f000"]
    assert listed.before is None and listed.after == "pl:f000"
    more = PlaylistList.model_validate_json(
        client.get("/api/v1/playlists", params={"after": listed.after, "limit": 2}).content
    )
    assert [p.id for p in more.playlists] == ["pl:f001", "pl:f002"] and more.before == "pl:f001"

    mix = Playlist.model_validate_json(client.get(f"/api/v1/playlists/{MIX}").content)
    assert (mix.title, mix.creator, mix.entry_count, mix.matched_count) == (
        "Summer Mix Café", "DJ Test", 5, 4,
    )  # fmt: skip
    assert [e.track.id if e.track else None for e in mix.entries] == [
        playable[0], others[0], None, playable[1], playable[0],
    ]  # fmt: skip
    assert [e.track.playable for e in mix.entries if e.track] == [True, False, True, True]
    assert mix.entries[2].title == "Lost Song" and mix.entries[2].match is None
    page = Playlist.model_validate_json(
        client.get(f"/api/v1/playlists/{LONG}", params={"offset": 240, "limit": 20}).content
    )
    assert page.entries_offset == 240 and [e.position for e in page.entries] == list(
        range(240, 250)
    )
    assert client.get("/api/v1/playlists/pl:nope").status_code == 404
    assert client.get(f"/api/v1/playlists/{LONG}", params={"limit": 501}).status_code == 422


def test_playlist_answers_are_validated_and_compressed(client: httpx.Client) -> None:
    client.get("/playlists")  # the page sets the CSRF cookie: a page that does gets no ETag
    for url in (_url(MIX), "/playlists", f"/api/v1/playlists/{MIX}", "/api/v1/playlists"):
        r = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip", url
        again = client.get(url, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_a_playlist_plays_in_the_browser(
    browser: Browser, live: LiveServer, tracks: tuple[list[str], list[str]]
) -> None:
    playable = tracks[0]
    context = browser.new_context(base_url=live.url, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/signin")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("form.signin button[type=submit]")
        expect(page.locator("nav")).to_contain_text(f"Sign out {USER}")
        page.goto("/")
        page.locator("#search-box").press_sequentially("summer mi", delay=30)
        page.locator(f'ul.playlists a[href="{_url(MIX)}"]').click()
        expect(page.locator("h1")).to_have_text("Summer Mix Café")
        rows = page.locator("table.playlist-entries tbody tr")
        expect(rows).to_have_count(5)
        expect(rows.nth(1).locator("td.actions")).to_have_text("not here")
        expect(rows.nth(2).locator("td.actions")).to_have_text("not in the catalog")
        expect(page.locator("table.playlist-entries a.play")).to_have_count(3)
        shot(page, "playlist")
        page.locator(f'tr.track[data-track-id="{playable[1]}"] a.play').click()
        expect(page.locator("#player")).to_be_visible()
        page.wait_for_function(
            "() => { const a = document.querySelector('#audio');"
            " return a && !a.error && a.currentTime > 0.25; }",
            timeout=15_000,
        )
    finally:
        context.close()
    assert errors == [], errors


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
@pytest.mark.parametrize("width", WIDTHS)
def test_playlist_pages_fit_a_phone_and_a_desktop(
    browser: Browser, live: LiveServer, width: int, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=live.url, viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        for name, path in (
            ("playlist", _url(MIX)),
            ("long", _url(LONG) + "?at=100"),
            ("list", "/playlists?after=pl:f010"),
            ("search", "/?q=summer"),
        ):
            page.goto(path)
            page.wait_for_load_state("load")
            page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
            assert page.evaluate(OVERFLOW_JS) == [], (name, width)
            assert page.evaluate(BROKEN_WORDS_JS) == [], (name, width)
    finally:
        context.close()


def test_a_private_catalog_keeps_its_playlists_behind_the_sign_in(root: Path) -> None:
    with (
        LiveServer(make_app(root, public_catalog=False)) as private,
        httpx.Client(base_url=private.url, timeout=30) as anonymous,
    ):
        for url in ("/playlists", _url(MIX)):
            r = anonymous.get(url, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
        for url in ("/api/v1/playlists", f"/api/v1/playlists/{MIX}"):
            assert anonymous.get(url).status_code == 401
        found = anonymous.get("/api/v1/search", params={"q": "summer"})
        assert found.status_code == 401
