"""phonotheca plan on a real catalog: ledger rows, duplicates, missing sources, packed
tracks, re-planning, the CLI report and plot."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.archive import Archive
from phonotheca.catalog import schema
from phonotheca.cli import main
from phonotheca.plan.ledger import plan_catalog, read_tracks
from phonotheca.plan.optimizer import PlanOptions
from tests.catalog.test_import import load
from tests.conftest import track
from tests.schema_rewind import rewind

MB = 1_000_000


@pytest.fixture
def planned_archive(archive: Archive, write_jsonl: Callable[..., Path]) -> Archive:
    """Ten tracks of 200 s; tracks 0-7 have a 5 MB source file; 8 and 9 have none.
    Tracks 1 and 2 share an ISRC (2 has the larger, lossless source)."""
    recs = [
        track(i, listens=1000 * (10 - i), duration_ms=200_000, isrc=f"USABC01{i:05d}")
        for i in range(10)
    ]
    recs[2]["isrc"] = recs[1]["isrc"]
    load(archive, write_jsonl("p.jsonl", recs))
    conn = sqlite3.connect(archive.catalog_path)
    with conn:
        for i in range(8):
            conn.execute(
                "INSERT INTO source_files(track_id, path, size, mtime_ns, codec, lossless, bitrate)"
                " SELECT id, ?, ?, 0, ?, ?, 160000 FROM tracks WHERE public_id = ?",
                (
                    f"/music/{i}.ogg",
                    5 * MB + (MB if i == 2 else 0),
                    "flac" if i == 2 else "vorbis",
                    int(i == 2),
                    f"test:track:{i}",
                ),
            )
    conn.close()
    return archive


def ledger(archive: Archive) -> dict[str, tuple[object, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    rows = conn.execute(
        "SELECT t.public_id, l.status, l.tier, l.planned_size, sf.path, d.public_id"
        " FROM ledger l JOIN tracks t ON t.id = l.track_id"
        " LEFT JOIN source_files sf ON sf.id = l.source_file_id"
        " LEFT JOIN tracks d ON d.id = l.duplicate_of"
    ).fetchall()
    conn.close()
    return {r[0].split(":")[-1]: r[1:] for r in rows}


def run_plan(archive: Archive, budget: int, **kw: object):  # type: ignore[no-untyped-def]
    conn = archive.connect()
    try:
        return plan_catalog(conn, PlanOptions(budget=budget, **kw))  # type: ignore[arg-type]
    finally:
        conn.close()


def test_every_track_gets_a_ledger_row(planned_archive: Archive) -> None:
    record = run_plan(planned_archive, 100 * MB)
    rows = ledger(planned_archive)
    assert len(rows) == 10 == record.written
    # Everything with a source fits: originals for all; the ISRC pair keeps one file,
    # the best source (lossless, track 2), and track 1 points at it.
    assert rows["2"][:2] == ("planned", "original") and rows["2"][3] == "/music/2.ogg"
    assert rows["1"][0] == "skipped_duplicate" and rows["1"][4] == "test:track:2"
    for i in (0, 3, 4, 5, 6, 7):
        assert rows[str(i)][:3] == ("planned", "original", 5 * MB)
    for i in (8, 9):
        assert rows[str(i)][:2] == ("missing_source", "metadata")
    t = record.result.totals
    assert t.listens_missing == 1000 * (2 + 1)


def test_a_small_budget_keeps_the_most_listened_as_opus(planned_archive: Archive) -> None:
    record = run_plan(planned_archive, 5 * MB)
    rows = ledger(planned_archive)
    opus = [k for k, v in rows.items() if v[1] == "opus"]
    # 200 s at 75 kbit/s is ~1.9 MB: two Opus files fit, the most listened first
    # (track 0, then the ISRC pair 1+2 whose listens add up).
    assert sorted(opus) == ["0", "2"]
    assert all(rows[k][2] < 2.1 * MB for k in opus)
    assert rows["5"][:2] == ("skipped_budget", "metadata")
    assert record.result.totals.used_bytes <= 5 * MB


def test_replanning_replaces_the_plan_and_keeps_packed_tracks(planned_archive: Archive) -> None:
    run_plan(planned_archive, 100 * MB)
    conn = sqlite3.connect(planned_archive.catalog_path)
    with conn:
        conn.execute(
            "UPDATE ledger SET status = 'packed', size = planned_size, collection = 'c1'"
            " WHERE track_id = (SELECT id FROM tracks WHERE public_id = 'test:track:3')"
        )
    conn.close()
    record = run_plan(planned_archive, 8 * MB)
    rows = ledger(planned_archive)
    assert rows["3"][:3] == ("packed", "original", 5 * MB)  # untouched
    assert record.result.totals.packed_bytes == 5 * MB
    assert record.result.totals.used_bytes <= 8 * MB
    conn = sqlite3.connect(planned_archive.catalog_path)
    assert conn.execute(
        "SELECT count(*), count(DISTINCT plan_id) FROM ledger WHERE status != 'packed'"
    ).fetchone() == (9, 1)
    conn.close()


def test_read_tracks_maps_groups_and_sources(planned_archive: Archive) -> None:
    conn = planned_archive.connect(readonly=True)
    tracks = read_tracks(conn)
    conn.close()
    a = tracks.arrays
    assert a.group is not None
    assert (a.group >= 0).sum() == 2 and a.group[1] == a.group[2]
    assert list(a.original_size[:3]) == [5 * MB, 5 * MB, 6 * MB]
    assert list(tracks.source_file_id[8:]) == [0, 0]


def test_cli_plan_json_and_plot(planned_archive: Archive, tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--budget",
            "20MB",
            "--plot",
            str(plot),
            "--archive",
            str(planned_archive.root),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ledger_rows"] == 10
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = CliRunner().invoke(
        main, ["plan", "--budget", "1.5GiB", "--archive", str(planned_archive.root)]
    )
    assert text.exit_code == 0 and "listens covered" in text.output


@pytest.mark.parametrize("bad", ["lots", "12XB", "-5GB", ""])
def test_cli_plan_rejects_a_bad_size(planned_archive: Archive, bad: str) -> None:
    result = CliRunner().invoke(
        main, ["plan", "--budget", bad, "--archive", str(planned_archive.root)]
    )
    assert result.exit_code == 2 and "--budget" in result.output


def test_cli_plan_infeasible_pin(planned_archive: Archive) -> None:
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--budget",
            "1MB",
            "--min-original-popularity",
            "0",
            "--archive",
            str(planned_archive.root),
        ],
    )
    assert result.exit_code == 1 and "budget" in result.output.lower()
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--budget",
            "1TB",
            "--min-original-popularity",
            "5",
            "--exclude-tier",
            "original",
            "--archive",
            str(planned_archive.root),
        ],
    )
    assert result.exit_code == 1 and "excluded" in result.output


def _counts(archive: Archive) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """``ledger_counts`` (without its zeros), and the same counted from the ledger."""
    conn = sqlite3.connect(archive.catalog_path)
    kept = {(s, t): n for s, t, n in conn.execute("SELECT * FROM ledger_counts") if n}
    counted = {
        (s, t): n
        for s, t, n in conn.execute(
            "SELECT status, coalesce(tier, ''), count(*) FROM ledger GROUP BY 1, 2"
        )
    }
    conn.close()
    return kept, counted


def test_ledger_counts_follow_plans_builds_and_edits(planned_archive: Archive) -> None:
    run_plan(planned_archive, 100 * MB)
    kept, counted = _counts(planned_archive)
    assert kept == counted and kept[("planned", "original")] == 7
    run_plan(planned_archive, 12 * MB)  # a new plan replaces the rows it wrote
    kept, counted = _counts(planned_archive)
    assert kept == counted and ("skipped_budget", "metadata") in kept
    conn = sqlite3.connect(planned_archive.catalog_path)
    with conn:  # as a build packs a track, then as something removes a row
        conn.execute(
            "UPDATE ledger SET status = 'packed' WHERE track_id = (SELECT min(track_id)"
            " FROM ledger WHERE status = 'planned')"
        )
        conn.execute(
            "DELETE FROM ledger WHERE status = 'missing_source' AND track_id = "
            "(SELECT max(track_id) FROM ledger WHERE status = 'missing_source')"
        )
    conn.close()
    kept, counted = _counts(planned_archive)
    packed = {key: n for key, n in kept.items() if key[0] == "packed"}
    assert kept == counted and sum(packed.values()) == 1
    run_plan(planned_archive, 100 * MB)  # the packed row stays, and so does its count
    kept, counted = _counts(planned_archive)
    assert kept == counted and {k: n for k, n in kept.items() if k[0] == "packed"} == packed


def test_the_migration_counts_the_ledger(planned_archive: Archive) -> None:
    run_plan(planned_archive, 12 * MB)
    conn = schema.connect(planned_archive.catalog_path)
    try:
        rewind(conn, 9)
        assert schema.migrate(conn) == schema.SCHEMA_VERSION
    finally:
        conn.close()
    kept, counted = _counts(planned_archive)
    assert kept == counted and sum(kept.values()) == 10
