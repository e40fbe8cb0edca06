"""``import playlists``: JSPF and playlist records, matching, rejects, re-imports, export."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.archive import Archive, init_archive
from phonotheca.catalog import importer
from phonotheca.catalog.export import export_jsonl, iter_playlist_lines
from phonotheca.catalog.importer import ImportSummary, import_lines
from phonotheca.cli import main
from phonotheca.sources.playlist_files import read_playlist_blocks
from phonotheca.sources.playlist_lines import prepare_playlist_lines
from phonotheca.sources.playlists import PlaylistWriter
from tests.catalog import import_files
from tests.conftest import track

WriteJsonl = Callable[..., Path]
MBID = "8f3471b5-7e6a-48da-86a9-c1c07a0f47ae"
UNKNOWN_MBID = "00000000-0000-4000-8000-000000000000"
LB_PLAYLIST = "5f7b0f2e-0c9a-4d6c-9a51-0b5e8c5d2a11"
LB = "https://musicbrainz.org/doc/jspf#playlist"


def catalog_tracks() -> list[dict[str, object]]:
    """Tracks to match against: 1 by its recording id, 2 by ISRC, 3 by name."""
    return [
        track(1, external_ids={"musicbrainz_recording": MBID}),
        track(2),
        track(3),
        track(4),
    ]


def road_trip(**fields: object) -> dict[str, object]:
    """A ListenBrainz-like JSPF document with one entry for each way of matching."""
    playlist: dict[str, object] = {
        "title": "Road trip",
        "creator": "alice",
        "annotation": "<p>for the car</p>",
        "date": "2024-05-01T12:00:00.000000+00:00",
        "identifier": f"https://listenbrainz.org/playlist/{LB_PLAYLIST}",
        "extension": {LB: {"creator": "alice", "public": True}},
        "track": [
            {
                "identifier": [f"https://musicbrainz.org/recording/{MBID}"],
                "title": "Another title",
                "creator": "Someone",
                "extension": {"https://musicbrainz.org/doc/jspf#track": {"added_by": "alice"}},
            },
            {"identifier": "isrc:US-ABC-01-00002", "title": "Song 2"},
            {"title": "Song 3", "creator": "Artist 3", "album": "Album 0", "duration": 181_000},
            {"title": "Nowhere", "creator": "Nobody", "album": "Never", "duration": 1000},
            {"identifier": f"https://musicbrainz.org/recording/{UNKNOWN_MBID}", "title": "Lost"},
            {},
        ],
    }
    playlist.update(fields)
    return {"playlist": playlist}


def load_playlists(archive: Archive, *paths: Path, strict: bool = False) -> list[ImportSummary]:
    def one(conn: sqlite3.Connection, path: Path, rejects: Path, **kw: object) -> ImportSummary:
        return import_lines(
            conn,
            path,
            rejects,
            kind="playlists",
            prepare=prepare_playlist_lines,
            read_blocks=read_playlist_blocks,
            strict=bool(kw["strict"]),
            workers=0,
        )

    return import_files(archive, one, paths, strict=strict)


def query(archive: Archive, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def with_tracks(archive: Archive, write_jsonl: WriteJsonl) -> Archive:
    import_files(archive, import_lines, (write_jsonl("tracks.jsonl", catalog_tracks()),))
    return archive


def write_json(tmp_path: Path, name: str, doc: object, indent: int | None = 2) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=indent))
    return path


ENTRIES_SQL = """
    SELECT e.position, t.public_id, e.match, e.identifier, e.title, e.creator, e.album,
           e.duration_ms
    FROM playlist_entries e LEFT JOIN tracks t ON t.id = e.track_id ORDER BY e.position
"""


def test_a_jspf_document_is_matched_by_recording_id_isrc_and_name_and_keeps_every_entry(
    with_tracks: Archive, tmp_path: Path
) -> None:
    path = write_json(tmp_path, "road.json", road_trip())
    result = CliRunner().invoke(
        main, ["import", "playlists", str(path), "--archive", str(with_tracks.root)]
    )
    assert result.exit_code == 0, result.output
    assert "1 playlists, 6 entries, 3 unmatched (kept)" in result.output
    assert "matched by recording id 1, by ISRC 1, by name 1" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()[1:])
    (pl,) = query(
        with_tracks,
        "SELECT public_id, title, creator, annotation, created, identifier, entries, matched,"
        " duration_ms, extension FROM playlists",
    )
    assert pl[:9] == (
        f"pl:lb:{LB_PLAYLIST}",
        "Road trip",
        "alice",
        "<p>for the car</p>",
        "2024-05-01T12:00:00.000000+00:00",
        f"https://listenbrainz.org/playlist/{LB_PLAYLIST}",
        6,
        3,
        182_000,
    )
    assert json.loads(str(pl[9])) == {LB: {"creator": "alice", "public": True}}
    assert query(with_tracks, ENTRIES_SQL) == [
        (
            0,
            "test:track:1",
            "mbid",
            f"https://musicbrainz.org/recording/{MBID}",
            "Another title",
            "Someone",
            None,
            None,
        ),
        (1, "test:track:2", "isrc", "isrc:US-ABC-01-00002", "Song 2", None, None, None),
        (2, "test:track:3", "name", None, "Song 3", "Artist 3", "Album 0", 181_000),
        (3, None, None, None, "Nowhere", "Nobody", "Never", 1000),
        (
            4,
            None,
            None,
            f"https://musicbrainz.org/recording/{UNKNOWN_MBID}",
            "Lost",
            None,
            None,
            None,
        ),
        (5, None, None, None, None, None, None, None),
    ]
    found = query(
        with_tracks,
        "SELECT p.public_id FROM playlist_search s JOIN playlists p ON p.id = s.rowid"
        " WHERE playlist_search MATCH 'road'",
    )
    assert found == [(f"pl:lb:{LB_PLAYLIST}",)]


def test_the_same_file_again_changes_nothing_and_a_changed_playlist_replaces_its_entries(
    with_tracks: Archive, tmp_path: Path
) -> None:
    path = write_json(tmp_path, "road.json", road_trip())
    first = load_playlists(with_tracks, path)[0]
    before = query(with_tracks, "SELECT * FROM playlists"), query(with_tracks, ENTRIES_SQL)
    chunks = query(with_tracks, "SELECT count(*) FROM source_chunks")
    again = load_playlists(with_tracks, path)[0]
    assert (query(with_tracks, "SELECT * FROM playlists"), query(with_tracks, ENTRIES_SQL)) == (
        before
    )
    assert query(with_tracks, "SELECT count(*) FROM source_chunks") == chunks
    assert (
        again.playlists
        == first.playlists
        == {
            "playlists": 1,
            "entries": 6,
            "mbid": 1,
            "isrc": 1,
            "name": 1,
            "unmatched": 3,
        }
    )

    doc = road_trip(title="Short trip")
    doc["playlist"]["track"] = doc["playlist"]["track"][2:4]  # type: ignore[index]
    load_playlists(with_tracks, write_json(tmp_path, "road.json", doc))
    assert query(with_tracks, "SELECT public_id, title, entries, matched FROM playlists") == [
        (f"pl:lb:{LB_PLAYLIST}", "Short trip", 2, 1)
    ]
    assert [r[:3] for r in query(with_tracks, ENTRIES_SQL)] == [
        (0, "test:track:3", "name"),
        (1, None, None),
    ]

    def titles(word: str) -> list[tuple[object, ...]]:
        return query(
            with_tracks,
            "SELECT p.title FROM playlist_search JOIN playlists p ON p.id = playlist_search.rowid"
            " WHERE playlist_search MATCH ?",
            word,
        )

    assert titles("short") == [("Short trip",)] and titles("road") == []


def test_bad_playlists_go_to_the_rejects_with_their_reason(
    with_tracks: Archive, write_jsonl: WriteJsonl
) -> None:
    good = road_trip()
    private = road_trip(extension={LB: {"public": False}}, identifier="https://example.org/p/2")
    untitled = road_trip(identifier="https://example.org/p/3")
    del untitled["playlist"]["title"]  # type: ignore[attr-defined]
    bad_entry = road_trip(identifier="https://example.org/p/4")
    bad_entry["playlist"]["track"][2]["duration"] = "3:00"  # type: ignore[index]
    record = {"type": "playlist", "id": "pl:mine", "title": "Mine", "track": [{"title": "x"}]}
    newer = {"type": "playlist", "version": 2, "title": "Future"}
    path = write_jsonl(
        "many.jsonl",
        [
            good,
            b'{"playlist": {"title": "cut',
            private,
            untitled,
            bad_entry,
            track(9),
            {"type": "album", "title": "x"},
            record,
            newer,
        ],
    )
    (summary,) = load_playlists(with_tracks, path)
    assert (summary.read, summary.loaded, summary.rejected) == (9, 2, 7)
    assert summary.rejects_file is not None
    rejects = [json.loads(line) for line in Path(summary.rejects_file).read_text().splitlines()]
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert reasons[2].startswith("invalid JSON")
    assert "private playlist" in reasons[3]
    assert "missing required field `title`" in reasons[4]
    assert "$.playlist.track[2].duration" in reasons[5]
    assert "import jsonl loads tracks" in reasons[6]
    assert reasons[7] == "unknown record type 'album'"
    assert "version 2 is newer" in reasons[9]
    assert sorted(query(with_tracks, "SELECT public_id FROM playlists")) == [
        (f"pl:lb:{LB_PLAYLIST}",),
        ("pl:mine",),
    ]


def test_strict_stops_at_the_first_bad_playlist_and_keeps_nothing(
    with_tracks: Archive, write_jsonl: WriteJsonl, tmp_path: Path
) -> None:
    path = write_jsonl("two.jsonl", [road_trip(), {"playlist": {"track": []}}])
    result = CliRunner().invoke(
        main,
        ["import", "playlists", str(path), "--strict", "--archive", str(with_tracks.root)],
    )
    assert result.exit_code == 1
    assert "two.jsonl:2: invalid playlist" in result.output and "fix the playlist" in result.output
    assert query(with_tracks, "SELECT count(*) FROM playlists") == [(0,)]
    assert query(with_tracks, "SELECT count(*) FROM imports WHERE kind = 'playlists'") == [(0,)]


def test_a_file_import_playlists_does_not_read_is_refused(
    with_tracks: Archive, tmp_path: Path
) -> None:
    path = tmp_path / "road.txt"
    path.write_text("{}")
    result = CliRunner().invoke(
        main, ["import", "playlists", str(path), "--archive", str(with_tracks.root)]
    )
    assert result.exit_code == 1 and "not a file import playlists reads" in result.output


def test_an_interrupted_import_resumes_and_ends_as_an_uninterrupted_one(
    archive: Archive,
    tmp_path: Path,
    write_jsonl: WriteJsonl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lists = [
        road_trip(identifier=f"https://example.org/p/{n}", title=f"List {n}") for n in range(7)
    ]
    path = write_jsonl("lists.jsonl", lists)
    tracks = write_jsonl("tracks.jsonl", catalog_tracks())
    reference = init_archive(tmp_path / "reference", "ref")
    for arc in (archive, reference):
        import_files(arc, import_lines, (tracks,))
    expected = load_playlists(reference, path)[0]

    monkeypatch.setattr(importer, "LINES_PER_BATCH", 2)
    calls = {"n": 0}
    write = PlaylistWriter.write

    def crash_on_third(self: PlaylistWriter, rows: list[object]) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return write(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(PlaylistWriter, "write", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        load_playlists(archive, path)
    assert query(archive, "SELECT count(*) FROM playlists") == [(4,)]
    monkeypatch.setattr(PlaylistWriter, "write", write)
    resumed = load_playlists(archive, path)[0]
    assert resumed.resumed_at_line == 4
    assert resumed.playlists == expected.playlists
    assert resumed.playlists is not None and resumed.playlists["playlists"] == 7
    for sql in ("SELECT public_id, title, entries, matched FROM playlists ORDER BY public_id",):
        assert query(archive, sql) == query(reference, sql)
    assert sorted(iter_lines(archive)) == sorted(iter_lines(reference))


def iter_lines(archive: Archive) -> list[bytes]:
    conn = archive.connect(readonly=True)
    try:
        return list(iter_playlist_lines(conn))
    finally:
        conn.close()


def test_export_writes_playlists_back_and_a_round_trip_gives_the_same_catalog(
    with_tracks: Archive, tmp_path: Path, write_jsonl: WriteJsonl
) -> None:
    pretty = write_json(tmp_path, "road.json", road_trip(), indent=4)
    anonymous = {"type": "playlist", "title": "No id", "track": [{"title": "Song 4"}]}
    lines = write_jsonl("more.jsonl", [anonymous])
    load_playlists(with_tracks, pretty, lines)
    first = tmp_path / "first.jsonl"
    conn = with_tracks.connect(readonly=True)
    try:
        summary = export_jsonl(conn, first)
    finally:
        conn.close()
    assert (summary.tracks, summary.playlists) == (4, 2)
    exported = [json.loads(line) for line in first.read_text().splitlines()]
    assert [r.get("type") for r in exported] == [None] * 4 + ["playlist", "playlist"]
    # The JSPF document comes back as its playlist object, every field as it was.
    assert exported[4] == {"type": "playlist", **road_trip()["playlist"]}  # type: ignore[dict-item]
    assert exported[5] == anonymous

    copy = init_archive(tmp_path / "copy", "copy")
    (summary2,) = import_files(copy, import_lines, (first,))
    assert summary2.playlists is not None and summary2.playlists["playlists"] == 2
    sql = (
        "SELECT p.public_id, p.title, p.entries, p.matched, e.position, t.public_id, e.match,"
        " e.title FROM playlists p JOIN playlist_entries e ON e.playlist_id = p.id"
        " LEFT JOIN tracks t ON t.id = e.track_id ORDER BY p.public_id, e.position"
    )
    assert query(copy, sql) == query(with_tracks, sql)
    second = tmp_path / "second.jsonl"
    conn = copy.connect(readonly=True)
    try:
        export_jsonl(conn, second)
    finally:
        conn.close()
    assert second.read_bytes() == first.read_bytes()


def test_a_playlist_of_10000_entries_is_matched_in_a_few_queries(
    archive: Archive, tmp_path: Path, write_jsonl: WriteJsonl
) -> None:
    tracks = [
        track(n, external_ids={"musicbrainz_recording": f"{n:08d}-0000-4000-8000-000000000000"})
        for n in range(1, 3001)
    ]
    import_files(archive, import_lines, (write_jsonl("tracks.jsonl", tracks),))
    entries: list[dict[str, object]] = []
    for n in range(10_000):
        if n % 3 == 0:  # by recording id (ids up to 3,333: a tenth are not in the catalog)
            mbid = f"{n // 3 + 1:08d}-0000-4000-8000-000000000000"
            entries.append({"identifier": f"https://musicbrainz.org/recording/{mbid}"})
        elif n % 3 == 1:  # by ISRC
            entries.append({"identifier": f"isrc:USABC01{n % 3000 + 1:05d}", "title": "x"})
        else:  # nothing to match by: kept, unmatched
            entries.append({"title": f"Unknown {n}"})
    path = write_json(tmp_path, "big.jspf", {"playlist": {"title": "Big", "track": entries}})
    conn = archive.connect()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        summary = import_lines(
            conn,
            path,
            archive.rejects_dir,
            kind="playlists",
            prepare=prepare_playlist_lines,
            read_blocks=read_playlist_blocks,
            workers=0,
        )
    finally:
        conn.set_trace_callback(None)
        conn.close()
    assert summary.playlists == {
        "playlists": 1,
        "entries": 10_000,
        "mbid": 3000,
        "isrc": 3333,
        "name": 0,
        "unmatched": 3667,
    }
    # The ids and ISRCs of the whole playlist are looked up in a handful of queries, and
    # its entries written by one executemany: no statement per entry.
    assert len(statements) < 60, len(statements)
    assert query(archive, "SELECT count(*), count(track_id) FROM playlist_entries") == [
        (10_000, 6333)
    ]


def test_compact_keeps_and_moves_playlist_records(
    with_tracks: Archive, tmp_path: Path, write_jsonl: WriteJsonl
) -> None:
    from phonotheca.catalog import records

    # Five chunks of one import each, and a replaced record in the first: its live lines
    # move to a new chunk, and the playlists pointing at them follow.
    for n in range(5):
        lists = [road_trip(identifier=f"https://example.org/p/{n}/{k}") for k in range(3)]
        load_playlists(with_tracks, write_jsonl(f"lists{n}.jsonl", lists))
    load_playlists(
        with_tracks,
        write_jsonl(
            "again.jsonl", [road_trip(identifier="https://example.org/p/0/0", title="New")]
        ),
    )
    before = sorted(iter_lines(with_tracks))
    refs = query(with_tracks, "SELECT id, record_ref FROM playlists ORDER BY id")
    chunks = query(with_tracks, "SELECT count(*) FROM source_chunks WHERE kind = 'jspf'")[0][0]
    conn = with_tracks.connect()
    read = with_tracks.connect(readonly=True)
    try:
        summary = records.compact(conn, read, every=True)
    finally:
        read.close()
        conn.close()
    assert (summary.lines_dropped, summary.lines_moved, summary.dangling) == (1, 2, 0)
    assert query(with_tracks, "SELECT count(*) FROM source_chunks WHERE kind = 'jspf'") == [
        (chunks,)
    ]
    moved = query(with_tracks, "SELECT id, record_ref FROM playlists ORDER BY id")
    # The first playlist has its new record elsewhere; the other two of its file moved.
    assert [a == b for a, b in zip(moved, refs, strict=True)] == [True, False, False] + [True] * 12
    assert sorted(iter_lines(with_tracks)) == before


def test_playlist_lines_parsed_in_worker_processes_load_alike(
    archive: Archive, write_jsonl: WriteJsonl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "POOL_THRESHOLD", 0)
    lines = [*catalog_tracks(), {"type": "playlist", **road_trip()["playlist"]}]  # type: ignore[dict-item]
    (summary,) = import_files(archive, import_lines, (write_jsonl("all.jsonl", lines),), workers=1)
    assert summary.playlists == {
        "playlists": 1,
        "entries": 6,
        "mbid": 1,
        "isrc": 1,
        "name": 1,
        "unmatched": 3,
    }
    assert (summary.read, summary.loaded) == (5, 5)


def test_the_same_file_after_new_tracks_matches_the_entries_left_unmatched(
    archive: Archive, tmp_path: Path, write_jsonl: WriteJsonl
) -> None:
    path = write_json(tmp_path, "road.json", road_trip())
    first = load_playlists(archive, path)[0]
    assert first.playlists is not None and first.playlists["unmatched"] == 6
    import_files(archive, import_lines, (write_jsonl("tracks.jsonl", catalog_tracks()),))
    chunks = query(archive, "SELECT count(*) FROM source_chunks")
    again = load_playlists(archive, path)[0]
    assert again.playlists == {
        "playlists": 1,
        "entries": 6,
        "mbid": 1,
        "isrc": 1,
        "name": 1,
        "unmatched": 3,
    }
    assert query(archive, "SELECT entries, matched FROM playlists") == [(6, 3)]
    assert [r[1:3] for r in query(archive, ENTRIES_SQL)][:3] == [
        ("test:track:1", "mbid"),
        ("test:track:2", "isrc"),
        ("test:track:3", "name"),
    ]
    assert query(archive, "SELECT count(*) FROM source_chunks") == chunks  # no record stored
