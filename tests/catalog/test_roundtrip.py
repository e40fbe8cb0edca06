"""import → export → import gives an identical catalog; kill -9 and re-run gives the same
catalog as an uninterrupted import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from phonotheca.archive import Archive, init_archive
from phonotheca.catalog.export import export_jsonl, iter_export_lines
from tests.catalog.test_import import load

LOGICAL_TABLES = {
    # Content compared by public ids, so rowids that differ between catalogs do not matter.
    "tracks": "SELECT t.public_id, t.title, t.artist_credit, a.public_id, t.disc_number,"
    " t.track_number, t.duration_ms, t.isrc, t.isrc_valid, t.explicit, t.popularity,"
    " t.listens, t.markets, t.updated_at FROM tracks t LEFT JOIN albums a ON a.id = t.album_id",
    "albums": "SELECT public_id, title, artist_credit, album_type, release_date,"
    " release_date_precision, label, upc, total_tracks, total_discs, markets FROM albums",
    "artists": "SELECT public_id, name, sort_name FROM artists",
    "track_artists": "SELECT t.public_id, ta.position, ar.public_id, ta.credited_as,"
    " ta.join_phrase FROM track_artists ta JOIN tracks t ON t.id = ta.track_id"
    " JOIN artists ar ON ar.id = ta.artist_id",
    "album_artists": "SELECT a.public_id, aa.position, ar.public_id, aa.join_phrase"
    " FROM album_artists aa JOIN albums a ON a.id = aa.album_id"
    " JOIN artists ar ON ar.id = aa.artist_id",
    "genres": "SELECT a.public_id, g.name FROM album_genres ag JOIN albums a ON a.id = ag.album_id"
    " JOIN genres g ON g.id = ag.genre_id",
    "images": "SELECT a.public_id, i.position, i.url, i.width, i.height FROM images i"
    " JOIN albums a ON a.id = i.album_id",
    "external_ids": "SELECT e.entity, coalesce(t.public_id, a.public_id), e.scheme, e.value"
    " FROM external_ids e LEFT JOIN tracks t ON e.entity = 'track' AND t.id = e.entity_id"
    " LEFT JOIN albums a ON e.entity = 'album' AND a.id = e.entity_id",
    "search": "SELECT r.key, t.public_id FROM search_rank r JOIN tracks t ON t.id = r.track_id",
}


def logical_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            name: sorted(conn.execute(sql).fetchall(), key=repr)
            for name, sql in LOGICAL_TABLES.items()
        }
    finally:
        conn.close()


def test_import_export_import_is_identical(
    archive: Archive, synthetic: Path, tmp_path: Path
) -> None:
    load(archive, synthetic)
    exported = tmp_path / "out.jsonl.zst"
    conn = archive.connect(readonly=True)
    summary = export_jsonl(conn, exported)
    conn.close()
    assert summary.tracks == 20_000
    again = init_archive(tmp_path / "again")
    load(again, exported)
    assert logical_dump(again.catalog_path) == logical_dump(archive.catalog_path)
    # The exported lines are the imported records: the same JSON values.
    import zstandard

    with synthetic.open("rb") as f:
        source = zstandard.ZstdDecompressor().stream_reader(f).read()
    original = sorted(json.dumps(json.loads(x), sort_keys=True) for x in source.splitlines())
    conn = again.connect(readonly=True)
    back = sorted(json.dumps(json.loads(x), sort_keys=True) for x in iter_export_lines(conn))
    conn.close()
    assert back == original


def _import_cmd(archive: Path, source: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "phonotheca.cli",
        "import",
        "jsonl",
        str(source),
        "--archive",
        str(archive),
        "--json",
        "--workers",
        "1",
    ]


def _lines_done(archive: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{archive / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=0.1)
        try:
            row = conn.execute("SELECT max(lines_done) FROM imports").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


def kill_at_progress(
    cmd: list[str],
    env: dict[str, str],
    progress: Callable[[], int],
    points: tuple[int, ...],
    poll: float = 0.01,
) -> int:
    """Run ``cmd`` once per point and kill -9 it once ``progress()`` reaches the point;
    the number of runs that were killed (not finished first)."""
    kills = 0
    for at_least in points:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if progress() >= at_least:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(poll)
        proc.wait()
    return kills


@pytest.mark.slow
@pytest.mark.parametrize("bulk", [False, True], ids=["incremental", "bulk"])
def test_kill_9_and_rerun_equals_an_uninterrupted_import(
    synthetic: Path, tmp_path: Path, bulk: bool
) -> None:
    reference = tmp_path / "reference"
    subprocess.run(_import_cmd(reference, synthetic), check=True, capture_output=True)

    victim = tmp_path / "victim"
    # Bulk mode (indexes dropped, search index rebuilt at the end) on a small file.
    env = dict(
        os.environ,
        PHONOTHECA_TEST_BATCH_LINES="1000",
        PHONOTHECA_TEST_BULK_MIN_BYTES="0" if bulk else str(1 << 40),
    )
    # Kill at three points of progress, read from the victim's own catalog.
    kills = kill_at_progress(
        _import_cmd(victim, synthetic), env, lambda: _lines_done(victim), (1000, 6000, 12000)
    )
    assert kills >= 2, "the import finished before it could be killed"
    done = subprocess.run(
        _import_cmd(victim, synthetic), env=env, check=True, capture_output=True, text=True
    )
    summary = json.loads(done.stdout)
    assert summary["resumed_at_line"] > 0  # it did resume, not start over
    assert logical_dump(victim / "catalog.sqlite3") == logical_dump(reference / "catalog.sqlite3")
    ref_conn = sqlite3.connect(reference / "catalog.sqlite3")
    vic_conn = sqlite3.connect(victim / "catalog.sqlite3")
    assert sorted(iter_export_lines(vic_conn)) == sorted(iter_export_lines(ref_conn))
    assert vic_conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ref_conn.close()
    vic_conn.close()
