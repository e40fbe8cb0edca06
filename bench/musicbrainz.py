"""Import speed of MusicBrainz release documents: ``phonotheca import musicbrainz``, end to end.

Input: copies of the real fixtures (The Dark Side of the Moon, 10 tracks and 6 artist
aliases; a 2-disc single, 7 tracks), one compact document a line as in ``mbdump/release``.
Each copy gets new release, release-group, track and recording ids; the artist ids are
drawn from a pool of 1,000 (artists recur across releases). The file is written once,
uncompressed (a dump is large, so the import runs in bulk mode, as on a real dump).

Baseline, same run, same file: decoding every document with ``msgspec.json.decode`` into
Python objects in one process, nothing else (the floor of any JSON importer on one core).

Target (issue 3): >= 5,000 releases/s. The machine is shared with other benchmarks: rates
vary from run to run, so the CPU time of the import's processes is printed too, and the
rate per CPU-second of a one-process import (``--workers 0``) is what does not depend on
the load.

    .venv/bin/python bench/musicbrainz.py [--releases N] [--workdir DIR] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, REPO, phonotheca_cmd, run_measured

FIXTURES = REPO / "tests" / "data" / "musicbrainz"
ARTISTS = {"83d91898-7763-47d7-b03b-b92132375c47"}  # Pink Floyd: drawn from a pool
ARTIST_POOL = 1000
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

BASELINE = r"""
import sys, time, msgspec
t0 = time.perf_counter()
n = tracks = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        doc = msgspec.json.decode(line)
        n += 1
        tracks += sum(len(m.get("tracks") or ()) for m in doc.get("media") or ())
print(n, tracks, time.perf_counter() - t0)
"""


def _template(name: str) -> tuple[list[bytes], list[bytes]]:
    """A fixture as compact JSON split around its UUIDs: (text parts, the UUIDs)."""
    data = json.dumps(json.loads((FIXTURES / name).read_text()), ensure_ascii=False).encode()
    parts: list[bytes] = []
    ids: list[bytes] = []
    last = 0
    for m in _UUID.finditer(data):
        parts.append(data[last : m.start()])
        ids.append(m.group())
        last = m.end()
    parts.append(data[last:])
    return parts, ids


def write_releases(path: Path, releases: int) -> int:
    """Write ``releases`` documents (alternating the two fixtures); return their tracks."""
    templates = [_template("release.json"), _template("release_multidisc.json")]
    tracks_per = [10, 7]
    tmp = path.with_name(path.name + ".partial")
    tracks = 0
    with tmp.open("wb") as f:
        buf: list[bytes] = []
        for copy in range(releases):
            parts, ids = templates[copy % 2]
            tracks += tracks_per[copy % 2]
            # A UUID's last 12 hex digits become the copy's number: new ids per copy.
            suffix = b"%012x" % copy
            pooled = b"%012x" % (copy % ARTIST_POOL)
            out = [parts[0]]
            for uuid, part in zip(ids, parts[1:], strict=True):
                tail = pooled if uuid.decode() in ARTISTS else suffix
                out += (uuid[:24], tail, part)
            buf.append(b"".join(out))
            if len(buf) == 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    tmp.replace(path)
    return tracks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"mb-releases-{args.releases}.jsonl"
    t0 = time.monotonic()
    tracks = write_releases(src, args.releases)
    size = src.stat().st_size
    print(
        f"  generated {src.name}: {args.releases:,} releases, {tracks:,} tracks,"
        f" {size / 1e6:,.0f} MB in {time.monotonic() - t0:.1f} s",
        flush=True,
    )
    print(
        f"{'':>26} {'releases/s':>11} {'tracks/s':>10} {'seconds':>8} {'CPU s':>7}"
        f" {'releases/CPU-s':>15} {'peak RSS':>9}"
    )
    for workers in (args.workers, 0):
        archive = args.workdir / f"mb-import-{args.releases}"
        shutil.rmtree(archive, ignore_errors=True)
        cmd = phonotheca_cmd(
            "import",
            "musicbrainz",
            str(src),
            "--archive",
            str(archive),
            "--workers",
            str(workers),
            "--json",
        )
        run = run_measured(cmd)
        wall, cpu, rss = run.seconds, run.cpu_seconds, run.peak_rss
        summary = json.loads(run.stdout)
        assert summary["loaded"] == args.releases and summary["tracks"] == tracks, summary
        label = f"import, --workers {workers}"
        print(
            f"{label:>26} {args.releases / wall:>11,.0f} {tracks / wall:>10,.0f} {wall:>8.1f}"
            f" {cpu:>7.1f} {args.releases / cpu:>15,.0f}"
            + (f" {rss / 1e9:>7.2f} GB" if workers == args.workers else "")
        )
        shutil.rmtree(archive, ignore_errors=True)
    base = run_measured([sys.executable, "-c", BASELINE, str(src)])
    base_cpu = base.cpu_seconds
    n, _, seconds = base.stdout.split()
    print(
        f"{'baseline: decode only':>26} {int(n) / float(seconds):>11,.0f}"
        f" {tracks / float(seconds):>10,.0f} {float(seconds):>8.1f} {base_cpu:>7.1f}"
        f" {int(n) / float(seconds):>15,.0f}"
    )
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"target: >= 5,000 releases/s; load average at the end {load} (shared machine)")
    src.unlink()
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    code = main()
    print(f"bench/musicbrainz.py done in {time.monotonic() - t0:.0f} s")
    sys.exit(code)
