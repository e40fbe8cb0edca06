"""The web player levels loudness: a Web Audio gain node set from the track's ReplayGain
gain (index.jsonl's loudness), on by default, switchable, remembered across pages."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.serve.conftest import CHROMIUM, packed_tracks
from tests.serve.test_browser import audio_advances, page, sign_in

__all__ = ["page"]  # the fixture, shared with test_browser

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")


def expected_gain(entry: dict[str, object]) -> float:
    lufs, peak = entry["loudness_lufs"], entry["true_peak_dbtp"]
    assert isinstance(lufs, float) and isinstance(peak, float)
    db = min(round(-18 - lufs, 2), -peak)  # to -18 LUFS, the true peak held under 0 dBFS
    return 10 ** (db / 20)


def applied_gain(page: Page) -> float:
    return float(page.eval_on_selector("#audio", "a => a.dataset.gain"))


def test_player_applies_the_track_gain_and_remembers_the_switch(
    page: Page, built_archive: Path
) -> None:
    entries = [e for e in packed_tracks(built_archive) if e.get("loudness_lufs") is not None]
    entry = max(entries, key=lambda e: abs(expected_gain(e) - 1))  # the clearest gain
    want = expected_gain(entry)
    assert abs(want - 1) > 0.05
    sign_in(page)
    page.goto(f"/tracks/{quote(str(entry['id']), safe='')}")
    expect(page.locator("#normalize")).to_have_attribute("aria-pressed", "true")  # on by default
    page.locator("a.play").click()
    audio_advances(page)  # plays through the gain node
    assert math.isclose(applied_gain(page), want, rel_tol=1e-3)

    page.click("#normalize")
    expect(page.locator("#normalize")).to_have_attribute("aria-pressed", "false")
    assert applied_gain(page) == 1.0

    # Remembered: another page starts with it off, and playing applies no gain.
    page.goto(f"/tracks/{quote(str(entry['id']), safe='')}")
    expect(page.locator("#normalize")).to_have_attribute("aria-pressed", "false")
    page.locator("a.play").click()
    audio_advances(page)
    assert applied_gain(page) == 1.0
    page.click("#normalize")
    assert math.isclose(applied_gain(page), want, rel_tol=1e-3)
