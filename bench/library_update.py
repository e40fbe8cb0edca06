"""The library file after an import: changed in place, beside a full build, same run.

For each size (default 100,000 and 1,000,000 tracks; ``--tracks`` for others) the
archive of ``serve_scale.py`` is prepared (a synthetic catalog, a tenth of its tracks
held, its library file; cached under the work directory). Then, in this process:

- a full build of the library file (into a scratch file: what every import cost before);
- ``import jsonl`` of 1,000 new tracks (new albums, artists and genres; their titles
  fall all over every sort order), the library file changed in place at its end;
- ``import jsonl`` of 1,000 known tracks changed (another album, so another year and
  genres, another artist, another popularity), likewise.

It prints each import's time and, within it, the library file's update, beside the full
build's (the one that made the cached archive's file, when it was not current); and
checks that the update was in place (the file kept its inode) and, up to 1 M tracks,
that the lists then read as a full build's (their lengths and a page deep in each). A
run adds 1,000 tracks to the cached catalog (new ids each run). For 10 M, copy another
bench's cached ``serve-scale-10000000/catalog.sqlite3`` into the work directory first.

    .venv/bin/python bench/library_update.py [--tracks 100000 1000000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zstandard
from click.testing import CliRunner

from common import DEFAULT_WORKDIR, synthetic_catalog
from phonotheca.catalog import library, schema
from phonotheca.catalog import library_rank as rank
from phonotheca.cli import main as cli
from phonotheca.synth.catalog import write_catalog
from serve_scale import load, prepared_root

CHANGED = 1000
CHECKED = 1_000_000
"""Up to this size, the lists after the imports are compared with a full build's."""


def _records(workdir: Path, tracks: int, seed: int) -> list[dict[str, Any]]:
    path = workdir / f"library-update-{tracks}-{seed}.jsonl"
    if not path.exists():
        write_catalog(path, tracks, seed)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _first(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` records of a ``.jsonl.zst`` file."""
    out = []
    with path.open("rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def _timed_import(root: Path, records: list[dict[str, Any]], name: str) -> tuple[float, float]:
    """(seconds of ``import jsonl`` of ``records``, of its library file update)."""
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    spent = [0.0]
    refresh = library.refresh

    def timed(*args: Any, **kwargs: Any) -> bool:
        t0 = time.monotonic()
        try:
            return refresh(*args, **kwargs)
        finally:
            spent[0] += time.monotonic() - t0

    library.refresh = timed  # type: ignore[assignment]
    try:
        t0 = time.monotonic()
        result = CliRunner().invoke(cli, ["import", "jsonl", "--archive", str(root), str(path)])
        seconds = time.monotonic() - t0
    finally:
        library.refresh = refresh  # type: ignore[assignment]
        path.unlink()
    if result.exit_code != 0:
        raise SystemExit(f"import of {name} failed: {result.output}")
    return seconds, spent[0]


def _lists(path: Path, catalog: Path) -> list[tuple[str, int, int, list[int]]]:
    """Each list's length and its page of 20 at two thirds of it."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("ATTACH ? AS c", (f"{catalog.resolve().as_uri()}?mode=ro",))
    out = []
    try:
        for order in library.ORDERS:
            for lib_, kind in conn.execute(
                "SELECT DISTINCT lib, kind FROM nodes WHERE what = ?", (order.what,)
            ).fetchall():
                n = rank.total(conn, order, lib_, kind)
                deep = rank.page(conn, order, lib_, kind, 2 * n // 3, 20)
                out.append((order.table, lib_, kind, [n, *deep]))
    finally:
        conn.close()
    return sorted(out)


def run(workdir: Path, tracks: int) -> tuple[float, list[tuple[str, float, float]], int]:
    """(full build seconds, [(change, import seconds, library update seconds)], tracks)."""
    builds: list[float] = []
    build = library.build

    def timed(*args: Any, **kwargs: Any) -> str:
        t0 = time.monotonic()
        stamp = build(*args, **kwargs)
        builds.append(time.monotonic() - t0)
        return stamp

    library.build = timed  # type: ignore[assignment]
    try:
        root, _ = prepared_root(workdir, tracks)  # the file made in full if it was not current
    finally:
        library.build = build  # type: ignore[assignment]
    catalog = root / "catalog.sqlite3"
    conn = schema.connect(catalog, readonly=True)
    try:
        held = library.held_collections(conn, root)
        largest = int(conn.execute("SELECT max(id) FROM tracks").fetchone()[0])
    finally:
        conn.close()
    scratch = root / "library-full.sqlite3"
    if not builds:
        t0 = time.monotonic()
        library.build(catalog, scratch, held)
        builds.append(time.monotonic() - t0)
    full = builds[-1]
    out = root / library.LIBRARY_FILE
    inode = out.stat().st_ino
    tag = f"inc{int(time.time())}"
    fresh = json.loads(
        json.dumps(_records(workdir, CHANGED, 2), ensure_ascii=False).replace('"syn:', f'"{tag}:')
    )
    base = _first(synthetic_catalog(workdir, tracks), 2 * CHANGED)
    moved = []
    for i in range(CHANGED):
        record = dict(base[i])
        record["album"] = base[(i + 700) % len(base)]["album"]
        record["artists"] = base[(i + 300) % len(base)]["artists"]
        record["popularity"] = (int(record.get("popularity") or 0) + 37) % 101
        record["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        moved.append(record)
    changes = []
    for name, records in (("new", fresh), ("changed", moved)):
        seconds, update = _timed_import(root, records, f"{tag}-{name}")
        if out.stat().st_ino != inode:
            raise SystemExit(f"{out}: made again, not changed in place")
        changes.append((name, seconds, update))
    if tracks <= CHECKED:
        library.build(catalog, scratch, held)
        if _lists(out, catalog) != _lists(scratch, catalog):
            raise SystemExit(f"{out}: its lists differ from a full build's")
    scratch.unlink(missing_ok=True)
    return full, changes, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    rows = []
    for tracks in args.tracks:
        print(f"{tracks:,} tracks:", flush=True)
        full, changes, largest = run(args.workdir, tracks)
        for name, seconds, update in changes:
            rows.append((largest, name, seconds, update, full))
    print()
    print(f"{'catalog':>11}  {'import':<16} {'import s':>9} {'update s':>9} {'full s':>8} {'x':>6}")
    for largest, name, seconds, update, full in rows:
        label = f"{CHANGED:,} {name}"
        ratio = full / update if update else float("inf")
        print(
            f"{largest:>11,}  {label:<16} {seconds:>9.2f} {update:>9.2f} {full:>8.1f} {ratio:>6.0f}"
        )
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
