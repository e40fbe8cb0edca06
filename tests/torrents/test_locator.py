"""The track locator: round trip, determinism, lookups at the edges, damage refused."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from phonotheca.torrents.locator import (
    COVER,
    FOOTER,
    TRACK,
    LocatorEntry,
    LocatorError,
    write_locator,
)
from phonotheca.torrents.locator_read import FileSource, HttpSource, Locator, read_header

SMALL_BLOCK = 2048
SMALL_PAGE = 512


def _entries(n: int, covers: bool = True) -> list[LocatorEntry]:
    """``n`` tracks (every third album id gets a cover entry too), sorted by (id, kind)."""
    out: list[LocatorEntry] = []
    for i in range(n):
        track_id = f"syn:track:{i:07d}"
        digest = hashlib.sha256(track_id.encode()).digest()
        collection = f"demo_pop-050-100_{i % 37 + 1:04d}"
        out.append(
            LocatorEntry(track_id, TRACK, collection, i % 3 + 1, 512 * i, 1000 + i, digest, "opus")
        )
        if covers and i % 3 == 0:
            out.append(LocatorEntry(track_id, COVER, "demo_covers_0001", 1, 1024 * i, 99, digest))
    out.append(LocatorEntry("ünïcode:tràck", TRACK, "demo_pop-000-009_0001", 2, 0, 1, b"\1" * 32))
    return sorted(out, key=lambda e: (e.id.encode(), e.kind))


def _write(tmp_path: Path, entries: list[LocatorEntry], name: str = "t.locator") -> Path:
    path = tmp_path / name
    write_locator(entries, path, block_size=SMALL_BLOCK, page_size=SMALL_PAGE)
    return path


def test_round_trip_and_summary(tmp_path: Path) -> None:
    entries = _entries(3000)
    summary = write_locator(
        entries, tmp_path / "t.locator", block_size=SMALL_BLOCK, page_size=SMALL_PAGE
    )
    assert summary.entries == len(entries)
    assert summary.blocks > 50 and summary.leaf_pages > 2  # both index levels are used
    data = (tmp_path / "t.locator").read_bytes()
    assert summary.size == len(data)
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    assert read_header(tmp_path / "t.locator") == (1, 0)
    locator = Locator(FileSource(tmp_path / "t.locator"))
    assert list(locator) == entries
    assert locator.entries == len(entries) and locator.blocks == summary.blocks
    for e in entries[::97]:
        assert locator.lookup(e.id, e.kind) == e
    assert not list(tmp_path.glob("*.partial"))


def test_same_entries_give_the_same_bytes(tmp_path: Path) -> None:
    a = _write(tmp_path, _entries(2000), "a.locator")
    b = _write(tmp_path, _entries(2000), "b.locator")
    assert a.read_bytes() == b.read_bytes()
    c = _write(tmp_path, _entries(2001), "c.locator")
    assert a.read_bytes() != c.read_bytes()


def test_first_last_and_missing_ids(tmp_path: Path) -> None:
    entries = _entries(2000)
    locator = Locator(FileSource(_write(tmp_path, entries)))
    first, last = entries[0], entries[-1]
    assert locator.lookup(first.id, first.kind) == first
    assert locator.lookup(last.id, last.kind) == last
    assert locator.lookup("") is None  # before the first key
    assert locator.lookup("a") is None  # before the first key
    assert locator.lookup("zzz") is None  # after the last key
    assert locator.lookup("syn:track:0000001x") is None  # between two keys
    assert locator.lookup("syn:track:0000001", COVER) is None  # a track without a cover
    assert locator.lookup("syn:track:0000003", COVER) is not None
    found = locator.lookup("ünïcode:tràck")
    assert found is not None and found.volume_name == "demo_pop-000-009_0001.0002.tar"


def test_every_block_boundary(tmp_path: Path) -> None:
    """The first and last id of every block, and an id just before each block's first."""
    entries = _entries(2000, covers=False)
    path = _write(tmp_path, entries)
    locator = Locator(FileSource(path))
    locator.open()
    boundaries = [ref.first_id for page in locator._top or [] for ref in locator._page(page)[1]]
    assert len(boundaries) == locator.blocks > 20
    by_id = {e.id: e for e in entries}
    ids = [e.id for e in entries]
    for first in boundaries:
        i = ids.index(first)
        assert locator.lookup(first) == by_id[first]
        if i:
            assert locator.lookup(ids[i - 1]) == by_id[ids[i - 1]]  # last of the block before
        assert locator.lookup(first[:-1] + chr(ord(first[-1]) - 1) + "~") is None


def test_lookup_costs_at_most_two_reads_once_the_top_index_is_cached(tmp_path: Path) -> None:
    entries = _entries(3000)
    source = FileSource(_write(tmp_path, entries))
    locator = Locator(source)
    locator.open()
    assert source.reads == 1  # the tail: footer and top index
    for e in entries[::211]:
        before = source.reads, source.bytes_read
        assert locator.lookup(e.id, e.kind) == e
        assert source.reads - before[0] <= 2
        assert source.bytes_read - before[1] <= SMALL_BLOCK + SMALL_PAGE


def test_with_the_listings_top_index_even_the_first_lookup_is_two_reads(tmp_path: Path) -> None:
    entries = _entries(3000)
    path = tmp_path / "t.locator"
    summary = write_locator(entries, path, block_size=SMALL_BLOCK, page_size=SMALL_PAGE)
    assert summary.leaf_pages > 2
    for e in entries[::211]:
        source = FileSource(path)
        locator = Locator(source, top_index=summary.top_index, block_size=SMALL_BLOCK)
        assert locator.lookup(e.id, e.kind) == e
        assert source.reads <= 2 and source.bytes_read <= SMALL_BLOCK + SMALL_PAGE
    # A top index that is not this file's: refused, saying so.
    other = write_locator(_entries(2500), tmp_path / "o.locator", block_size=SMALL_BLOCK)
    stale = Locator(FileSource(path), top_index=other.top_index, block_size=SMALL_BLOCK)
    with pytest.raises(LocatorError, match="top index is not this locator's"):
        for e in entries[::97]:
            stale.lookup(e.id, e.kind)


def test_unsorted_or_duplicate_entries_are_refused(tmp_path: Path) -> None:
    entries = _entries(10, covers=False)
    with pytest.raises(LocatorError, match="out of order"):
        write_locator([entries[1], entries[0]], tmp_path / "x.locator")
    with pytest.raises(LocatorError, match="out of order"):
        write_locator([entries[0], entries[0]], tmp_path / "x.locator")
    assert not (tmp_path / "x.locator").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_corrupt_block_is_refused(tmp_path: Path) -> None:
    entries = _entries(2000)
    path = _write(tmp_path, entries)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x40  # inside the first data block
    path.write_bytes(bytes(data))
    locator = Locator(FileSource(path))
    with pytest.raises(LocatorError, match=r"block at offset 16 is corrupt \(checksum mismatch\)"):
        locator.lookup(entries[0].id, entries[0].kind)
    assert locator.lookup(entries[-1].id, entries[-1].kind) == entries[-1]  # others still read


def test_corrupt_index_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _entries(2000))
    data = bytearray(path.read_bytes())
    data[-FOOTER.size - 3] ^= 0x01  # inside the top index
    path.write_bytes(bytes(data))
    with pytest.raises(LocatorError, match="top index is corrupt"):
        Locator(FileSource(path)).lookup("syn:track:0000001")


@pytest.mark.parametrize("keep", [0, 10, FOOTER.size, 5000])
def test_truncated_file_is_refused(tmp_path: Path, keep: int) -> None:
    path = _write(tmp_path, _entries(2000))
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(
        LocatorError, match=r"t\.locator: (too short|not a track locator, or trunc)"
    ):
        Locator(FileSource(path)).lookup("syn:track:0000001")


def test_newer_version_and_wrong_size_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _entries(100))
    with pytest.raises(LocatorError, match="out of step"):
        Locator(FileSource(path), expected_size=path.stat().st_size + 1).open()
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, len(data) - 12, 2)  # major version in the footer
    path.write_bytes(bytes(data))
    with pytest.raises(LocatorError, match="version 2 is newer"):
        Locator(FileSource(path)).open()


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocatorError, match=r"nope\.locator: cannot read the locator"):
        Locator(FileSource(tmp_path / "nope.locator")).open()


def test_empty_locator(tmp_path: Path) -> None:
    path = tmp_path / "e.locator"
    summary = write_locator([], path)
    assert summary.entries == summary.blocks == 0
    assert Locator(FileSource(path)).lookup("syn:track:1") is None


def test_a_server_without_range_support_is_a_clear_error(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    path = _write(tmp_path, _entries(10))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        with pytest.raises(LocatorError, match="did not answer a range request"):
            Locator(HttpSource(url)).lookup("syn:track:0000001")
        with pytest.raises(LocatorError, match="cannot read the locator"):
            Locator(HttpSource(url + "-gone")).lookup("syn:track:0000001")
    finally:
        server.shutdown()
        server.server_close()
