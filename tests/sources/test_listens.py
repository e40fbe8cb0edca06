"""Listen counts: matching by recording id and ISRC, formats, bad rows, popularity, search
order, and one count per recording however many releases carry it (the planner)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from phonotheca.archive import Archive
from phonotheca.catalog.search import rebuild_search, search
from phonotheca.cli import main
from phonotheca.plan.ledger import plan_catalog
from phonotheca.plan.optimizer import PlanOptions, estimate_listens
from phonotheca.sources.jsonl import SourceError
from phonotheca.sources.listens import ListensSummary, import_listens, popularity_from_listens
from tests.catalog.test_import import load as load_jsonl
from tests.conftest import track
from tests.sources.test_musicbrainz import FIXTURES, fixture, jsonl
from tests.sources.test_musicbrainz import load as load_mb

MONEY = "7fef22bd-76aa-4803-b56b-93a5d6e70662"
TIME = "41959321-f2bb-4580-aa19-16248fe665d3"
UNKNOWN = "00000000-0000-4000-8000-00000000abcd"


def listens(archive: Archive, *paths: Path) -> list[ListensSummary]:
    from phonotheca.catalog.importer import finish_import

    conn = archive.connect()
    try:
        out = [import_listens(conn, p, archive.rejects_dir) for p in paths]
        finish_import(conn)
        return out
    finally:
        conn.close()


def rows(archive: Archive, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def csv_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_popularity_formula_is_monotone_and_inverts_the_planner_estimate() -> None:
    values = [popularity_from_listens(n) for n in range(0, 200_000, 7)]
    assert values == sorted(values) and values[0] == 0 and max(values) == 100
    assert [popularity_from_listens(n) for n in (0, 9, 99, 999, 10**5, 10**9)] == [
        0,
        20,
        40,
        60,
        100,
        100,
    ]
    # Where the estimate is at least a few listens, the two are exact inverses.
    estimates = estimate_listens(np.arange(20, 101))
    assert [popularity_from_listens(round(float(x))) for x in estimates] == list(range(20, 101))


def test_csv_by_recording_id(archive: Archive, tmp_path: Path) -> None:
    load_mb(archive, FIXTURES / "release.json")
    path = csv_file(
        tmp_path,
        "pop.csv",
        f"recording_mbid,listen_count,user_count\n{MONEY},1000,50\n{TIME.upper()},9,3\n"
        f"{UNKNOWN},5,1\n",
    )
    (s,) = listens(archive, path)
    assert (s.read, s.matched_mbid, s.matched_isrc, s.unmatched, s.rejected) == (3, 2, 0, 1, 0)
    assert s.tracks_updated == 2
    assert rows(
        archive,
        "SELECT title, listens, listeners, popularity, popularity_derived FROM tracks"
        " WHERE listens IS NOT NULL ORDER BY listens",
    ) == [("Time", 9, 3, 20, 1), ("Money", 1000, 50, 60, 1)]
    reject = json.loads(Path(s.rejects_file or "").read_text())
    assert reject == {
        "file": str(path),
        "line": 4,
        "reason": "no track with this recording_mbid or isrc",
        "record": f"{UNKNOWN},5,1",
    }
    (again,) = listens(archive, path)  # the same file again changes nothing
    assert (again.matched_mbid, again.tracks_updated) == (2, 0)


def test_jsonl_by_isrc_keeps_a_sourced_popularity(
    archive: Archive, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    load_jsonl(
        archive,
        write_jsonl("t.jsonl", [track(1, popularity=42, listens=None), track(2, popularity=None)]),
    )
    path = jsonl(
        tmp_path,
        "pop.jsonl",
        [
            {"isrc": "us-abc-01-00001", "total_listen_count": 99999},
            {"isrc": "USABC0100002", "listen_count": 99, "user_count": None},
        ],
    )
    (s,) = listens(archive, path)
    assert (s.matched_mbid, s.matched_isrc, s.tracks_updated) == (0, 2, 2)
    assert rows(
        archive, "SELECT public_id, listens, popularity, popularity_derived FROM tracks ORDER BY id"
    ) == [("test:track:1", 99999, 42, None), ("test:track:2", 99, 40, 1)]


def test_parquet(archive: Archive, tmp_path: Path) -> None:
    load_mb(archive, FIXTURES / "release.json")
    path = tmp_path / "pop.parquet"
    table = pa.table(
        {
            "recording_mbid": [MONEY, UNKNOWN, "not-a-uuid"],
            "total_listen_count": pa.array([12345, 3, 4], pa.int64()),
            "total_user_count": pa.array([10, None, 1], pa.int64()),
        }
    )
    pq.write_table(table, path)
    (s,) = listens(archive, path)
    assert (s.read, s.matched_mbid, s.unmatched, s.rejected) == (3, 1, 1, 1)
    assert rows(archive, "SELECT title, listens, listeners FROM tracks WHERE listens > 0") == [
        ("Money", 12345, 10)
    ]
    rejects = [json.loads(x) for x in Path(s.rejects_file or "").read_text().splitlines()]
    assert [(r["line"], r["reason"][:25]) for r in rejects] == [
        (2, "no track with this record"),
        (3, "recording_mbid 'not-a-uui"),
    ]
    assert json.loads(rejects[1]["record"])["recording_mbid"] == "not-a-uuid"


BAD_ROWS = [
    (f"{MONEY},-5", "listen_count -5 is negative"),
    (f"{MONEY},1.5", "listen_count '1.5' is not an integer"),
    (f"{MONEY},many", "listen_count 'many' is not an integer"),
    (f"{MONEY},", "missing listen_count"),
    (f"{MONEY}", "missing listen_count"),
    ("1234,5", "recording_mbid '1234' is not a MusicBrainz id"),
    (",7", "no recording_mbid or isrc"),
]


def test_bad_rows_are_rejected_with_the_field(archive: Archive, tmp_path: Path) -> None:
    load_mb(archive, FIXTURES / "release.json")
    body = "\n".join(r for r, _ in BAD_ROWS)
    path = csv_file(tmp_path, "bad.csv", f"recording_mbid,listen_count\n{body}\n{TIME},10\n")
    (s,) = listens(archive, path)
    assert (s.read, s.rejected, s.matched_mbid, s.unmatched) == (len(BAD_ROWS) + 1, 7, 1, 0)
    rejects = [json.loads(x) for x in Path(s.rejects_file or "").read_text().splitlines()]
    assert [r["line"] for r in rejects] == list(range(2, 2 + len(BAD_ROWS)))
    for r, (raw, reason) in zip(rejects, BAD_ROWS, strict=True):
        assert reason in r["reason"] and r["record"] == raw


def test_a_file_without_the_needed_columns_is_a_clear_error(
    archive: Archive, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, "x.csv", "mbid,plays\nabc,1\n")
    with pytest.raises(SourceError, match=r"x\.csv: needs the columns recording_mbid or isrc"):
        listens(archive, path)
    result = CliRunner().invoke(
        main, ["import", "listens", str(path), "--archive", str(tmp_path / "a")]
    )
    assert result.exit_code == 1 and "needs the columns" in result.output
    assert "Traceback" not in result.output
    assert rows(archive, "SELECT count(*) FROM imports WHERE kind = 'listens'") == [(0,)]


def test_search_order_follows_listens(
    archive: Archive, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    recs = [track(i, title=f"Lullaby {i}", popularity=None, listens=None) for i in range(1, 4)]
    load_jsonl(archive, write_jsonl("t.jsonl", recs))

    def order() -> list[str]:
        conn = archive.connect(readonly=True)
        try:
            return [h.title for h in search(conn, "lullaby")]
        finally:
            conn.close()

    assert order() == ["Lullaby 1", "Lullaby 2", "Lullaby 3"]
    header = "isrc,listen_count\n"
    listens(archive, csv_file(tmp_path, "a.csv", header + "USABC0100003,5000\nUSABC0100002,50\n"))
    assert order() == ["Lullaby 3", "Lullaby 2", "Lullaby 1"]
    listens(archive, csv_file(tmp_path, "b.csv", header + "USABC0100001,10000000\n"))
    assert order() == ["Lullaby 1", "Lullaby 3", "Lullaby 2"]
    conn = archive.connect()
    rebuild_search(conn)
    conn.close()
    assert order() == ["Lullaby 1", "Lullaby 3", "Lullaby 2"]


def _rerelease() -> dict[str, Any]:
    """The Dark Side of the Moon released again: new release and track ids, same recordings."""
    doc = fixture("release.json")
    doc["id"] = "00000000-0000-4000-8000-000000000001"
    for i, t in enumerate(doc["media"][0]["tracks"]):
        t["id"] = f"00000000-0000-4000-8000-1000000000{i:02d}"
    return doc


def test_a_recording_on_several_releases_counts_its_listens_once(
    archive: Archive, tmp_path: Path
) -> None:
    load_mb(archive, FIXTURES / "release.json", jsonl(tmp_path, "again.jsonl", [_rerelease()]))
    assert rows(
        archive,
        "SELECT count(*) FROM external_ids WHERE scheme = 'musicbrainz_recording'"
        f" AND value = '{MONEY}'",
    ) == [(2,)]
    (s,) = listens(
        archive, csv_file(tmp_path, "p.csv", f"recording_mbid,listen_count\n{MONEY},1000\n")
    )
    assert (s.matched_mbid, s.tracks_updated) == (1, 1)
    # The count is on the first track of the recording (lowest rowid), not on both.
    assert rows(archive, "SELECT public_id, listens FROM tracks WHERE title = 'Money'") == [
        ("mb:track:e04126c2-457c-36b1-a6b3-9191002607bf", 1000),
        ("mb:track:00000000-0000-4000-8000-100000000005", None),
    ]
    # Only the re-release's Money has a source file: the planner groups the recording's
    # tracks, so it keeps that file for the recording's 1000 listens, counted once.
    conn = archive.connect()
    with conn:
        conn.execute(
            "INSERT INTO source_files(track_id, path, size, mtime_ns, codec, lossless, bitrate)"
            " SELECT id, '/music/money.flac', 30000000, 0, 'flac', 1, 900000 FROM tracks"
            " WHERE public_id = 'mb:track:00000000-0000-4000-8000-100000000005'"
        )
    record = plan_catalog(conn, PlanOptions(budget=10**9))
    ledger = dict(
        conn.execute(
            "SELECT t.public_id, l.status FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " WHERE t.title = 'Money'"
        ).fetchall()
    )
    conn.close()
    assert record.result.totals.listens_total == 1000
    assert record.result.totals.listens_covered == 1000
    assert ledger == {
        "mb:track:00000000-0000-4000-8000-100000000005": "planned",
        "mb:track:e04126c2-457c-36b1-a6b3-9191002607bf": "skipped_duplicate",
    }


def test_a_new_carrier_takes_the_count_from_the_old_one(
    archive: Archive, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    # Two tracks share an ISRC, the second also has a recording id. A row by ISRC lands on
    # the ISRC's carrier (the first), a row by recording id on the recording's (the second);
    # a later row by ISRC clears what a listens import put on the ISRC's other tracks.
    recs = [
        track(1, isrc="GBAYE7300105", popularity=None),
        track(
            2, isrc="GBAYE7300105", popularity=None, external_ids={"musicbrainz_recording": MONEY}
        ),
    ]
    load_jsonl(archive, write_jsonl("t.jsonl", [dict(r, listens=None) for r in recs]))
    listens(archive, csv_file(tmp_path, "a.csv", "isrc,listen_count\nGBAYE7300105,500\n"))
    assert rows(archive, "SELECT listens, popularity FROM tracks ORDER BY id") == [
        (500, 54),
        (None, None),
    ]
    listens(archive, csv_file(tmp_path, "b.csv", f"recording_mbid,listen_count\n{MONEY},700\n"))
    assert rows(archive, "SELECT listens, popularity FROM tracks ORDER BY id") == [
        (500, 54),
        (700, 57),
    ]
    listens(archive, csv_file(tmp_path, "c.csv", "isrc,listen_count\nGBAYE7300105,800\n"))
    assert rows(archive, "SELECT listens, popularity FROM tracks ORDER BY id") == [
        (800, 58),
        (None, None),
    ]


def test_a_replaced_record_drops_the_imported_listens(archive: Archive, tmp_path: Path) -> None:
    load_mb(archive, FIXTURES / "release.json")
    listens(archive, csv_file(tmp_path, "p.csv", f"recording_mbid,listen_count\n{MONEY},1000\n"))
    doc = fixture("release.json")
    doc["media"][0]["tracks"][5]["title"] = "Money (2011 remaster)"
    load_mb(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert rows(
        archive,
        "SELECT title, listens, popularity, listens_import, popularity_derived FROM tracks"
        " WHERE title LIKE 'Money%'",
    ) == [("Money (2011 remaster)", None, None, None, None)]


def test_cli_import_listens_json(tmp_path: Path) -> None:
    arc = str(tmp_path / "arc")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["import", "musicbrainz", str(FIXTURES / "release.json"), "--archive", arc]
        ).exit_code
        == 0
    )
    path = csv_file(tmp_path, "p.csv", f"recording_mbid,listen_count\n{MONEY},1000\n{UNKNOWN},1\n")
    result = runner.invoke(main, ["import", "listens", str(path), "--archive", arc, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: v for k, v in summary.items() if k not in ("seconds", "rejects_file")} == {
        "path": str(path),
        "read": 2,
        "matched_mbid": 1,
        "matched_isrc": 0,
        "unmatched": 1,
        "rejected": 0,
        "tracks_updated": 1,
        "complete": True,
    }
    assert Path(summary["rejects_file"]).exists()
    hits = json.loads(runner.invoke(main, ["search", "pink", "--archive", arc, "--json"]).output)
    assert hits[0]["title"] == "Money" and hits[0]["listens"] == 1000


def test_a_large_file_rebuilds_the_search_index_once(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phonotheca.sources.listens as listens_mod
    from phonotheca.catalog.search import search_is_stale

    load_mb(archive, FIXTURES / "release.json")
    monkeypatch.setattr(listens_mod, "REBUILD_SHARE", 0.0)
    path = csv_file(tmp_path, "p.csv", f"recording_mbid,listen_count\n{TIME},10\n{MONEY},1000\n")
    conn = archive.connect()
    import_listens(conn, path, archive.rejects_dir)
    assert search_is_stale(conn)  # moved tracks were left to the rebuild
    conn.close()
    listens(archive)  # finish_import rebuilds
    conn = archive.connect(readonly=True)
    assert [h.title for h in search(conn, "pink", 3)] == ["Money", "Time", "Speak to Me"]
    conn.close()
