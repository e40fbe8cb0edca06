"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright.

Sign in, search as you type, open an album, play Opus, FLAC and MP3 tracks (the audio
element's clock must advance), start the shuffle radio, and see the torrents chart.
Screenshots go to ``test-artifacts/serve/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.serve.conftest import CHROMIUM, PASSWORD, USER, LiveServer, packed_tracks

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "serve"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1100, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], errors


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page) -> None:
    page.goto("/signin")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.signin button[type=submit]")
    expect(page.locator("nav")).to_contain_text(f"Sign out {USER}")


def audio_advances(page: Page, selector: str = "#audio") -> None:
    """The audio element plays: its currentTime passes a quarter of a second."""
    page.wait_for_function(
        f"() => {{ const a = document.querySelector('{selector}');"
        " return a && !a.error && a.currentTime > 0.25; }",
        timeout=15_000,
    )


def test_search_album_and_play(page: Page, built_archive: Path) -> None:
    entry = next(
        e
        for e in packed_tracks(built_archive)
        if e["codec"] in ("flac", "opus", "mp3") and e["album"] and e["title"]
    )
    sign_in(page)
    page.goto("/")
    page.locator("#search-box").press_sequentially(str(entry["title"])[:6], delay=30)
    row = page.locator(f'tr.track[data-track-id="{entry["id"]}"]')
    expect(row).to_be_visible()
    assert "q=" in page.url  # the URL follows the typing, so the results can be shared
    shot(page, "search")
    album_link = row.locator("td.album-col a")
    album_title = album_link.inner_text()
    album_link.click()
    expect(page.locator("h1")).to_have_text(album_title)
    shot(page, "album")
    page.locator(f'tr.track[data-track-id="{entry["id"]}"] a.play').click()
    expect(page.locator("#player")).to_be_visible()
    audio_advances(page)
    expect(page.locator("#now-title")).to_contain_text(str(entry["title"]))
    shot(page, "playing")


@pytest.mark.parametrize("codec", ["opus", "flac", "mp3"])
def test_each_codec_plays(page: Page, built_archive: Path, codec: str) -> None:
    entries = [e for e in packed_tracks(built_archive) if e["codec"] == codec]
    if not entries:
        pytest.skip(f"the synthetic audio holds no {codec} track this time")
    sign_in(page)
    page.goto(f"/tracks/{quote(str(entries[0]['id']), safe='')}")
    page.locator("a.play").click()
    audio_advances(page)


def test_shuffle_radio(page: Page) -> None:
    sign_in(page)
    page.goto("/shuffle")
    expect(page.locator("#shuffle-list tr.track").first).to_be_visible()
    page.click("#radio")
    expect(page.locator("#player")).to_be_visible()
    audio_advances(page)
    assert int(page.locator("#queue-count").inner_text()) >= 1
    shot(page, "radio")


def test_torrents_page_chart(page: Page) -> None:
    page.goto("/torrents")
    chart = page.locator("#coverage-chart")
    expect(chart).to_be_visible()
    box = page.locator("#coverage-chart polyline.curve").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 10
    shot(page, "torrents")


def test_phone_layout_and_no_javascript(browser: Browser, live_server: LiveServer) -> None:
    """A phone-sized window without JavaScript: search by the form, browse by links."""
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 375, "height": 740},
        java_script_enabled=False,
    )
    try:
        pg = context.new_page()
        pg.goto("/")
        pg.fill("#search-box", "a")
        pg.press("#search-box", "Enter")
        rows = pg.locator("tr.track")
        expect(rows.first).to_be_visible()
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 400  # no sideways scrolling on a phone
        rows.first.locator("td a").first.click()
        expect(pg.locator("dl.facts")).to_be_visible()
        shot(pg, "phone-track")
    finally:
        context.close()


def teardown_module() -> None:
    # Keep only this run's screenshots beside each other.
    if ARTIFACTS.exists() and not any(ARTIFACTS.iterdir()):
        shutil.rmtree(ARTIFACTS)
