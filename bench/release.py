"""Size of the metadata release beside ``export jsonl`` at zstd -19, and the time from
download complete to servable.

A synthetic catalog of N tracks is imported once (cached under the work directory) and
published (``publish --metadata-only``). Measured in the same run:

- release bytes: the released catalog ``catalog-release.sqlite3.zst`` (and the whole
  payload, with ``tracks.locator`` and ``FORMAT.md``), and where they go: each table,
  and each stream of the source records' columns, compressed on its own at the
  release's level and window;
- baseline: ``export jsonl`` of the same catalog, compressed by the ``zstd`` program at
  ``-19`` (``-T2``), and, for a like-for-like figure, at the release's own level and
  window (``-9 --long=27``);
- seconds from download complete to servable: ``DIR/catalog.sqlite3`` derived from the
  payload as a mirror does it (decompress, copy tables, frame source records, build the
  secondary indexes and the search indexes); then the derived catalog's export is checked
  byte for byte against the original's.

Target (issue 21): release <= 1.25x the export at zstd -19.

    .venv/bin/python bench/release.py [--tracks N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, phonotheca_cmd, run_measured, synthetic_catalog
from phonotheca.catalog.release_db import COLUMNS_TABLE
from phonotheca.torrents.metadata import LEVEL, WINDOW_LOG

TARGET = 1.25
UNPACK = """
import sys, time
from pathlib import Path
from phonotheca.mirror.catalog import unpack_catalog
from phonotheca.mirror.state import MirrorDir

def progress(step, done, total):
    if done is None or done == 0:
        print(f"    {time.monotonic() - t0:7.1f} s  {step}", flush=True)
t0 = time.monotonic()
unpack_catalog(MirrorDir(Path(sys.argv[1])), sys.argv[2], progress)
print(time.monotonic() - t0)
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def compressed(data: bytes) -> int:
    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL, window_log=WINDOW_LOG, enable_ldm=True, threads=2
    )
    return len(zstandard.ZstdCompressor(compression_params=params).compress(data))


def shares(member: Path, work: Path) -> None:
    """Each table of more than one page (its SQLite bytes, and its rows as text
    compressed) and each stream of the source records' columns, compressed on its own."""
    db = work / "release-shares.sqlite3"
    with open(member, "rb") as src, open(db, "wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    conn = sqlite3.connect(db)
    try:
        parts: dict[str, tuple[int, bytes]] = {}
        for name, size in conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat WHERE name NOT LIKE 'sqlite_%'"
            f" AND name != '{COLUMNS_TABLE}' GROUP BY name HAVING count(*) > 1 ORDER BY name"
        ):
            rows = conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
            parts[f"table {name}"] = (int(size), b"\n".join(repr(r).encode() for r in rows))
        fields: dict[str, list[bytes]] = {}
        for field, data in conn.execute(f"SELECT field, data FROM {COLUMNS_TABLE} ORDER BY id"):
            fields.setdefault(str(field), []).append(bytes(data))
        for field, blobs in fields.items():
            data = b"".join(blobs)
            parts[f"records {field}"] = (len(data), data)
    finally:
        conn.close()
        db.unlink()
    print(f"  where the bytes go (each compressed alone, -{LEVEL} --long={WINDOW_LOG}):")
    for name, (size, data) in parts.items():
        print(f"    {name[:28]:<28} {size:>14,} B raw {compressed(data):>13,} B", flush=True)


def export(catalog_dir: Path, out: Path) -> None:
    out.unlink(missing_ok=True)
    run_measured(phonotheca_cmd("export", "jsonl", str(out), "--archive", str(catalog_dir)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=2_000_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    n = args.tracks
    src = synthetic_catalog(args.workdir, n)
    archive = args.workdir / f"release-{n}"
    done = archive / "imported"  # written once the import finished: the cache is whole
    if not done.exists():
        shutil.rmtree(archive, ignore_errors=True)
        t0 = time.monotonic()
        run_measured(phonotheca_cmd("import", "jsonl", str(src), "--archive", str(archive)))
        print(f"  imported {n:,} tracks in {time.monotonic() - t0:.1f} s", flush=True)
        done.touch()
    # The release is canonical: publishing the cached catalog again gives the same bytes,
    # so a release already made for it is reused ("unchanged").
    published = run_measured(
        phonotheca_cmd("publish", "--metadata-only", "--archive", str(archive))
    )
    print(f"  {published.stdout.splitlines()[0]} ({published.seconds:.1f} s)", flush=True)
    payloads = [p for p in (archive / "torrents").iterdir() if p.is_dir()]
    payload = max(payloads, key=lambda p: p.name)
    member = payload / "catalog-release.sqlite3.zst"
    release_bytes = member.stat().st_size
    payload_bytes = sum(p.stat().st_size for p in payload.iterdir())

    print(f"tracks                         {n:>15,}")
    print(
        f"release: catalog member        {release_bytes:>15,} B  ({release_bytes / n:.1f} B/track)"
    )
    print(f"release: whole payload         {payload_bytes:>15,} B", flush=True)
    shares(member, args.workdir)

    exported = args.workdir / f"release-{n}-export.jsonl"
    export(archive, exported)
    print(f"export jsonl (raw)             {exported.stat().st_size:>15,} B", flush=True)

    # Figures are printed as they come: zstd -19 of the export comes last (the slowest).
    mirror = args.workdir / f"release-{n}-mirror"
    shutil.rmtree(mirror, ignore_errors=True)
    (mirror / "torrents").mkdir(parents=True)
    shutil.copytree(payload, mirror / "torrents" / payload.name)
    unpack = run_measured([sys.executable, "-c", UNPACK, str(mirror), payload.name])
    *steps, last = unpack.stdout.splitlines()
    print(
        f"download complete -> servable  {float(last):>13.1f} s"
        f"  (peak RSS {unpack.peak_rss / 1e9:.2f} GB)"
    )
    print("  steps (seconds since download complete):")
    print("\n".join(steps))
    again = args.workdir / f"release-{n}-export-again.jsonl"
    export(mirror, again)
    same = sha256(again) == sha256(exported)
    again.unlink()
    shutil.rmtree(mirror, ignore_errors=True)
    print(f"export of the mirror's catalog {'identical' if same else 'DIFFERENT':>15}", flush=True)

    baseline = exported.with_name(exported.name + ".zst")
    # The export at the release's own level and window, for a like-for-like ratio.
    subprocess.run(
        ["zstd", "-q", "-f", f"-{LEVEL}", f"--long={WINDOW_LOG}", "-T2", str(exported)],
        check=True,
    )
    same_level = baseline.stat().st_size
    print(
        f"export jsonl, zstd -{LEVEL} --long   {same_level:>15,} B"
        f"  (ratio {release_bytes / same_level:.3f})",
        flush=True,
    )
    t0 = time.monotonic()
    subprocess.run(["zstd", "-q", "-f", "-19", "-T2", str(exported)], check=True)
    baseline_seconds = time.monotonic() - t0
    baseline_bytes = baseline.stat().st_size
    baseline.unlink()
    exported.unlink()
    ratio = release_bytes / baseline_bytes
    print(f"export jsonl, zstd -19 -T2     {baseline_bytes:>15,} B  ({baseline_seconds:.0f} s)")
    print(f"ratio release / export -19     {ratio:>15.3f}  (target <= {TARGET})")
    return 0 if same and ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
