"""Tracker scrapes against Debian's opentracker (HTTP and UDP), and the health report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.torrents.health import health_bands
from phonotheca.torrents.listing import Health, read_listing, write_listing
from phonotheca.torrents.scrape import Stats, scrape, scrape_http, scrape_udp, scrape_url
from tests.peers import (
    FixtureArchive,
    Opentracker,
    build_archive,
    free_port,
    local_session,
    run_opentracker,
    seed,
    wait_until,
)


@dataclass
class Swarm:
    tracker: Opentracker
    fixture: FixtureArchive
    seeded: str
    """The collection a libtorrent session seeds (and announced)."""
    session: Any


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    tmp = tmp_path_factory.mktemp("scrape")
    with run_opentracker(tmp / "tracker") as tracker:
        fx = build_archive(tmp / "archive", trackers=[tracker.http_announce, tracker.udp_announce])
        # The publish step writes the tracker's whitelist; SIGHUP makes it re-read it.
        result = CliRunner().invoke(
            main, ["publish", "--archive", str(fx.root), "--whitelist", str(tracker.whitelist)]
        )
        assert result.exit_code == 0, result.output
        tracker.reload()
        session = local_session()
        name = fx.collections[0]
        seed(session, fx.torrent(name), fx.archive.torrents_dir)
        v1 = bytes.fromhex(read_listing(fx.root / "torrents.json").by_name()[name].infohash_v1)

        def announced() -> bool:
            return scrape_http(tracker.http_announce, [v1], timeout=2)[v1].seeders >= 1

        wait_until(announced, 30, "the seeder's announce reaching opentracker")
        try:
            yield Swarm(tracker, fx, name, session)
        finally:
            del session


def _hashes(fx: FixtureArchive) -> dict[str, bytes]:
    listing = read_listing(fx.root / "torrents.json")
    return {e.name: bytes.fromhex(e.infohash_v1) for e in listing.torrents}


def test_scrape_url() -> None:
    assert scrape_url("http://t.example:80/announce") == "http://t.example:80/scrape"
    assert scrape_url("http://t.example/x/announce.php?k=1") == "http://t.example/x/scrape.php?k=1"
    assert scrape_url("http://t.example/a") is None
    assert scrape_url("http://t.example/announce/x") is None


def test_http_and_udp_scrape_agree(swarm: Swarm) -> None:
    hashes = _hashes(swarm.fixture)
    ordered = list(hashes.values())
    over_http = scrape_http(swarm.tracker.http_announce, ordered, timeout=2)
    over_udp = scrape_udp(swarm.tracker.udp_announce, ordered, timeout=1)
    seeded = hashes[swarm.seeded]
    assert over_http[seeded].seeders >= 1
    assert over_udp[seeded] == over_http[seeded]
    others = [h for name, h in hashes.items() if name != swarm.seeded]
    assert all(over_http[h] == Stats(0, 0, 0) == over_udp[h] for h in others)


def test_many_torrents_per_request(swarm: Swarm) -> None:
    """More infohashes than fit in one UDP packet or one HTTP request."""
    seeded = _hashes(swarm.fixture)[swarm.seeded]
    many = [bytes([i % 256, i // 256]) * 10 for i in range(150)] + [seeded]
    for stats in (
        scrape_http(swarm.tracker.http_announce, many, timeout=2),
        scrape_udp(swarm.tracker.udp_announce, many, timeout=1),
    ):
        assert len(stats) == len(many) and stats[seeded].seeders >= 1


def test_unreachable_trackers_are_reported(swarm: Swarm) -> None:
    closed = free_port()
    h = [b"\x01" * 20]
    udp = scrape(f"udp://127.0.0.1:{closed}/announce", h, timeout=0.2, retries=1)
    assert udp.error is not None and udp.stats == {}
    http = scrape(f"http://127.0.0.1:{closed}/announce", h, timeout=1)
    assert http.error is not None and "cannot reach" in http.error
    ws = scrape("wss://127.0.0.1/announce", h)
    assert ws.error == "wss:// trackers cannot be scraped"
    # opentracker refuses torrents that are not on its whitelist: no error, no peers.
    refused = scrape(swarm.tracker.http_announce, h, timeout=2)
    assert refused.error is None and refused.stats[h[0]] == Stats(0, 0, 0)


def test_cli_scrape_updates_health_and_history(swarm: Swarm, tmp_path: Path) -> None:
    fx = swarm.fixture
    listing_path = fx.root / "torrents.json"
    # An extra tracker nobody listens on: reported, not fatal.
    dead = f"udp://127.0.0.1:{free_port()}/announce"
    listing = read_listing(listing_path)
    listing.torrents[-1].trackers.append([dead])
    write_listing(listing, listing_path)
    runner = CliRunner()
    result = runner.invoke(
        main, ["torrents", "scrape", "--archive", str(fx.root), "--json", "--timeout", "0.2"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_url = {t["url"]: t for t in report["trackers"]}
    assert by_url[swarm.tracker.http_announce]["ok"] and by_url[swarm.tracker.udp_announce]["ok"]
    assert not by_url[dead]["ok"] and by_url[dead]["error"]
    scraped = read_listing(listing_path).by_name()
    assert scraped[swarm.seeded].health.seeders >= 1  # type: ignore[operator]
    assert scraped[swarm.seeded].health.scraped_at is not None
    assert all(e.health.seeders == 0 for n, e in scraped.items() if n != swarm.seeded)
    history = list((fx.root / "health").glob("*.jsonl"))
    assert len(history) == 1
    lines = [json.loads(line) for line in history[0].read_text().splitlines()]
    assert {line["name"] for line in lines} == set(scraped)
    seeded_line = next(line for line in lines if line["name"] == swarm.seeded)
    assert seeded_line["seeders"] >= 1
    assert sorted(seeded_line["trackers"]) == sorted(
        [swarm.tracker.http_announce, swarm.tracker.udp_announce]
    )

    result = runner.invoke(main, ["torrents", "health", "--archive", str(fx.root), "--json"])
    assert result.exit_code == 0, result.output
    bands = {b["seeders"]: b for b in json.loads(result.output)}
    sizes = {e.name: e.size for e in scraped.values()}
    assert bands["under 4"]["torrents"] == len(scraped)
    assert bands["under 4"]["bytes"] == sum(sizes.values())
    assert bands["unknown"]["torrents"] == 0
    text = runner.invoke(main, ["torrents", "health", "--archive", str(fx.root)])
    assert text.exit_code == 0 and "under 4" in text.output


def test_health_bands_edges(swarm: Swarm) -> None:
    listing = read_listing(swarm.fixture.root / "torrents.json")
    entries = listing.torrents
    figures = [None, 3, 4, 10, 11]
    made = []
    for i, seeders in enumerate(figures):
        base = entries[i % len(entries)]
        made.append(
            msgspec.structs.replace(base, name=f"t{i}", size=1 << i, health=Health(seeders=seeders))
        )
    made.append(msgspec.structs.replace(entries[0], name="old", size=99, obsolete=True))
    bands = health_bands(msgspec.structs.replace(listing, torrents=made))
    assert [(b.band, b.torrents, b.bytes) for b in bands] == [
        ("unknown", 1, 1),
        ("under 4", 1, 2),
        ("4 to 10", 2, 4 + 8),
        ("over 10", 1, 16),
    ]
