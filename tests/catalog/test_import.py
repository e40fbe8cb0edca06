"""Import of interchange JSONL: loading, bad input, idempotence, updates, strict mode."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from phonotheca.archive import Archive
from phonotheca.catalog.export import catalog_stats, iter_export_lines
from phonotheca.catalog.importer import ImportRejected, ImportSummary, import_lines
from phonotheca.catalog.search import search
from tests.catalog import import_files
from tests.conftest import track

WriteJsonl = Callable[..., Path]


def load(
    archive: Archive, *paths: Path, strict: bool = False, workers: int = 0
) -> list[ImportSummary]:
    return import_files(archive, import_lines, paths, strict=strict, workers=workers)


def rows(archive: Archive, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_tracks_albums_artists_and_links_are_loaded(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    rec = track(
        1,
        artists=[
            {"id": "a:1", "name": "Alpha", "join_phrase": " feat. "},
            {"id": "a:2", "name": "Beta", "sort_name": "Beta, The"},
        ],
        genres=["rock", "pop"],
        markets=["GB", "US"],
        explicit=True,
        external_ids={"musicbrainz_recording": "0f0e"},
    )
    rec["album"] = {
        "id": "al:1",
        "title": "First",
        "artists": [{"id": "a:1", "name": "Alpha"}],
        "release_date": "1999-03",
        "upc": "0123456789012",
        "label": "Label",
        "genres": ["rock"],
        "images": [{"url": "https://example.org/c.jpg", "width": 600, "height": 600}],
        "album_type": "album",
    }
    (summary,) = load(archive, write_jsonl("one.jsonl", [rec]))
    assert (summary.read, summary.loaded, summary.rejected) == (1, 1, 0)
    assert rows(
        archive, "SELECT title, artist_credit, isrc, isrc_valid, explicit, markets FROM tracks"
    ) == [("Song 1", "Alpha feat. Beta", "USABC0100001", 1, 1, "GB US")]
    assert rows(
        archive,
        "SELECT ta.position, ar.public_id, ta.join_phrase, ar.sort_name FROM track_artists ta"
        " JOIN artists ar ON ar.id = ta.artist_id ORDER BY ta.position",
    ) == [(0, "a:1", " feat. ", None), (1, "a:2", "", "Beta, The")]
    assert rows(
        archive, "SELECT public_id, release_date, release_date_precision, upc FROM albums"
    ) == [("al:1", "1999-03", "month", "0123456789012")]
    assert rows(archive, "SELECT url, width FROM images") == [("https://example.org/c.jpg", 600)]
    assert sorted(rows(archive, "SELECT name FROM genres")) == [("pop",), ("rock",)]
    assert rows(archive, "SELECT entity, scheme, value FROM external_ids") == [
        ("track", "musicbrainz_recording", "0f0e")
    ]


BAD_LINES: list[tuple[bytes, str]] = [
    (b"{not json", "invalid JSON"),
    (b'{"id": "x", "title": "\xff\xfe"}', "invalid UTF-8"),
    (b'{"id": "x", "title": 5, "artists": []}', "$.title"),
    (b'{"title": "no id", "artists": []}', "missing required field `id`"),
    (b'{"id": "x", "title": "t", "artists": [], "popularity": 101}', "$.popularity"),
    (b'{"id": "x", "title": "t", "artists": [], "listens": -1}', "$.listens"),
    (b'{"id": "x", "title": "' + b"a" * 5000 + b'", "artists": []}', "length <= 2000"),
    (
        b'{"id": "x", "title": "t", "artists": [],'
        b' "album": {"title": "a", "release_date": "1999-13"}}',
        "month 13",
    ),
    (b"[1, 2, 3]", "invalid record"),
    (b'{"id": "a\\u0000b", "title": "t", "artists": []}', "$.id"),
]


def test_each_bad_line_is_rejected_with_reason_and_the_rest_loads(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    lines: list[object] = [track(0)]
    for raw, _ in BAD_LINES:
        lines += [raw, track(len(lines))]
    (summary,) = load(archive, write_jsonl("mixed.jsonl", lines))
    assert summary.read == len(lines)
    assert summary.rejected == len(BAD_LINES)
    assert summary.loaded == len(lines) - len(BAD_LINES)
    assert summary.read == summary.loaded + summary.rejected
    assert summary.rejects_file is not None
    rejects = [json.loads(x) for x in Path(summary.rejects_file).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2 * i + 2 for i in range(len(BAD_LINES))]
    for r, (raw, reason) in zip(rejects, BAD_LINES, strict=True):
        assert reason in r["reason"], (r["reason"], reason)
        assert r["file"].endswith("mixed.jsonl")
        if "record_base64" not in r:
            assert r["record"].encode() == raw
    assert catalog_stats(sqlite3.connect(archive.catalog_path)).tracks == summary.loaded


def test_overlong_line_is_rejected_without_reading_it_whole(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    huge = b'{"id": "x", "title": "' + b"a" * (3 << 20) + b'"}'
    (summary,) = load(archive, write_jsonl("huge.jsonl", [track(1), huge, track(2)]))
    assert (summary.loaded, summary.rejected) == (2, 1)
    reject = json.loads(Path(summary.rejects_file or "").read_text())
    assert reject["line"] == 2 and "longer than" in reject["reason"]


def test_invalid_isrcs_are_kept_flagged_and_counted(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    recs = [track(1, isrc="gb-aye-73-00105"), track(2, isrc="NOT-AN-ISRC"), track(3, isrc=None)]
    (summary,) = load(archive, write_jsonl("isrc.jsonl", recs))
    assert summary.invalid_isrc == 1 and summary.loaded == 3
    assert rows(archive, "SELECT public_id, isrc, isrc_valid FROM tracks ORDER BY id") == [
        ("test:track:1", "GBAYE7300105", 1),
        ("test:track:2", "NOTANISRC", 0),
        ("test:track:3", None, None),
    ]
    stats = catalog_stats(sqlite3.connect(archive.catalog_path))
    assert (stats.unique_isrcs, stats.invalid_isrcs) == (1, 1)


def test_importing_twice_gives_the_same_catalog(archive: Archive, write_jsonl: WriteJsonl) -> None:
    path = write_jsonl("a.jsonl", [track(i) for i in range(50)])
    load(archive, path)
    dump = lambda: [  # noqa: E731
        rows(archive, f"SELECT * FROM {t} ORDER BY 1, 2")
        for t in ("tracks", "albums", "artists", "track_artists", "album_artists", "images")
    ]
    first = dump()
    load(archive, path)
    assert dump() == first


def test_a_newer_record_updates_the_track(archive: Archive, write_jsonl: WriteJsonl) -> None:
    load(archive, write_jsonl("a.jsonl", [track(1), track(2)]))
    changed = track(
        1, title="Renamed", artists=[{"id": "a:new", "name": "Newcomer"}], popularity=99
    )
    load(archive, write_jsonl("b.jsonl", [changed]))
    assert rows(archive, "SELECT public_id, title, popularity FROM tracks ORDER BY id") == [
        ("test:track:1", "Renamed", 99),
        ("test:track:2", "Song 2", 2),
    ]
    assert rows(
        archive,
        "SELECT ar.name FROM track_artists ta JOIN artists ar ON ar.id = ta.artist_id"
        " JOIN tracks t ON t.id = ta.track_id WHERE t.public_id = 'test:track:1'",
    ) == [("Newcomer",)]
    conn = archive.connect(readonly=True)
    assert [h.id for h in search(conn, "renamed")] == ["test:track:1"]
    assert search(conn, "song 1") == []
    exported = [json.loads(x) for x in iter_export_lines(conn)]
    assert {r["title"] for r in exported} == {"Renamed", "Song 2"}


def test_updated_at_decides_between_two_records_of_one_id(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    new = track(1, title="New", updated_at="2025-01-02T00:00:00Z")
    old = track(1, title="Old", updated_at="2024-01-01T00:00:00Z")
    (s,) = load(archive, write_jsonl("a.jsonl", [new, old]))
    assert s.superseded == 1
    load(archive, write_jsonl("b.jsonl", [old]))
    assert rows(archive, "SELECT title FROM tracks") == [("New",)]


def test_strict_stops_at_first_bad_line_and_keeps_nothing(
    archive: Archive, write_jsonl: WriteJsonl
) -> None:
    load(archive, write_jsonl("good.jsonl", [track(1)]))
    before = rows(archive, "SELECT * FROM tracks")
    bad = write_jsonl("bad.jsonl", [track(2), track(3), b"{oops", track(4)])
    with pytest.raises(ImportRejected) as info:
        load(archive, write_jsonl("also-good.jsonl", [track(5)]), bad, strict=True)
    assert info.value.reject.line == 3 and "bad.jsonl:3" in str(info.value)
    assert rows(archive, "SELECT * FROM tracks") == before
    assert rows(archive, "SELECT count(*) FROM imports") == [(1,)]


def test_zstd_input_and_worker_processes(archive: Archive, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl.zst"
    lines = b"".join(json.dumps(track(i)).encode() + b"\n" for i in range(60_000))
    path.write_bytes(zstandard.ZstdCompressor().compress(lines))
    import phonotheca.catalog.importer as importer

    old = importer.POOL_THRESHOLD
    importer.POOL_THRESHOLD = 0  # force the worker process even for a small file
    try:
        (summary,) = load(archive, path, workers=1)
    finally:
        importer.POOL_THRESHOLD = old
    assert summary.loaded == 60_000
    assert rows(archive, "SELECT count(*), count(DISTINCT public_id) FROM tracks") == [
        (60_000, 60_000)
    ]
    conn = archive.connect(readonly=True)
    exported = sorted(iter_export_lines(conn))
    assert exported == sorted(lines.splitlines())


def test_unreadable_zstd_is_a_clear_error(archive: Archive, tmp_path: Path) -> None:
    from phonotheca.sources.jsonl import SourceError

    path = tmp_path / "broken.jsonl.zst"
    path.write_bytes(b"this is not zstd at all" * 100)
    with pytest.raises(SourceError, match=r"broken\.jsonl\.zst"):
        load(archive, path)


def test_the_index_builds_after_a_bulk_load_report_their_progress(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phonotheca.catalog import importer, schema
    from phonotheca.catalog import search as search_module

    # Sampled every 16 ids instead of 4,096, so that a small file gives many reports.
    monkeypatch.setattr(search_module, "PROGRESS_EVERY", 16)
    monkeypatch.setattr(importer, "BULK_MIN_BYTES", 0)  # bulk mode: indexes built at the end
    path = write_jsonl("many.jsonl", [track(n) for n in range(1000)])
    conn = archive.connect()
    try:
        import_lines(conn, path, archive.rejects_dir)
        assert schema.missing_indexes(conn) == list(schema.SECONDARY_INDEXES)
        steps: list[tuple[str, int | None, int | None]] = []
        importer.finish_import(conn, lambda *step: steps.append(step))
        assert schema.missing_indexes(conn) == []
        keys = conn.execute("SELECT key, track_id FROM search_rank ORDER BY key").fetchall()
        hits = [h.id for h in search(conn, "song", limit=50)]
        # The same index as a rebuild that reports nothing.
        search_module.rebuild_search(conn)
        assert conn.execute("SELECT key, track_id FROM search_rank ORDER BY key").fetchall() == keys
        assert [h.id for h in search(conn, "song", limit=50)] == hits
    finally:
        conn.close()
    names = [s[0] for s in steps]
    n = len(schema.SECONDARY_INDEXES)
    assert names[:n] == [
        f"index {name} ({i}/{n})" for i, name in enumerate(schema.SECONDARY_INDEXES, 1)
    ]
    counts = [(done, total) for name, done, total in steps if name == "search index"]
    assert counts[0] == (0, 1000) and counts[-1] == (1000, 1000)
    assert len(counts) >= 1000 // 16  # reported as the rows were indexed, not only at the end
    assert [d for d, _ in counts] == sorted(d for d, _ in counts)


def _library_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in tables}
    finally:
        conn.close()
    out["meta"] = [r for r in out["meta"] if r[0] != "built_at"]
    return out


def test_the_lists_built_beside_the_search_index_are_those_built_alone(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phonotheca.catalog import importer, library

    monkeypatch.setattr(importer, "BULK_MIN_BYTES", 0)  # bulk mode: both built at the end
    path = write_jsonl("many.jsonl", [track(n) for n in range(500)])
    lists = archive.root / library.LIBRARY_FILE
    conn = archive.connect()
    try:
        import_lines(conn, path, archive.rejects_dir)
        steps: list[str] = []
        importer.finish_import(conn, lambda name, done, total: steps.append(name))
        assert steps.index("library lists") < steps.index("search index")  # started first
        beside = _library_rows(lists)
        assert library.refresh(conn, force=True)  # the same lists, made on their own
    finally:
        conn.close()
    assert beside == _library_rows(lists)
    assert len(beside["album_stats"]) == len(rows(archive, "SELECT id FROM albums"))


def test_a_failed_build_of_the_lists_fails_the_import_after_the_search_index(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phonotheca.catalog import importer, library, schema
    from phonotheca.catalog.search import search_is_stale

    def broken(*args: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(importer, "BULK_MIN_BYTES", 0)
    monkeypatch.setattr(library, "build", broken)
    path = write_jsonl("many.jsonl", [track(n) for n in range(100)])
    conn = archive.connect()
    try:
        import_lines(conn, path, archive.rejects_dir)
        with pytest.raises(OSError, match="disk full"):
            importer.finish_import(conn)
        assert not search_is_stale(conn)  # built meanwhile, and kept
        assert schema.postponed_since(conn) is not None  # the import is not finished
    finally:
        conn.close()
