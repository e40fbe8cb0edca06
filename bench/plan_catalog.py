"""Planning a catalog end to end: read the tracks, optimise, write the ledger.

Uses the catalog that bench/search.py builds (10 M synthetic tracks by default) and
gives a third of its tracks a source file (an Ogg Vorbis of 160 kbit/s for its duration),
as a scan of local files would. Prints the time of each phase; the optimiser alone, on
the same arrays, is the reference the rest is measured against.

Target (issue 4): <= 60 s for 10 M tracks, end to end.

    .venv/bin/python bench/plan_catalog.py [--tracks N] [--budget 30TB]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR
from phonotheca.catalog import schema
from phonotheca.plan.ledger import read_tracks, write_ledger
from phonotheca.plan.optimizer import PlanOptions, plan_tiers
from phonotheca.plan.sizes import format_size, parse_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--budget", default="10TB")
    args = parser.parse_args()
    catalog = args.workdir / f"search-{args.tracks}" / "catalog.sqlite3"
    if not catalog.exists():
        raise SystemExit(f"{catalog} is missing: run bench/search.py --tracks {args.tracks} first")
    conn = schema.connect(catalog)
    schema.migrate(conn)
    if conn.execute("SELECT count(*) FROM source_files").fetchone()[0] == 0:
        t0 = time.monotonic()
        with schema.transaction(conn):
            conn.execute(
                "INSERT INTO source_files(track_id, path, size, mtime_ns, codec, lossless, bitrate)"
                " SELECT id, '/bench/' || id || '.ogg', coalesce(duration_ms, 200000) * 20,"
                " 0, 'vorbis', 0, 160000 FROM tracks WHERE id % 3 = 0"
            )
        print(f"  gave a third of the tracks a source file in {time.monotonic() - t0:.0f} s")
    options = PlanOptions(budget=parse_size(args.budget))
    t0 = time.monotonic()
    tracks = read_tracks(conn)
    t1 = time.monotonic()
    result = plan_tiers(tracks.arrays, options)
    t2 = time.monotonic()
    plan_id, rows = write_ledger(conn, tracks, result, {"budget": options.budget})
    t3 = time.monotonic()
    again = time.monotonic()
    plan_tiers(tracks.arrays, options)
    alone = time.monotonic() - again
    total = t3 - t0
    print(f"\nplan of {len(tracks.track_id):,} tracks, budget {format_size(options.budget)}:")
    print(
        f"  read {t1 - t0:.1f} s, optimise {t2 - t1:.1f} s, write {rows:,} ledger rows"
        f" {t3 - t2:.1f} s: {total:.1f} s end to end (target <= 60 s)"
    )
    print(f"  optimiser alone on the same arrays (reference): {alone:.1f} s")
    print(
        f"  covered {result.totals.listens_share:.2%} of listens with"
        f" {format_size(result.totals.used_bytes)}"
    )
    check = sqlite3.connect(catalog)
    n = check.execute("SELECT count(*) FROM ledger WHERE plan_id = ?", (plan_id,)).fetchone()[0]
    assert n == rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
