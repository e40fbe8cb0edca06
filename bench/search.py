"""Search latency at 10 M tracks, beside the naive ``ORDER BY rank`` baseline; shuffle speed.

Five kinds of query, 200 each: the most frequent word, two words from one title, a
prefix as typed (1-4 letters of a title word), a rare word, a word with no match.
Ours: ``phonotheca.catalog.search.search`` (rank-key FTS5, ``ORDER BY rowid LIMIT 20``,
tracks fetched). Baseline, same run, same tracks: a default FTS5 table over the same
text, ``ORDER BY rank LIMIT 20`` (bm25 over every match).

Targets (issue 2): p99 <= 5 ms for every kind; shuffle <= 1 ms a pick.

    .venv/bin/python bench/search.py [--tracks N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DEFAULT_WORKDIR,
    percentile,
    phonotheca_cmd,
    run_measured,
    synthetic_catalog,
)
from phonotheca.catalog.search import FTS_TABLE, search, shuffle

BASELINE_TABLE = "naive_fts"


def build_baseline(db: Path, catalog: Path) -> float:
    conn = sqlite3.connect(db)
    conn.execute(f"ATTACH DATABASE '{catalog}' AS cat")
    conn.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
    t0 = time.monotonic()
    conn.execute(
        f"CREATE VIRTUAL TABLE {BASELINE_TABLE} USING fts5(title, artists, album,"
        " tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute(
        f"INSERT INTO {BASELINE_TABLE}(rowid, title, artists, album)"
        " SELECT t.id, t.title, t.artist_credit, coalesce(a.title, '')"
        " FROM cat.tracks t LEFT JOIN cat.albums a ON a.id = t.album_id"
    )
    conn.commit()
    conn.close()
    return time.monotonic() - t0


def make_queries(conn: sqlite3.Connection, rng: random.Random, n: int) -> dict[str, list[str]]:
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, {FTS_TABLE}, 'row')"
    )
    frequent = conn.execute("SELECT term FROM temp.vocab ORDER BY doc DESC LIMIT 1").fetchone()[0]
    rare = [
        t
        for (t,) in conn.execute(
            "SELECT term FROM temp.vocab WHERE doc BETWEEN 1 AND 3 AND length(term) > 3 LIMIT 5000"
        )
    ]
    hi = conn.execute("SELECT max(id) FROM tracks").fetchone()[0]
    titles: list[list[str]] = []
    while len(titles) < 2 * n:
        row = conn.execute(
            "SELECT title FROM tracks WHERE id = ?", (rng.randint(1, hi),)
        ).fetchone()
        words = [w for w in row[0].split() if w.isalpha()]
        if len(words) >= 2:
            titles.append(words)
    two = [" ".join(rng.sample(w, 2)) + " " for w in titles[:n]]
    prefix = []
    for words in titles[n:]:
        w = rng.choice(words)
        prefix.append(w[: rng.randint(1, min(4, len(w)))])
    return {
        "frequent word": [frequent + " "] * n,
        "two words": two,
        "prefix": prefix,
        "rare word": [rng.choice(rare) + " " for _ in range(n)],
        "no match": [f"qzxv{rng.randint(0, 10**9)}" for _ in range(n)],
    }


def timed(fn: object, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--naive-queries",
        type=int,
        default=20,
        help="queries per kind for the baseline (a common word takes seconds there)",
    )
    args = parser.parse_args()
    archive = args.workdir / f"search-{args.tracks}"
    catalog = archive / "catalog.sqlite3"
    if not catalog.exists():
        src = synthetic_catalog(args.workdir, args.tracks)
        run = run_measured(phonotheca_cmd("import", "jsonl", str(src), "--archive", str(archive)))
        print(
            f"  imported {args.tracks:,} tracks in {run.seconds:.0f} s"
            f" ({args.tracks / run.seconds:,.0f} tracks/s, peak RSS {run.peak_rss / 1e9:.2f} GB)",
            flush=True,
        )
    baseline_db = args.workdir / f"search-baseline-{args.tracks}.sqlite3"
    if not baseline_db.exists():
        print(f"  baseline FTS5 built in {build_baseline(baseline_db, catalog):.0f} s", flush=True)

    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    base = sqlite3.connect(f"file:{baseline_db}?mode=ro", uri=True)
    rng = random.Random(7)
    queries = make_queries(conn, rng, args.queries)
    # Warm the caches as a running server's are, with other queries than the timed ones.
    for qs in make_queries(conn, random.Random(8), args.queries).values():
        for q in qs:
            search(conn, q, 20)

    def naive(q: str) -> None:
        from phonotheca.catalog.search import fts_query

        fq = fts_query(q)
        if fq:
            base.execute(
                f"SELECT rowid FROM {BASELINE_TABLE} WHERE {BASELINE_TABLE} MATCH ?"
                " ORDER BY rank LIMIT 20",
                (fq,),
            ).fetchall()

    print(
        f"\nsearch at {args.tracks:,} tracks, ms; {args.queries} queries per kind"
        f" ({args.naive_queries} for the naive baseline)"
    )
    print(f"{'kind':<14} {'ours p50':>9} {'ours p99':>9} {'naive p50':>10} {'naive p99':>10}")
    for kind, qs in queries.items():
        ours = timed(lambda q: search(conn, q, 20), qs)
        theirs = timed(naive, qs[: args.naive_queries])
        print(
            f"{kind:<14} {percentile(ours, 0.5):>9.2f} {percentile(ours, 0.99):>9.2f}"
            f" {percentile(theirs, 0.5):>10.2f} {percentile(theirs, 0.99):>10.2f}",
            flush=True,
        )
    picks = timed(lambda _: shuffle(conn, 1, rng), [""] * 1000)
    print(
        f"\nshuffle: p50 {percentile(picks, 0.5):.3f} ms,"
        f" p99 {percentile(picks, 0.99):.3f} ms a pick"
    )
    print("targets: search p99 <= 5 ms for every kind; shuffle <= 1 ms a pick")
    return 0


if __name__ == "__main__":
    sys.exit(main())
