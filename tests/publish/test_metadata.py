"""The metadata release: a scrubbed, compressed catalog in a torrent of its own."""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import zstandard

from phonotheca.catalog.export import iter_playlist_lines
from phonotheca.catalog.importer import import_lines
from phonotheca.catalog.release_db import derive_catalog
from phonotheca.sources.playlist_files import read_playlist_blocks
from phonotheca.sources.playlist_lines import prepare_playlist_lines
from phonotheca.torrents import bencode
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.metadata import (
    CATALOG_FILE,
    FORMAT_FILE,
    format_doc,
    release_metadata,
)
from phonotheca.torrents.seekable import SeekableError, compress_file, read_seek_table
from tests.peers import IMPORT_PATH, SOURCE_DIR, FixtureArchive, build_archive

NOW = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


@pytest.fixture
def fixture(tmp_path: Path) -> FixtureArchive:
    return build_archive(tmp_path / "archive")


def _release(fx: FixtureArchive, **kwargs: object):  # type: ignore[no-untyped-def]
    conn = fx.archive.connect()
    try:
        return release_metadata(fx.archive, conn, now=NOW, level=3, **kwargs)  # type: ignore[arg-type]
    finally:
        conn.close()


def test_release_holds_a_scrubbed_catalog_that_zstd_reads(
    fixture: FixtureArchive, tmp_path: Path
) -> None:
    release = _release(fixture)
    assert release.created and release.name == "demo_metadata_0001"
    payload = fixture.archive.torrents_dir / release.name
    names = sorted(p.name for p in payload.iterdir())
    assert names == sorted([CATALOG_FILE, FORMAT_FILE, LOCATOR_FILE])
    assert (payload / FORMAT_FILE).read_bytes() == format_doc().read_bytes()
    # The zstd command line reads it (one frame, a 128 MiB window at most).
    out = tmp_path / "catalog.sqlite3"
    subprocess.run(["zstd", "-q", "-d", str(payload / CATALOG_FILE), "-o", str(out)], check=True)
    raw = out.read_bytes()
    with open(payload / CATALOG_FILE, "rb") as f:
        assert zstandard.get_frame_parameters(f.read(18)).window_size <= 1 << 27
    assert raw.startswith(b"SQLite format 3\0")
    assert SOURCE_DIR.encode() not in raw and IMPORT_PATH.encode() not in raw
    assert str(fixture.root).encode() not in raw
    conn = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        packed = conn.execute("SELECT count(*) FROM ledger WHERE status = 'packed'").fetchone()
        assert packed == (12,)
        assert conn.execute("SELECT count(*) FROM tracks").fetchone() == (18,)
        paths = {row[0] for row in conn.execute("SELECT path FROM source_files")}
        assert paths == {f"redacted/{n}" for n in range(1, 19)}
        assert conn.execute(
            "SELECT count(*) FROM source_files WHERE error IS NOT NULL OR mtime_ns != 0"
            " OR scanned_at IS NOT NULL"
        ).fetchone() == (0,)
        # The import history is not released (paths of the operator's files included).
        imports = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'imports'")
        assert imports.fetchall() == []
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'publish.%'").fetchone() == (
            0,
        )
        # What is kept for mirrors: sizes, hashes and codecs of the files.
        assert conn.execute("SELECT sum(size) FROM source_files").fetchone() == (18 * 20_000,)
    finally:
        conn.close()
    # The catalog itself is untouched.
    live = fixture.archive.connect(readonly=True)
    try:
        assert live.execute("SELECT path FROM source_files WHERE id = 1").fetchone() == (
            f"{SOURCE_DIR}/0.opus",
        )
    finally:
        live.close()


def test_seek_table_checks(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.write_bytes(bytes(range(256)) * 100)
    buf = io.BytesIO()
    frames = compress_file(source, buf, frame_size=1000, threads=2)
    assert [f.size for f in frames] == [1000] * 25 + [600]
    buf.seek(0)
    assert read_seek_table(buf) == frames
    with pytest.raises(SeekableError, match="no seek table"):
        read_seek_table(io.BytesIO(zstandard.ZstdCompressor().compress(b"x" * 100)))
    damaged = bytearray(buf.getvalue())
    damaged[-20] ^= 0xFF  # a frame size in the table
    with pytest.raises(SeekableError):
        read_seek_table(io.BytesIO(bytes(damaged)))


def test_unchanged_catalog_makes_no_new_release(fixture: FixtureArchive) -> None:
    first = _release(fixture)
    torrent = first.torrent.read_bytes()
    again = _release(fixture)
    assert not again.created and again.name == first.name
    assert first.torrent.read_bytes() == torrent
    # A change the published catalog does not show (an operator path) makes none either.
    conn = fixture.archive.connect()
    conn.execute("UPDATE source_files SET path = path || '.moved', mtime_ns = 5")
    conn.close()
    assert not _release(fixture).created
    # A real change does; the older release is kept on disk and marked obsolete.
    conn = fixture.archive.connect()
    conn.execute("UPDATE tracks SET title = 'Renamed' WHERE id = 1")
    conn.close()
    second = _release(fixture)
    assert second.created and second.name == "demo_metadata_0002"
    assert first.torrent.exists()
    conn = fixture.archive.connect(readonly=True)
    rows = conn.execute(
        "SELECT name, obsolete, items, files FROM collections WHERE kind = 'metadata' ORDER BY seq"
    ).fetchall()
    conn.close()
    assert rows == [("demo_metadata_0001", 1, 18, 3), ("demo_metadata_0002", 0, 18, 3)]


def test_crashed_release_is_replaced(fixture: FixtureArchive) -> None:
    # Left by a run killed after moving its files in but before recording them.
    stale = fixture.archive.torrents_dir / "demo_metadata_0001"
    stale.mkdir()
    (stale / "junk").write_bytes(b"x")
    release = _release(fixture)
    assert release.name == "demo_metadata_0001"
    assert not (stale / "junk").exists()
    meta = bencode.decode(release.torrent.read_bytes())
    assert isinstance(meta, dict)
    info = meta[b"info"]
    assert isinstance(info, dict) and info[b"name"] == b"demo_metadata_0001"
    assert list((fixture.archive.work_dir).iterdir()) == []


def test_transmission_show_reads_the_metadata_torrent(fixture: FixtureArchive) -> None:
    release = _release(fixture)
    shown = subprocess.run(
        ["transmission-show", str(release.torrent)], capture_output=True, text=True, check=True
    ).stdout
    assert "demo_metadata_0001" in shown and CATALOG_FILE in shown


def test_playlists_and_their_source_records_are_in_the_release(
    fixture: FixtureArchive, tmp_path: Path
) -> None:
    mbid = "8f3471b5-7e6a-48da-86a9-c1c07a0f47ae"
    conn = fixture.archive.connect()
    conn.execute(
        "INSERT INTO external_ids(entity, entity_id, scheme, value)"
        " VALUES ('track', 3, 'musicbrainz_recording', ?)",
        (mbid,),
    )
    conn.close()
    doc = {
        "playlist": {
            "title": "Released",
            "identifier": "https://example.org/playlists/1",
            "track": [
                {"identifier": f"https://musicbrainz.org/recording/{mbid}", "title": "x"},
                {"title": "Not in the catalog", "creator": "Nobody"},
            ],
        }
    }
    source = tmp_path / "released.jspf"
    source.write_text(json.dumps(doc, indent=2))
    conn = fixture.archive.connect()
    try:
        import_lines(
            conn,
            source,
            fixture.archive.rejects_dir,
            kind="playlists",
            prepare=prepare_playlist_lines,
            read_blocks=read_playlist_blocks,
            workers=0,
        )
    finally:
        conn.close()
    release = _release(fixture)
    out = tmp_path / "released.sqlite3"
    payload = fixture.archive.torrents_dir / release.name / CATALOG_FILE
    with open(payload, "rb") as f, open(out, "wb") as w:
        w.write(zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read())
    sql = (
        "SELECT p.public_id, p.title, p.entries, p.matched, e.position, t.public_id, e.match,"
        " e.title FROM playlists p JOIN playlist_entries e ON e.playlist_id = p.id"
        " LEFT JOIN tracks t ON t.id = e.track_id ORDER BY e.position"
    )
    # A mirror derives its catalog from the release (FORMAT.md §12): the playlists, their
    # entries and their source records come back, and their search index is rebuilt.
    derived = tmp_path / "derived.sqlite3"
    derive_catalog(out, derived)
    mine = fixture.archive.connect(readonly=True)
    released = sqlite3.connect(f"file:{derived}?mode=ro", uri=True)
    try:
        rows = released.execute(sql).fetchall()
        assert rows == mine.execute(sql).fetchall()
        # The ledger's counts are not released: counted again as the ledger arrives.
        counts = "SELECT status, tier, n FROM ledger_counts WHERE n > 0 ORDER BY 1, 2"
        assert released.execute(counts).fetchall() == mine.execute(counts).fetchall() != []
        assert (
            released.execute(counts).fetchall()
            == released.execute(
                "SELECT status, coalesce(tier, ''), count(*) FROM ledger"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
        )
        assert [r[5] for r in rows] == ["syn:track:2", None]
        # Its source record is in the release: export reads it back.
        assert list(iter_playlist_lines(released)) == list(iter_playlist_lines(mine))
        assert json.loads(next(iter_playlist_lines(released))) == {
            "type": "playlist",
            **doc["playlist"],
        }
        hits = released.execute(
            "SELECT rowid FROM playlist_search WHERE playlist_search MATCH 'released'"
        ).fetchall()
        assert hits == [(1,)]
    finally:
        released.close()
        mine.close()
    # The playlists' search index is derived: the same catalog makes no new release.
    assert not _release(fixture).created
