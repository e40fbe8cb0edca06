"""Import speed and memory: ``phonotheca import jsonl`` of a synthetic catalog, end to end.

Baseline, measured in the same run on the same file: the same tracks as flat rows
(id, title, artists, album, isrc, duration, popularity, listens), decoded beforehand
and not timed, inserted with one ``executemany`` into a bare SQLite table, then an index
on ISRC and an FTS5 rebuild over title, artists and album.

Targets (issue 2): >= 150 k tracks/s and >= 0.8x the baseline at 2 M tracks; peak RSS
<= 1.5 GB, not growing with N (run with --tracks 2000000 --tracks 10000000). Issue 21:
>= 0.8x the floor (below), printed with it.

Floor, also measured in the run: the SQLite work the catalog itself needs, with no
parsing at all. Into a new archive, each table of the finished catalog is copied by one
``INSERT ... SELECT`` (rows in key order, as a table scan gives them: the cheapest way
SQLite can write them), then
the secondary indexes and the search index are built as an import builds them. One
database has one writer, so this runs on one core whatever the number of parsing
processes: an import cannot be faster than ``tracks / floor seconds``.

    .venv/bin/python bench/ingest.py [--tracks N ...] [--workdir DIR] [--workers W]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, phonotheca_cmd, run_measured, synthetic_catalog

BASELINE = r"""
import sqlite3, sys, time, msgspec, zstandard
src, db = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    data = zstandard.ZstdDecompressor().stream_reader(f).read()
dec = msgspec.json.Decoder()
rows = []
for line in data.splitlines():
    r = dec.decode(line)
    rows.append((r["id"], r["title"], " ".join(a["name"] for a in r["artists"]),
                 (r.get("album") or {}).get("title"), r.get("isrc"), r.get("duration_ms"),
                 r.get("popularity"), r.get("listens")))
del data
conn = sqlite3.connect(db)
conn.execute("CREATE TABLE t(id TEXT, title TEXT, artists TEXT, album TEXT, isrc TEXT,"
             " duration_ms INTEGER, popularity INTEGER, listens INTEGER)")
t0 = time.perf_counter()
with conn:
    conn.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?)", rows)
conn.execute("CREATE INDEX t_isrc ON t(isrc)")
conn.execute("CREATE VIRTUAL TABLE f USING fts5(title, artists, album, content='t')")
conn.execute("INSERT INTO f(f) VALUES ('rebuild')")
conn.commit()
print(len(rows), time.perf_counter() - t0)
"""

# The floor: the finished catalog's rows written into a fresh catalog by SQL alone.
FLOOR = r"""
import sqlite3, sys, time
from pathlib import Path
from phonotheca.archive import init_archive
from phonotheca.catalog import schema
from phonotheca.catalog.search import mark_search_stale, rebuild_search
done, fresh = Path(sys.argv[1]), Path(sys.argv[2])
conn = init_archive(fresh).connect()
tables = ["artists", "artist_aliases", "albums", "album_artists", "genres", "album_genres",
          "images", "source_chunks", "tracks", "track_artists", "track_genres", "external_ids"]
with schema.transaction(conn):
    schema.drop_secondary_indexes(conn)
    mark_search_stale(conn)
conn.execute("ATTACH ? AS done", (str(done),))
t0 = time.perf_counter()
with schema.transaction(conn):
    for table in tables:  # generated columns left out: SQLite computes them
        info = conn.execute("SELECT name FROM pragma_table_info(?)", (table,))
        cols = ", ".join(r[0] for r in info)
        source = f"done.{table} NOT INDEXED"  # table order, not a covering index's
        conn.execute(f"INSERT INTO main.{table}({cols}) SELECT {cols} FROM {source}")
t1 = time.perf_counter()
conn.execute("DETACH done")
with schema.transaction(conn):
    schema.ensure_indexes(conn)
t2 = time.perf_counter()
rebuild_search(conn)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def floor_seconds(catalog: Path, workdir: Path) -> tuple[float, float, float, float]:
    """(rows, secondary indexes, search index) seconds of the catalog's own SQLite work,
    and the CPU seconds of the whole run."""
    fresh = workdir / "ingest-floor"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        run = run_measured([sys.executable, "-c", FLOOR, str(catalog), str(fresh)])
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    rows, indexes, search = (float(x) for x in run.stdout.split())
    return rows, indexes, search, run.cpu_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, action="append", help="default: 2,000,000")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=2_000_000,
        help="run the baseline only up to this many tracks (it holds all rows in memory)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip measuring the SQLite floor (see above)"
    )
    args = parser.parse_args()
    sizes = args.tracks or [2_000_000]
    floors: list[str] = []
    print(f"{'tracks':>11} {'phonotheca':>14} {'baseline':>14} {'ratio':>6} {'peak RSS':>9}")
    for n in sizes:
        src = synthetic_catalog(args.workdir, n)
        archive = args.workdir / f"ingest-{n}"
        shutil.rmtree(archive, ignore_errors=True)
        ours = run_measured(
            phonotheca_cmd(
                "import",
                "jsonl",
                str(src),
                "--archive",
                str(archive),
                "--workers",
                str(args.workers),
                "--json",
            )
        )
        rate = n / ours.seconds
        base_txt, ratio_txt = "-", "-"
        if n <= args.baseline_max:
            db = args.workdir / f"baseline-{n}.sqlite3"
            db.unlink(missing_ok=True)
            base = run_measured([sys.executable, "-c", BASELINE, str(src), str(db)])
            rows, seconds = base.stdout.split()
            base_rate = int(rows) / float(seconds)
            base_txt = f"{base_rate:,.0f}/s"
            ratio_txt = f"{rate / base_rate:.2f}x"
            db.unlink(missing_ok=True)
        print(
            f"{n:>11,} {rate:>12,.0f}/s {base_txt:>14} {ratio_txt:>6}"
            f" {ours.peak_rss / 1e9:>7.2f} GB   ({ours.seconds:.1f} s)",
            flush=True,
        )
        if not args.no_floor:
            rows, indexes, search, cpu = floor_seconds(archive / "catalog.sqlite3", args.workdir)
            total = rows + indexes + search
            floors.append(
                f"{n:>11,}: rows {rows:.1f} s + secondary indexes {indexes:.1f} s + search index"
                f" {search:.1f} s = {total:.1f} s on one core: at most {n / total:,.0f} tracks/s;"
                f" import {rate:,.0f}/s = {rate * total / n:.2f}x the floor\n"
                # On a machine shared with other jobs the wall times follow each run's
                # share of the cores; the CPU seconds hardly do.
                f"{'':>13}CPU: import {ours.cpu_seconds:.1f} s (all its processes), floor"
                f" {cpu:.1f} s: {cpu / ours.cpu_seconds:.2f}x"
            )
        shutil.rmtree(archive, ignore_errors=True)
    print(
        "targets: >= 150,000/s, >= 0.80x baseline, >= 0.80x the floor (issue 21),"
        " peak RSS <= 1.5 GB and flat in N"
    )
    if floors:
        print("floor: the catalog's own SQLite work, no parsing (one writer, so one core):")
        print("\n".join(floors))
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    code = main()
    print(f"bench/ingest.py done in {time.monotonic() - t0:.0f} s")
    sys.exit(code)
