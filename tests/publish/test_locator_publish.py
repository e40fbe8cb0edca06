"""``publish`` writes the track locator beside torrents.json, lists it, and releases it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from phonotheca.torrents.locator import COVER, FOOTER, LOCATOR_FILE, TRACK
from phonotheca.torrents.locator_catalog import (
    _COVERS_SQL,
    _TRACKS_SQL,
    build_locator,
    catalog_entries,
)
from phonotheca.torrents.locator_read import FileSource, Locator
from phonotheca.torrents.publish import publish
from tests.peers import FixtureArchive, build_archive

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def fixture(tmp_path: Path) -> FixtureArchive:
    return build_archive(tmp_path / "archive")


def _publish(fx: FixtureArchive) -> str:
    conn = fx.archive.connect()
    try:
        return publish(fx.archive, conn, now=NOW).metadata.name
    finally:
        conn.close()


def _packed(fx: FixtureArchive) -> list[tuple[str, str, str, int, int, str, str]]:
    conn = fx.archive.connect(readonly=True)
    try:
        return conn.execute(
            "SELECT t.public_id, l.collection, l.volume, l.offset, l.length, l.sha256, l.codec"
            " FROM ledger l JOIN tracks t ON t.id = l.track_id WHERE l.status = 'packed'"
        ).fetchall()
    finally:
        conn.close()


def test_publish_writes_lists_and_releases_the_locator(fixture: FixtureArchive) -> None:
    release = _publish(fixture)
    path = fixture.root / LOCATOR_FILE
    data = path.read_bytes()
    # The same bytes mirrors get in the metadata torrent.
    assert (fixture.archive.torrents_dir / release / LOCATOR_FILE).read_bytes() == data
    listing = json.loads((fixture.root / "torrents.json").read_bytes())
    ref = listing["locator"]
    top = base64.b64decode(ref.pop("top_index"))
    assert ref == {
        "url": LOCATOR_FILE,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "block_size": 65536,
    }
    assert data[-FOOTER.size - len(top) : -FOOTER.size] == top  # the file's own top index
    locator = Locator(FileSource(path))
    packed = _packed(fixture)
    assert 0 < len(packed) < fixture.tracks  # some tracks are not packed
    for public_id, collection, volume, offset, length, sha, codec in packed:
        entry = locator.lookup(public_id)
        assert entry is not None
        assert (entry.collection, entry.volume_name, entry.offset, entry.length) == (
            collection,
            volume,
            offset,
            length,
        )
        assert entry.sha256.hex() == sha and entry.codec == codec
    assert [e.id for e in locator] == sorted(p[0] for p in packed)
    conn = fixture.archive.connect(readonly=True)
    unpacked = conn.execute(
        "SELECT public_id FROM tracks WHERE id NOT IN"
        " (SELECT track_id FROM ledger WHERE status = 'packed')"
    ).fetchall()
    conn.close()
    assert unpacked and all(locator.lookup(row[0]) is None for row in unpacked)
    # Publishing again with nothing changed: the same locator.
    assert _publish(fixture) == release
    assert path.read_bytes() == data


def test_release_without_a_locator_gets_one_built_from_the_catalog(
    fixture: FixtureArchive,
) -> None:
    """A release made before locators existed: publish builds the same locator."""
    release = _publish(fixture)
    released = fixture.archive.torrents_dir / release / LOCATOR_FILE
    data = released.read_bytes()
    released.unlink()
    (fixture.root / LOCATOR_FILE).unlink()
    _publish(fixture)
    assert (fixture.root / LOCATOR_FILE).read_bytes() == data


def test_covers_and_determinism(fixture: FixtureArchive, tmp_path: Path) -> None:
    conn = fixture.archive.connect()
    sha = hashlib.sha256(b"cover").hexdigest()
    back = hashlib.sha256(b"back").hexdigest()
    conn.execute("INSERT INTO albums(id, public_id, title) VALUES (900, 'syn:album:9', 'A')")
    conn.execute("INSERT INTO albums(id, public_id, title) VALUES (901, 'syn:album:8', 'B')")
    conn.execute(
        "INSERT INTO collections(name, kind, seq, status, items) VALUES"
        " ('demo_covers_0001', 'covers', 1, 'assigned', 2)"
    )
    for image_id, position, kind, blob in ((1, 0, "back", back), (2, 1, "front", sha)):
        conn.execute(
            "INSERT INTO images(id, album_id, position, kind, blob_sha256)"
            " VALUES (?, 900, ?, ?, ?)",
            (image_id, position, kind, blob),
        )
        conn.execute(
            "INSERT INTO packed_images VALUES (?, 'demo_covers_0001', 'demo_covers_0001.0001.tar',"
            " ?, 10)",
            (blob, 512 * image_id),
        )
    conn.close()
    a, b = tmp_path / "a.locator", tmp_path / "b.locator"
    build_locator(fixture.archive.catalog_path, a)
    build_locator(fixture.archive.catalog_path, b)
    assert a.read_bytes() == b.read_bytes()
    locator = Locator(FileSource(a))
    cover = locator.lookup("syn:album:9", COVER)
    assert cover is not None  # the front cover, though the back one comes first
    assert (cover.collection, cover.volume, cover.offset, cover.sha256.hex()) == (
        "demo_covers_0001",
        1,
        1024,
        sha,
    )
    assert locator.lookup("syn:album:9", TRACK) is None
    assert locator.lookup("syn:album:8", COVER) is None  # no image packed


def test_entries_are_read_sequentially_then_sorted(fixture: FixtureArchive) -> None:
    """Memory stays bounded at any scale: the ledger and tracks are read in rowid order and
    sorted by SQLite's external merge sort; albums are walked through their id index."""
    conn = fixture.archive.connect(readonly=True)
    try:
        steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_TRACKS_SQL}")]
        assert steps == [
            "SEARCH l USING INDEX ledger_status (status=?)",
            "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)",
            "USE TEMP B-TREE FOR ORDER BY",
        ], steps
        # The outer scan (parent 0); a cover's subquery sorts the few images of an album.
        plan = conn.execute(f"EXPLAIN QUERY PLAN {_COVERS_SQL}").fetchall()
        outer = [row[3] for row in plan if row[1] == 0]
        assert not any("TEMP B-TREE" in step for step in outer), outer
        assert "albums_public_id" in outer[0], outer
        keys = [(e.id, e.kind) for e in catalog_entries(conn)]
        assert keys == sorted(keys, key=lambda k: (k[0].encode(), k[1])) and keys
    finally:
        conn.close()
