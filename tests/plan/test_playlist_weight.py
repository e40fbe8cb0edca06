"""``plan --playlist-weight``: public playlists weigh the tracks they hold."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca.archive import Archive
from phonotheca.cli import main
from phonotheca.plan.ledger import _PLAYLISTS_SQL, read_tracks
from phonotheca.plan.optimizer import PlanOptions, TrackArrays, plan_tiers
from tests.plan.test_ledger import MB, ledger, planned_archive, run_plan
from tests.sources.test_playlists import load_playlists

__all__ = ["planned_archive"]  # the fixture, used by name


def add_playlists(archive: Archive, tmp_path: Path) -> None:
    """Track 7 (3,000 listens) is in two playlists (twice in one of them), track 5 in one."""
    lines = []
    for n, isrcs in enumerate([(7, 7, 5), (7,)]):
        lines.append(
            json.dumps(
                {
                    "type": "playlist",
                    "id": f"pl:test:{n}",
                    "title": f"List {n}",
                    "track": [{"identifier": f"isrc:USABC01{i:05d}"} for i in isrcs]
                    + [{"title": "not in the catalog"}],
                }
            )
        )
    path = tmp_path / "lists.jsonl"
    path.write_text("\n".join(lines) + "\n")
    load_playlists(archive, path)


def plans(archive: Archive) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return conn.execute("SELECT budget, settings, report FROM plans ORDER BY id").fetchall()
    finally:
        conn.close()


def test_weight_zero_plans_as_without_playlists(planned_archive: Archive, tmp_path: Path) -> None:
    options = {"budget": 6 * MB, "exclude_tiers": frozenset({"opus"})}
    run_plan(planned_archive, **options)  # type: ignore[arg-type]
    before = ledger(planned_archive)
    add_playlists(planned_archive, tmp_path)
    run_plan(planned_archive, **options)  # type: ignore[arg-type]
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--budget",
            "6MB",
            "--exclude-tier",
            "opus",
            "--archive",
            str(planned_archive.root),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "playlists" not in result.output
    assert ledger(planned_archive) == before
    first, second, third = plans(planned_archive)
    assert first == second == third


def test_a_track_in_playlists_is_kept_before_a_more_listened_one(
    planned_archive: Archive, tmp_path: Path
) -> None:
    add_playlists(planned_archive, tmp_path)
    args = ["plan", "--budget", "6MB", "--exclude-tier", "opus"]
    args += ["--archive", str(planned_archive.root)]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0, plain.output
    # The recording of tracks 1 and 2 (17,000 listens in 6 MB) is worth most a byte.
    assert ledger(planned_archive)["2"][:2] == ("planned", "original")
    assert ledger(planned_archive)["7"][:2] == ("skipped_budget", "metadata")

    # Two playlists at 8,000 listens each: track 7's 3,000 + 16,000 in 5 MB pass it.
    weighed = CliRunner().invoke(main, [*args, "--playlist-weight", "8000"])
    assert weighed.exit_code == 0, weighed.output
    assert "2 tracks weighed: +24,000 listens (8000 a playlist)" in weighed.output
    assert all(len(line) <= 80 for line in weighed.output.splitlines() if "weighed" in line)
    rows = ledger(planned_archive)
    assert rows["7"][:2] == ("planned", "original")
    assert rows["2"][:2] == ("skipped_budget", "metadata")
    report = json.loads(str(plans(planned_archive)[-1][1]))
    assert report["playlist_weight"] == 8000

    as_json = CliRunner().invoke(main, [*args, "--playlist-weight", "8000", "--json"])
    data = json.loads(as_json.output)
    assert data["playlists"] == {"weight": 8000.0, "tracks": 2, "listens": 24000.0}


def test_playlist_counts_are_read_from_the_entries_index(planned_archive: Archive) -> None:
    conn = planned_archive.connect(readonly=True)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + _PLAYLISTS_SQL).fetchall()
        tracks = read_tracks(conn, 1.0)
    finally:
        conn.close()
    details = " ".join(str(row[3]) for row in plan)
    assert "COVERING INDEX playlist_entries_track" in details and "TEMP B-TREE" not in details
    assert tracks.arrays.bonus_index is not None and len(tracks.arrays.bonus_index) == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 50),  # size in MB
            st.one_of(st.just(-1), st.integers(0, 10_000)),  # listens, -1 unknown
            st.integers(0, 100),  # popularity
            st.integers(0, 5),  # playlists
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 400),
    st.floats(0, 5000),
)
def test_bonus_listens_plan_as_listens_added_to_the_tracks(
    items: list[tuple[int, int, int, int]], budget_mb: int, weight: float
) -> None:
    size = np.array([s * MB for s, *_ in items], dtype=np.uint32)
    duration = np.full(len(items), 200.0, dtype=np.float32)
    listens = np.array([n for _, n, _, _ in items], dtype=np.float32)
    popularity = np.array([p for *_, p, _ in items], dtype=np.uint8)
    held = np.array([k for *_, k in items])
    index = np.flatnonzero(held)
    bonus = (held[index] * weight).astype(np.float32)
    options = PlanOptions(budget=budget_mb * MB)
    sparse = plan_tiers(
        TrackArrays(size, duration, listens, popularity, bonus_index=index, bonus_listens=bonus),
        options,
    )
    # The obviously right twin: the same listens, estimated first, with the bonus added.
    known = np.where(listens >= 0, listens, (10.0 ** (popularity / 20.0) - 1.0)).astype(np.float32)
    dense = known.copy()
    dense[index] += bonus
    twin = plan_tiers(TrackArrays(size, duration, dense, popularity), options)
    assert np.array_equal(sparse.tier, twin.tier)
    assert sparse.totals.value == twin.totals.value
