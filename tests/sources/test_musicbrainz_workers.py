"""MusicBrainz imports through worker processes: batches staged as SQLite images by the
workers must load exactly as batches parsed in the writer, on the fast path (new ids) and
on the per-id path (ids already in the catalog), over many batches of varying size."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import phonotheca.catalog.importer as importer
from phonotheca.archive import Archive, init_archive
from phonotheca.catalog.importer import finish_import
from phonotheca.sources.musicbrainz_import import MusicBrainzSummary, import_musicbrainz
from tests.conftest import DATA

FIXTURES = DATA / "musicbrainz"
TABLES = {
    "tracks": "public_id, title, artist_credit, album_id, disc_number, track_number,"
    " duration_ms, isrc, fingerprint, record_ref",
    "albums": "public_id, title, artist_credit, release_date, total_tracks",
    "artists": "public_id, name, sort_name",
    "artist_aliases": "artist_id, name, locale",
    "track_artists": "track_id, position, artist_id, credited_as, join_phrase",
    "track_genres": "track_id, (SELECT name FROM genres WHERE id = genre_id)",
    "album_genres": "album_id, (SELECT name FROM genres WHERE id = genre_id)",
    "external_ids": "entity, entity_id, scheme, value",
    "images": "album_id, position, kind, url",
}


def _doc(n: int, title_suffix: str = "") -> dict[str, Any]:
    """Copy ``n`` of a fixture (alternating the two, so batches differ in size) with ids
    of its own and the recording genre of the first one's tracks."""
    name = "release.json" if n % 2 else "release_multidisc.json"
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    doc["id"] = f"00000000-0000-4000-8000-{n:012d}"
    for m, medium in enumerate(doc["media"]):
        for t, tr in enumerate(medium["tracks"]):
            tr["id"] = f"00000000-0000-4000-9{m}{t:02d}-{n:012d}"
            tr["title"] += title_suffix
            if tr.get("recording") and t % 3 == 0:
                tr["recording"]["genres"] = [{"name": f"genre {t}"}]
    return doc


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    return path


def _import(archive: Archive, paths: list[Path], workers: int) -> list[MusicBrainzSummary]:
    conn = archive.connect()
    try:
        out = [import_musicbrainz(conn, p, archive.rejects_dir, workers=workers) for p in paths]
        finish_import(conn)
        return out
    finally:
        conn.close()


def _dump(archive: Archive) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT {cols} FROM {table}").fetchall(), key=repr)
            for table, cols in TABLES.items()
        }
    finally:
        conn.close()


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    """A first file of 11 releases, then one that changes 4 of them and adds 3."""
    first = _write(tmp_path / "first.jsonl", [_doc(n) for n in range(11)])
    changed = [_doc(n, " (remastered)") for n in (2, 3, 8, 9)]
    second = _write(tmp_path / "second.jsonl", changed + [_doc(n) for n in range(11, 14)])
    return [first, second]


def test_worker_images_load_like_the_writers_own_batches(
    tmp_path: Path, inputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: many images attached one after the other on one connection, of
    # varying sizes, and batches of the second file that mix new and existing ids.
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 3)
    monkeypatch.setattr(importer, "POOL_THRESHOLD", 0)
    in_process = init_archive(tmp_path / "a", "a")
    by_workers = init_archive(tmp_path / "b", "b")
    expected = _import(in_process, inputs, workers=0)
    got = _import(by_workers, inputs, workers=2)
    assert [(s.read, s.loaded, s.tracks, s.superseded) for s in got] == [
        (s.read, s.loaded, s.tracks, s.superseded) for s in expected
    ]
    tables = _dump(by_workers)
    assert tables == _dump(in_process)
    titles = [t[1] for t in tables["tracks"]]
    assert sum(t.endswith(" (remastered)") for t in titles) == 2 * 10 + 2 * 7
    assert len(tables["tracks"]) == 7 * 10 + 7 * 7  # 14 releases, no track twice
    # Every track has its recording id, those of Dark Side copies their credit (the
    # multi-disc release has none), and the genres given to every third track arrived.
    assert len({t for t, *_ in tables["track_artists"]}) == 7 * 10
    recordings = [e for e in tables["external_ids"] if e[2] == "musicbrainz_recording"]
    assert len(recordings) == len(tables["tracks"])
    assert {g for _, g in tables["track_genres"]} == {"genre 0", "genre 3", "genre 6", "genre 9"}


def test_a_reimport_through_workers_changes_nothing(
    archive: Archive, inputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 4)
    monkeypatch.setattr(importer, "POOL_THRESHOLD", 0)
    _import(archive, inputs, workers=2)
    before = _dump(archive)
    (again,) = _import(archive, inputs[:1], workers=2)
    assert (again.loaded, again.rejected) == (11, 0)
    after = _dump(archive)
    # The first file's releases come back as they were before the second file changed
    # four of them (a MusicBrainz document has no date: the later import wins).
    assert after["tracks"] != before["tracks"]
    assert after["external_ids"] == before["external_ids"]
    assert not any(t[1].endswith(" (remastered)") for t in after["tracks"])
    assert len(after["tracks"]) == len(before["tracks"])
