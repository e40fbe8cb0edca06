"""The tree of counts over a list's rows: after any mix of inserts and deletes, in any
place, every position reads the row a sorted list has there, with small blocks and
nodes so that cuts, new levels and emptied nodes all happen."""

from __future__ import annotations

import random
import sqlite3

import pytest

from phonotheca.catalog import library
from phonotheca.catalog import library_rank as rank

ORDER = library.SONGS
LIB, KIND = 2, 1


def _conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.isolation_level = None
    conn.executescript(library._DDL)
    return conn


def _check(conn: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
    rows = sorted(rows)
    assert rank.total(conn, ORDER, LIB, KIND) == len(rows)
    for r, row in enumerate(rows):
        assert rank.row_at(conn, ORDER, LIB, KIND, r) == row
    assert rank.row_at(conn, ORDER, LIB, KIND, len(rows)) is None
    for key in {k for k, _ in rows} | {-1, 10**6}:
        first = next((i for i, (k, _) in enumerate(rows) if k >= key), len(rows))
        assert rank.rank_of_key(conn, ORDER, LIB, KIND, key) == first
    if rows:
        middle = len(rows) // 2
        assert (
            rank.page(conn, ORDER, LIB, KIND, middle, 5)
            == [t for _, t in rows][middle : middle + 5]
        )
        assert (
            rank.page(conn, ORDER, LIB, KIND, middle, 5, descending=True)
            == ([t for _, t in rows][max(0, middle - 4) : middle + 1][::-1])
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_inserts_and_deletes_keep_every_position(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rank, "BLOCK", 3)
    monkeypatch.setattr(rank, "FANOUT", 2)
    rng = random.Random(seed)
    conn = _conn()
    rows = sorted({(rng.randrange(50), rng.randrange(10**5)) for _ in range(150)})
    source = " UNION ALL ".join(f"SELECT {k} AS key, {t} AS track_id" for k, t in rows)
    library.insert_rows(conn, ORDER, LIB, KIND, source, full=True)
    rank.number(conn, ORDER, LIB, [KIND])
    _check(conn, rows)
    for step in range(25):
        rank.begin(conn)
        gone = rng.sample(rows, min(len(rows), rng.randrange(0, 40)))
        if step == 20:
            gone = list(rows)  # everything goes, then comes back in another shape
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS ids(id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp.ids")
        conn.executemany("INSERT OR IGNORE INTO temp.ids VALUES(?)", [(t,) for _, t in gone])
        rank.touch_rows(conn, ORDER, "SELECT id FROM temp.ids")
        conn.execute("DELETE FROM song_order WHERE track_id IN (SELECT id FROM temp.ids)")
        rows = [r for r in rows if r[1] not in {t for _, t in gone}]
        # new rows in a run (one place) or anywhere, before and after all others
        taken = {t for _, t in rows}
        if step % 3 == 0:
            key = rng.randrange(50)
            new = [(key, t) for t in rng.sample(range(10**5, 2 * 10**5), 30)]
        else:
            new = [(rng.randrange(-5, 60), rng.randrange(2 * 10**5, 3 * 10**5)) for _ in range(30)]
        new = [r for r in dict((t, (k, t)) for k, t in new).values() if r[1] not in taken]
        conn.executemany(
            "INSERT INTO song_order VALUES(?, ?, ?, ?, NULL, NULL)",
            [(LIB, KIND, k, t) for k, t in new],
        )
        rank.place(conn, ORDER, LIB, KIND)
        rank.settle(conn, [ORDER])
        rows = sorted(rows + new)
        _check(conn, rows)
    levels = conn.execute("SELECT max(level) FROM nodes").fetchone()[0]
    assert levels >= 4  # the tree grew levels as it went
