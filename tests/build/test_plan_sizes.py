"""A plan and the build it drives agree on sizes: after a build, ``plan`` with the same
budget works and reports what the build wrote, byte for byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from phonotheca.torrents.listing import read_listing
from tests.build.conftest import phonotheca

PLAN = ["--budget", "600KB", "--min-original-popularity", "55", "--opus-kbps", "32"]


def _plan(archive: Path) -> dict[str, object]:
    done = phonotheca("plan", *PLAN, "--json", "--archive", str(archive))
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_replanning_after_a_build_reports_the_bytes_it_wrote(archive: Path) -> None:
    first = _plan(archive)
    assert first["packed_bytes"] == 0
    phonotheca("build", "--workers", "0", "--archive", str(archive))
    phonotheca("publish", "--archive", str(archive))
    conn = sqlite3.connect(archive / "catalog.sqlite3")
    estimated, real = conn.execute(
        "SELECT sum(planned_size), sum(size) FROM ledger WHERE status = 'packed' AND tier = 'opus'"
    ).fetchone()
    conn.close()
    assert estimated and real  # Opus files were made (VBR: their sizes are not the estimate)

    again = _plan(archive)  # the same budget: never refused for what is already packed
    index_lengths = 0
    for index in (archive / "torrents").glob("demo_pop-*/data/index.jsonl"):
        for line in index.read_text().splitlines():
            index_lengths += json.loads(line)["length"]
    assert again["packed_bytes"] == index_lengths > 0
    listing = read_listing(archive / "torrents.json")
    audio = sum(e.size for e in listing.torrents if e.kind == "audio")
    covers = sum(e.size for e in listing.torrents if e.kind == "covers")
    published = again["published"]
    assert isinstance(published, dict)
    assert published["track_bytes"] == index_lengths
    assert published["track_bytes"] + published["packing_bytes"] == audio
    assert published["covers_bytes"] == covers > 0
    assert published["bytes"] == audio + covers
    if again["used_bytes"] > again["budget"]:  # type: ignore[operator]
        # Over the budget only by what is packed: nothing new was planned.
        assert again["used_bytes"] == again["packed_bytes"]
