"""A mirror reads a listing's ``.torrent`` files within limits, and only from where it may;
an index no further than its torrent lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonotheca.mirror.sources import torrent_data
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.mirror.verify import read_index_entries, verify_collection
from phonotheca.torrents.layout import INDEX_PATH, MAX_TORRENT_BYTES, read_layout
from phonotheca.torrents.listing import Listing, TorrentEntry, Totals, read_listing, write_listing
from tests.mirror.swarm import publish_archive


def _listing(torrent_url: str) -> Listing:
    entry = TorrentEntry(
        name="demo_pop-050-100_0001",
        collection="demo_pop-050-100_0001",
        kind="audio",
        infohash_v1="a" * 40,
        magnet="magnet:?xt=urn:btih:" + "a" * 40,
        torrent_url=torrent_url,
        size=1,
        files=1,
        tracks=1,
        added="2026-01-01",
    )
    totals = Totals(tracks=1, bytes=1, listens_covered=0, listens_total=0, share_of_listens=0)
    return Listing(
        archive="demo", generated_at="2026-11-21T00:00:00Z", totals=totals, torrents=[entry]
    )


def _fetch(tmp_path: Path, torrent_url: str) -> bytes:
    path = tmp_path / "torrents.json"
    write_listing(_listing(torrent_url), path)
    listing = read_listing(path)
    return torrent_data(str(path), listing, listing.torrents[0])


def test_a_torrent_past_16_mib_is_refused(tmp_path: Path) -> None:
    (tmp_path / "torrents").mkdir()
    with open(tmp_path / "torrents" / "huge.torrent", "wb") as f:
        f.truncate(MAX_TORRENT_BYTES + 1)  # sparse
    with pytest.raises(MirrorError, match="larger than 16 MiB"):
        _fetch(tmp_path, "torrents/huge.torrent")


@pytest.mark.parametrize("torrent_url", ["file:///etc/passwd", "../outside.torrent", "/etc/passwd"])
def test_a_listing_cannot_point_outside_its_directory(tmp_path: Path, torrent_url: str) -> None:
    inside = tmp_path / "listing"
    inside.mkdir()
    (tmp_path / "outside.torrent").write_bytes(b"d4:infode")
    with pytest.raises(MirrorError, match="refused"):
        _fetch(inside, torrent_url)


def test_an_unchanged_listing_still_reads(tmp_path: Path) -> None:
    """The bounded path does not refuse what is fine: a wrong file is the infohash check's."""
    (tmp_path / "torrents").mkdir()
    (tmp_path / "torrents" / "a.torrent").write_bytes(b"not a torrent")
    with pytest.raises(MirrorError, match=r"not a valid \.torrent"):
        _fetch(tmp_path, "torrents/a.torrent")


def test_an_index_is_read_no_further_than_the_torrent_lists(tmp_path: Path) -> None:
    published = publish_archive(tmp_path / "pub", metadata=False)
    mirror = MirrorDir(published.root)
    name = next(iter(published.entries))
    layout = read_layout(mirror.torrent_file(name))
    index = mirror.payload(name) / INDEX_PATH
    listed = read_index_entries(mirror.payload(name), layout)
    assert listed and len(listed) == len(index.read_bytes().splitlines())
    with open(index, "ab") as f:  # a line the torrent does not list
        f.write(index.read_bytes().splitlines(keepends=True)[0])
    assert read_index_entries(mirror.payload(name), layout) == listed
    report, _ = verify_collection(mirror, name, bag=False)
    assert any("more than the" in p and "not read" in p for p in report.problems)
    assert not report.ok
