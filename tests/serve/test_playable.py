"""PlayableSampler: uniform draws in one index search each, and lists of different tracks
out of uniform draws with repeats."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

from phonotheca.catalog import schema
from phonotheca.config import load_settings
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.playable import DRAW_SQL, PLACES_SQL, PlayableSampler
from tests.schema_rewind import rewind


class Uniform(PlayableSampler):
    """A sampler whose draws are uniform over ``tracks`` (as the real one's are over the
    tracks a server plays), without a server behind it."""

    def __init__(self, tracks: list[int]) -> None:  # no library: draw() is replaced
        self.tracks = tracks
        self.calls = 0

    def draw(self, n: int, rng: random.Random | None = None) -> list[int] | None:
        self.calls += 1
        r = rng or random.Random()
        return [r.choice(self.tracks) for _ in range(n)] if self.tracks else []


def test_a_list_is_full_even_when_the_server_plays_few_tracks() -> None:
    sampler = Uniform(list(range(10)))
    # Five of ten: repeats are likely, and four rounds of draws left ~2 % of lists short.
    short = [
        seed
        for seed in range(2000)
        if len(set(got := sampler.distinct(5, random.Random(seed)) or [])) != 5 or len(got) != 5
    ]
    assert short == []


def test_a_list_longer_than_the_server_plays_holds_all_of_them() -> None:
    sampler = Uniform(list(range(10)))
    for seed in range(200):
        assert sorted(sampler.distinct(25, random.Random(seed)) or []) == list(range(10))


def test_lists_are_uniform() -> None:
    sampler = Uniform(list(range(10)))
    counts = dict.fromkeys(range(10), 0)
    for seed in range(3000):
        for t in sampler.distinct(3, random.Random(seed)) or []:
            counts[t] += 1
    expected = 3000 * 3 / 10
    assert all(abs(c - expected) < 6 * expected**0.5 for c in counts.values()), counts


def test_nothing_playable_ends_at_once() -> None:
    sampler = Uniform([])
    assert sampler.distinct(5, random.Random(1)) == []
    assert sampler.calls == 1


# -- the real sampler over a built archive ------------------------------------------------


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def test_draws_are_index_searches_not_scans(built_archive: Path) -> None:
    conn = schema.connect(built_archive / "catalog.sqlite3", readonly=True)
    try:
        (name,) = conn.execute("SELECT collection FROM ledger WHERE status = 'packed'").fetchone()
        for sql, params in ((DRAW_SQL, (name, 3)), (PLACES_SQL, (name,))):
            plan = _plan(conn, sql, params)
            assert any("SEARCH ledger USING" in step and "ledger_position" in step for step in plan)
            assert not any(step.startswith("SCAN") for step in plan), plan
    finally:
        conn.close()


def test_build_numbers_each_collections_tracks_densely(built_archive: Path) -> None:
    conn = schema.connect(built_archive / "catalog.sqlite3", readonly=True)
    try:
        rows = conn.execute(
            "SELECT collection, position FROM ledger WHERE collection IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    by_collection: dict[str, list[int]] = {}
    for collection, position in rows:
        by_collection.setdefault(collection, []).append(position)
    assert by_collection
    for positions in by_collection.values():
        assert sorted(positions) == list(range(len(positions)))


def test_the_v6_migration_numbers_collections_in_track_order(
    built_archive: Path, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.sqlite3"
    shutil.copyfile(built_archive / "catalog.sqlite3", path)
    conn = schema.connect(path)
    try:
        rewind(conn, 5)  # the catalog as schema v5 had it: no position column, no index
        assert schema.migrate(conn) == schema.SCHEMA_VERSION
        rows = conn.execute(
            "SELECT collection, position, track_id FROM ledger WHERE collection IS NOT NULL"
            " ORDER BY collection, track_id"
        ).fetchall()
        assert not conn.execute(
            "SELECT 1 FROM ledger WHERE collection IS NULL AND position IS NOT NULL"
        ).fetchone()
    finally:
        conn.close()
    expected: dict[str, int] = {}
    for collection, position, _ in rows:
        assert position == expected.get(collection, 0)
        expected[collection] = position + 1


def test_the_real_sampler_is_uniform_over_the_playable_tracks(built_archive: Path) -> None:
    ctx = ServeContext(settings=load_settings(built_archive), roots=[built_archive])
    create_app(ctx)
    sampler: PlayableSampler = ctx.media.sampler
    playable = {
        int(row[0])
        for row in ctx.catalog().execute("SELECT track_id FROM ledger WHERE status = 'packed'")
    }
    assert len(playable) >= 5
    rng = random.Random(7)
    counts = dict.fromkeys(playable, 0)
    draws = 300 * len(playable)
    for _ in range(draws // 100):
        for t in sampler.draw(100, rng) or []:
            counts[t] += 1
    expected = draws / len(playable)
    assert all(abs(c - expected) < 6 * expected**0.5 for c in counts.values()), counts
