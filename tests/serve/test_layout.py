"""The pages as a visitor sees them, on a phone (390 px) and a desktop (1280 px).

Measured in Debian's Chromium: nothing sticks out sideways, no word is broken unless it
is wider than its line, every album tile has one size and a picture, the statistics
speak words. Full-page screenshots of each page at each width go to the test's tmp_path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page

from tests.serve.conftest import LONG_ALBUM_ID, PASSWORD, USER, LiveServer

WIDTHS = (390, 1280)

# Elements outside the viewport's width, unless an ancestor clips or scrolls them (the
# torrents table scrolls in its box; an ellipsis clips).
OVERFLOW_JS = """
() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > vw) {
    out.push(`the page is ${document.documentElement.scrollWidth}px wide for ${vw}px`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right <= vw + 0.5 && r.left >= -0.5) continue;
    let a = el.parentElement, clipped = false;
    while (a && a !== document.body) {
      if (getComputedStyle(a).overflowX !== "visible") { clipped = true; break; }
      a = a.parentElement;
    }
    if (!clipped) {
      out.push(`${el.tagName.toLowerCase()}.${el.className?.baseVal ?? el.className}`
               + ` spans ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}px`);
    }
  }
  return out;
}
"""

# Words split across two lines. Each whitespace-separated word's characters are measured:
# a change of line inside a word is fine after a hyphen, a dash or a slash and between
# ideographs (where lines may break anyway); anywhere else only when the word is wider
# than the box it is in, so that it would overflow unbroken, and the box is not one that
# "overflow-wrap: anywhere" or "word-break: break-all" let shrink below its longest word
# (a table column squeezed to a few letters breaks every word "because it overflows").
BROKEN_WORDS_JS = """
() => {
  const soft = /[-\\u2010-\\u2015\\/\\u3000-\\u9fff\\uac00-\\ud7af\\uf900-\\ufaff\\uff00-\\uffef]/;
  const out = [];
  const range = document.createRange();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  function box(el) {
    while (el && getComputedStyle(el).display.startsWith("inline")) el = el.parentElement;
    const s = getComputedStyle(el);
    return el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
  }
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest("svg, script, style, audio, [hidden], .visually-hidden")) continue;
    if (!el.getClientRects().length) continue;
    const re = /\\S+/g;
    let m;
    while ((m = re.exec(node.data))) {
      const word = m[0];
      if (word.length < 2) continue;
      let lastTop = null, lastChar = "", breaks = [];
      for (let i = 0; i < word.length; i++) {
        range.setStart(node, m.index + i);
        range.setEnd(node, m.index + i + 1);
        const rects = range.getClientRects();
        if (!rects.length || rects[0].width === 0) continue;
        const top = rects[0].top;
        if (lastTop !== null && Math.abs(top - lastTop) > 2) breaks.push([lastChar, word[i]]);
        lastTop = top;
        lastChar = word[i];
      }
      const hard = breaks.filter(([a, b]) => !soft.test(a) && !soft.test(b));
      if (!hard.length) continue;
      range.setStart(node, m.index);
      range.setEnd(node, m.index + word.length);
      let width = 0;
      for (const r of range.getClientRects()) width += r.width;
      const style = getComputedStyle(el);
      const squeezed = style.overflowWrap === "anywhere"
        || /break-all|break-word/.test(style.wordBreak);
      if (width <= box(el) + 1 || squeezed) {
        out.push(`"${word}" (${Math.round(width)}px in ${Math.round(box(el))}px)`);
      }
    }
  }
  return out;
}
"""

TILES_JS = """
() => Array.from(document.querySelectorAll("li.tile")).map((li) => {
  const r = li.getBoundingClientRect();
  const art = li.querySelector(".tile-art").getBoundingClientRect();
  const img = li.querySelector("img.art");
  return {
    width: r.width, height: r.height, artWidth: art.width, artHeight: art.height,
    hidden: getComputedStyle(li).display === "none",
    image: img ? (img.complete && img.naturalWidth > 0 ? "cover" : "broken")
               : (li.querySelector("svg.placeholder") ? "placeholder" : "none"),
  };
})
"""


def _catalog(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)


def _pages(root: Path) -> dict[str, str]:
    """A page of every kind, the long and hostile names included."""
    conn = _catalog(root)
    try:
        with_cover = (
            "EXISTS (SELECT 1 FROM images i WHERE i.album_id = a.id AND i.blob_sha256 IS NOT NULL)"
        )
        mixed_artist = conn.execute(
            "SELECT ar.public_id FROM album_artists aa JOIN artists ar ON ar.id = aa.artist_id"
            f" JOIN albums a ON a.id = aa.album_id GROUP BY ar.id HAVING sum({with_cover}) > 0"
            f" AND sum(NOT {with_cover}) > 0 ORDER BY count(*) DESC, ar.id LIMIT 1"
        ).fetchone()[0]
        covered = conn.execute(
            f"SELECT public_id FROM albums a WHERE {with_cover} LIMIT 1"
        ).fetchone()[0]
        held = conn.execute(
            "SELECT t.public_id FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " WHERE l.status = 'packed' ORDER BY t.id LIMIT 1"
        ).fetchone()[0]
        genre = conn.execute(
            "SELECT g.name FROM album_genres ag JOIN genres g ON g.id = ag.genre_id"
            " GROUP BY g.id ORDER BY count(*) DESC, g.id LIMIT 1"
        ).fetchone()[0]
    finally:
        conn.close()

    def q(value: str) -> str:
        return quote(value, safe="")

    return {
        "home": "/",
        "search": "/?q=a",
        "search-long": "/?q=Donaudampfschifffahrtsgesellschaftskapit",
        "artist": f"/artists/{q(mixed_artist)}",
        "artist-long": "/artists/test%3Aartist%3Along",
        "album": f"/albums/{q(covered)}",
        "album-long": f"/albums/{q(LONG_ALBUM_ID)}",
        "track": f"/tracks/{q(held)}",
        "track-long": "/tracks/test%3Atrack%3Along",
        "genre": f"/genres/{q(genre)}",
        "genre-deep": f"/genres/{q(genre)}?at=20",  # with its pager
        "stats": "/stats",
        "torrents": "/torrents",
        "shuffle": "/shuffle",
        "signin": "/signin",
    }


@pytest.fixture(scope="module")
def pages(built_archive: Path) -> dict[str, str]:
    return _pages(built_archive)


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def window(
    request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer
) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": request.param, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


def _visit(page: Page, path: str, shots: Path, name: str) -> None:
    page.goto(path)
    page.wait_for_load_state("load")
    width = page.viewport_size["width"] if page.viewport_size else 0
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)


def _tiles(page: Page) -> list[dict[str, Any]]:
    return [t for t in page.evaluate(TILES_JS) if not t["hidden"]]


def _same_size(tiles: list[dict[str, Any]]) -> None:
    assert tiles
    first = tiles[0]
    for t in tiles:
        for key in ("width", "height", "artWidth", "artHeight"):
            assert abs(t[key] - first[key]) < 1, (key, tiles)
        assert abs(t["artWidth"] - t["artHeight"]) < 1, t  # square art


def test_every_page_fits_and_breaks_no_word(
    window: Page, pages: dict[str, str], tmp_path: Path
) -> None:
    sign_in_done = False
    for name, path in pages.items():
        if name == "track" and not sign_in_done:
            # A signed-in visitor sees the player's controls on a held track.
            _sign_in(window)
            sign_in_done = True
        _visit(window, path, tmp_path, name)
        assert window.evaluate(OVERFLOW_JS) == [], name
        assert window.evaluate(BROKEN_WORDS_JS) == [], name
        tiles = _tiles(window)
        if tiles:
            _same_size(tiles)
            assert all(t["image"] in ("cover", "placeholder") for t in tiles), (name, tiles)
        if name == "genre-deep":
            assert window.locator("nav.pager a[rel=prev]").count() == 2  # above and below


def _sign_in(page: Page) -> None:
    page.goto("/signin")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.signin button[type=submit]")
    page.wait_for_url("**/")


def test_home_page_shows_albums_with_pictures(window: Page, tmp_path: Path) -> None:
    _visit(window, "/", tmp_path, "home")
    for shelf in ("recent-title", "popular-title"):
        heading = window.locator(f"#{shelf}")
        assert heading.is_visible()
        tiles = window.locator(f"section[aria-labelledby={shelf}] li.tile")
        assert tiles.count() >= 1
    tiles = _tiles(window)
    _same_size(tiles)
    kinds = {t["image"] for t in tiles}
    assert kinds == {"cover", "placeholder"}, tiles  # the fixture has both kinds
    counts = window.locator("ul.counts li").all_inner_texts()
    assert any("to play here" in c for c in counts)
    assert any("in the catalog" in c for c in counts)
    # The tiles fill the width: two columns on a phone, several on a desktop.
    boxes = [t.bounding_box() for t in window.locator("section.shelf li.tile").all()]
    columns = len({round(b["x"]) for b in boxes if b is not None})
    width = window.viewport_size["width"] if window.viewport_size else 0
    if width < 600:
        assert columns == 2
    else:
        assert columns >= 5


def test_artist_albums_form_an_even_grid(
    window: Page, pages: dict[str, str], tmp_path: Path
) -> None:
    """Albums without a cover get a tile of the same size as those with one."""
    _visit(window, pages["artist"], tmp_path, "artist")
    tiles = _tiles(window)
    assert {t["image"] for t in tiles} == {"cover", "placeholder"}, tiles
    _same_size(tiles)


def test_stats_labels_are_words(window: Page, tmp_path: Path) -> None:
    _visit(window, "/stats", tmp_path, "stats")
    labels = window.locator("table.stats-table tbody td:first-child").all_inner_texts()
    assert labels
    for label in labels:
        assert "_" not in label and label[:1].isupper(), label
    assert "No audio file yet (metadata only)" in labels
