"""``phonotheca publish``: torrents.json from the catalog and the .torrent files."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import libtorrent as lt
import msgspec
import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.torrents.listing import (
    SCHEMA_FILE,
    Health,
    json_schema,
    read_listing,
    write_listing,
)
from phonotheca.torrents.publish import PublishError, publish
from tests.peers import FixtureArchive, build_archive

TRACKER = "udp://127.0.0.1:9/announce"
WEB_SEED = "http://127.0.0.1:9/torrents/"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def fixture(tmp_path: Path) -> FixtureArchive:
    return build_archive(tmp_path / "archive", trackers=[TRACKER], web_seeds=[WEB_SEED])


def _publish(fx: FixtureArchive, **kwargs: Any) -> Any:
    conn = fx.archive.connect()
    try:
        publish(fx.archive, conn, **kwargs)
    finally:
        conn.close()
    return json.loads((fx.root / "torrents.json").read_bytes())


def test_listing_matches_the_schema_and_the_torrents(fixture: FixtureArchive) -> None:
    data = _publish(fixture, now=NOW, base_url="https://example.org/demo/")
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)
    listing = read_listing(fixture.root / "torrents.json")
    assert [e.kind for e in listing.torrents] == ["metadata", "audio", "audio"]
    assert [e.name for e in listing.torrents[1:]] == fixture.collections
    assert listing.base_url == "https://example.org/demo/"
    for entry in listing.torrents:
        info = lt.torrent_info(str(fixture.torrent(entry.name)))
        assert entry.infohash_v1 == str(info.info_hashes().v1)
        assert entry.size == info.total_size()
        assert entry.files == info.num_files()
        assert entry.torrent_url == f"torrents/{entry.name}.torrent"
        assert entry.trackers == [[TRACKER]] and entry.web_seeds == [WEB_SEED]
        assert entry.added == "2026-03-04" and entry.health == Health()
    audio = listing.torrents[1]
    assert (audio.band.low, audio.band.high) == (50, 100)  # type: ignore[union-attr]
    assert audio.tracks == 6
    assert audio.share_of_listens == pytest.approx(audio.listens / fixture.listens_total)
    assert listing.totals.tracks == 12
    assert listing.totals.listens_total == fixture.listens_total
    assert listing.totals.bytes == sum(e.size for e in listing.torrents)
    assert listing.generated_at == "2026-03-04T05:06:07Z"


def test_schema_file_is_the_models_schema() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_schema_refuses_what_readers_would_misread(fixture: FixtureArchive) -> None:
    data = _publish(fixture, now=NOW)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    torrents = data["torrents"]
    assert isinstance(torrents, list)
    torrents[1]["infohash_v1"] = "ABC"
    assert not validator.is_valid(data)
    torrents[1]["infohash_v1"] = "a" * 40
    torrents[1]["kind"] = "video"
    assert not validator.is_valid(data)


def test_magnet_links_parse(fixture: FixtureArchive) -> None:
    data = _publish(fixture, now=NOW)
    for entry in data["torrents"]:
        magnet = entry["magnet"]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(magnet).query)
        assert query["xt"] == [f"urn:btih:{entry['infohash_v1']}"]
        assert query["dn"] == [entry["name"]]
        assert query["tr"] == [TRACKER] and query["ws"] == [WEB_SEED]
        params = lt.parse_magnet_uri(magnet)
        assert str(params.info_hashes.v1) == entry["infohash_v1"]
        assert params.name == entry["name"]
        assert list(params.trackers) == [TRACKER]
        assert list(params.url_seeds) == [WEB_SEED]


def test_hybrid_magnet_and_whitelist(tmp_path: Path) -> None:
    fx = build_archive(tmp_path / "archive", hybrid=True)
    whitelist = tmp_path / "whitelist"
    data = _publish(fx, now=NOW, whitelist=whitelist)
    entries = data["torrents"]
    assert isinstance(entries, list)
    lines = whitelist.read_text().splitlines()
    for entry in entries:
        v2 = entry["infohash_v2"]
        assert re.fullmatch("[0-9a-f]{64}", v2)
        params = lt.parse_magnet_uri(entry["magnet"])
        assert str(params.info_hashes.v2) == v2
        assert entry["infohash_v1"] in lines and v2[:40] in lines
    assert len(lines) == 2 * len(entries)


def test_republish_keeps_health_and_dates_and_is_idempotent(fixture: FixtureArchive) -> None:
    _publish(fixture, now=NOW)
    path = fixture.root / "torrents.json"
    listing = read_listing(path)
    scraped = Health(seeders=7, leechers=2, completed=30, scraped_at="2026-03-05T00:00:00Z")
    listing.torrents[1] = msgspec.structs.replace(listing.torrents[1], health=scraped)
    write_listing(listing, path)
    first = path.read_bytes()
    later = NOW + dt.timedelta(days=3)
    _publish(fixture, now=later)
    second = path.read_bytes()
    again = read_listing(path)
    assert again.torrents[1].health == scraped
    assert {e.added for e in again.torrents} == {"2026-03-04"}
    stamp = rb'"generated_at": "[^"]*"'
    assert re.sub(stamp, b"", first) == re.sub(stamp, b"", second)
    assert second != first  # only the time moved
    names = sorted(p.name for p in fixture.archive.torrents_dir.iterdir())
    assert [n for n in names if "metadata" in n] == [
        "demo_metadata_0001",
        "demo_metadata_0001.torrent",
    ]


def test_obsolete_collection_is_marked(fixture: FixtureArchive) -> None:
    _publish(fixture, now=NOW)
    conn = fixture.archive.connect()
    conn.execute("UPDATE collections SET obsolete = 1 WHERE name = ?", (fixture.collections[1],))
    conn.close()
    data = _publish(fixture, now=NOW)
    by_name = {e["name"]: e for e in data["torrents"]}
    assert by_name[fixture.collections[1]]["obsolete"] is True
    assert by_name[fixture.collections[0]]["obsolete"] is False
    # The catalog changed, so there is a new metadata release and the old one is obsolete.
    assert by_name["demo_metadata_0001"]["obsolete"] is True
    assert by_name["demo_metadata_0002"]["obsolete"] is False
    assert [e["name"] for e in data["torrents"]][:2] == [
        "demo_metadata_0002",
        "demo_metadata_0001",
    ]
    assert data["totals"]["tracks"] == 6


def test_metadata_only(fixture: FixtureArchive, tmp_path: Path) -> None:
    whitelist = tmp_path / "wl"
    data = _publish(fixture, now=NOW, metadata_only=True, whitelist=whitelist)
    entries = data["torrents"]
    assert [e["kind"] for e in entries] == ["metadata"]
    assert whitelist.read_text() == f"{entries[0]['infohash_v1']}\n"
    # The full publish that follows reuses the same metadata release.
    data = _publish(fixture, now=NOW)
    assert next(e["name"] for e in data["torrents"]) == "demo_metadata_0001"
    assert len(data["torrents"]) == 3


def test_changed_torrent_file_is_refused(fixture: FixtureArchive) -> None:
    torrent = fixture.torrent(fixture.collections[0])
    other = fixture.torrent(fixture.collections[1])
    torrent.write_bytes(other.read_bytes())
    conn = fixture.archive.connect()
    try:
        with pytest.raises(PublishError, match=f"{fixture.collections[0]}.torrent: infohash"):
            publish(fixture.archive, conn, now=NOW)
        torrent.unlink()
        with pytest.raises(PublishError, match="cannot read"):
            publish(fixture.archive, conn, now=NOW)
    finally:
        conn.close()


def test_cli_publish(fixture: FixtureArchive, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["publish", "--archive", str(fixture.root), "--json"]
    result = runner.invoke(main, [*args, "--whitelist", str(tmp_path / "wl")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metadata"]["name"] == "demo_metadata_0001"
    assert report["metadata"]["created"] is True and report["torrents"] == 3
    result = runner.invoke(main, [*args, "--base-url", "ftp://x"])
    assert result.exit_code == 2 and "--base-url" in result.output
    fixture.torrent(fixture.collections[0]).unlink()
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert f"{fixture.collections[0]}.torrent: cannot read" in result.output
