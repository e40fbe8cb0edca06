"""Build a track locator of N synthetic entries and measure what one lookup costs.

    .venv/bin/python bench/locator.py                      # 100 M entries
    .venv/bin/python bench/locator.py --entries 10000000   # 10 M
    .venv/bin/python bench/locator.py --entries 1000000 --http
    .venv/bin/python bench/locator.py --entries 1000000 --from-catalog 3000000

Entries are generated in sorted order (MusicBrainz-style ids, ``mb:track:<uuid>``, the
longest common form; 2,800 collections of 25 volumes; random sha256), written with
``write_locator``, then looked up: ``--lookups`` present ids and as many absent ones, each
on a fresh reader (the first lookup: footer and top index, a leaf page, a block), on a
fresh reader given the top index as ``torrents.json`` carries it (a leaf page, a block),
then on one reader kept open (top index cached). Prints build time, file size, peak
memory and the reads and bytes per lookup beside the target (at most 2 reads and 128 KiB:
with the top index cached, or given by the listing) and beside the baseline: the old
``fetch``, which read every collection's ``index.jsonl`` (N index lines) to find a track.
``--http`` also looks up through ``serve-files`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from bench.common import DEFAULT_WORKDIR

from phonotheca.build.index import IndexEntry
from phonotheca.plan.sizes import format_size
from phonotheca.torrents.locator import (
    LOCATOR_FILE,
    TRACK,
    LocatorEntry,
    write_locator,
)
from phonotheca.torrents.locator_read import FileSource, HttpSource, Locator, RangeSource

COLLECTIONS = 2800
VOLUMES = 25
TARGET_READS = 2
TARGET_BYTES = 128 * 1024


def track_id(i: int, n: int) -> str:
    """The i-th of n ids, in sorted order: a UUID spread evenly over 128 bits."""
    h = f"{i * ((1 << 128) // n):032x}"
    return f"mb:track:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def entries(n: int, seed: int = 1) -> Iterator[LocatorEntry]:
    """Sorted entries, drawn in batches with NumPy (the generator must not be the bench)."""
    rng = np.random.default_rng(seed)
    names = [f"bench_pop-050-100_{c + 1:04d}" for c in range(COLLECTIONS)]
    step = (1 << 128) // max(n, 1)
    batch = 100_000
    for start in range(0, n, batch):
        count = min(batch, n - start)
        digests = rng.bytes(32 * count)
        columns = zip(
            rng.integers(0, COLLECTIONS, count).tolist(),
            (rng.integers(1, VOLUMES + 1, count)).tolist(),
            rng.integers(0, 1 << 32, count).tolist(),
            rng.integers(1_000_000, 8_000_000, count).tolist(),
            strict=True,
        )
        for k, (c, volume, offset, length) in enumerate(columns):
            h = f"{(start + k) * step:032x}"
            yield LocatorEntry(
                f"mb:track:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                TRACK,
                names[c],
                volume,
                offset,
                length,
                digests[32 * k : 32 * k + 32],
                "opus",
            )


def baseline_line_bytes() -> int:
    """Length of a typical index.jsonl line: what the old path read per track."""
    import msgspec

    line = IndexEntry(
        id=track_id(12345, 10**8),
        volume="bench_pop-050-100_0001.0001.tar",
        offset=1_234_567_890,
        length=3_500_000,
        sha256="ab" * 32,
        codec="opus",
        bitrate=75_000,
        duration_ms=210_000,
        tier="opus",
        title="A Typical Song Title",
        artists=["Some Artist", "Another"],
        album="A Typical Album Title",
        isrc="GBAYE7300105",
        popularity=12,
    )
    return len(msgspec.json.encode(line)) + 1


def measure(
    source_of: Callable[[], RangeSource], ids: list[str], n_present: int, top: bytes
) -> dict[str, tuple[int, int, float]]:
    """Per phase: (most reads, most bytes, mean ms) of one lookup."""
    phases: dict[str, Callable[[RangeSource], Locator]] = {
        "first lookup, footer read": lambda s: Locator(s),
        "first lookup, top index from the listing": lambda s: Locator(s, top_index=top),
    }
    out: dict[str, tuple[int, int, float]] = {}
    for phase, make in phases.items():
        most = [0, 0, 0.0]
        for item in ids:
            source = source_of()
            t0 = time.perf_counter()
            found = make(source).lookup(item)
            most[2] += time.perf_counter() - t0
            assert (found is not None) == (item in ids[:n_present])
            most[0] = max(most[0], source.reads)
            most[1] = max(most[1], source.bytes_read)
        out[phase] = (most[0], most[1], 1000 * most[2] / len(ids))
    source = source_of()
    locator = Locator(source).open()
    warm = [0, 0, 0.0]
    for item in ids:
        before = source.reads, source.bytes_read
        t0 = time.perf_counter()
        locator.lookup(item)
        warm[2] += time.perf_counter() - t0
        warm[0] = max(warm[0], source.reads - before[0])
        warm[1] = max(warm[1], source.bytes_read - before[1])
    out["next lookups, top index cached"] = (warm[0], warm[1], 1000 * warm[2] / len(ids))
    return out


def catalog_of(workdir: Path, tracks: int) -> Path:
    """A catalog (real schema) of ``tracks`` tracks with random UUID ids, a third of them
    packed in the ledger: made once and reused."""

    from phonotheca.catalog import schema

    path = workdir / f"catalog-{tracks}.sqlite3"
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = schema.connect(partial)
    schema.migrate(conn)
    rng = random.Random(3)
    conn.execute("BEGIN")
    for start in range(0, tracks, 100_000):
        rows = range(start, min(tracks, start + 100_000))
        ids = [f"mb:track:{rng.getrandbits(128):032x}" for _ in rows]
        conn.executemany(
            "INSERT INTO tracks(id, public_id, title, artist_credit) VALUES (?, ?, 't', 'a')",
            zip((i + 1 for i in rows), ids, strict=True),
        )
        conn.executemany(
            "INSERT INTO ledger(track_id, status, collection, volume, offset, length, sha256,"
            " codec) VALUES (?, ?, ?, ?, ?, ?, ?, 'opus')",
            (
                (
                    i + 1,
                    "packed" if i % 3 == 0 else "skipped_budget",
                    f"bench_pop-050-100_{i % COLLECTIONS + 1:04d}",
                    f"bench_pop-050-100_{i % COLLECTIONS + 1:04d}.{i % VOLUMES + 1:04d}.tar",
                    512 * i,
                    3_500_000,
                    f"{rng.getrandbits(256):064x}",
                )
                for i in rows
            ),
        )
    conn.execute("COMMIT")
    conn.close()
    partial.rename(path)
    return path


def from_catalog(workdir: Path, tracks: int) -> None:
    """Time ``build_locator`` on a catalog: what ``publish`` does per metadata release."""
    from phonotheca.torrents.locator_catalog import build_locator

    catalog = catalog_of(workdir, tracks)
    t0, c0 = time.monotonic(), time.process_time()
    summary = build_locator(catalog, workdir / f"catalog-{tracks}.locator")
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    print(
        f"  from a catalog of {tracks:,} tracks ({summary.entries:,} packed,"
        f" {format_size(catalog.stat().st_size)}): {wall:.1f} s, {cpu:.1f} CPU-s"
        f" ({cpu / max(summary.entries, 1) * 1e6:.2f} us per packed track),"
        f" {format_size(summary.size)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000_000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--http", action="store_true", help="also look up over serve-files")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "locator")
    parser.add_argument(
        "--reuse", action="store_true", help="look up in the file of an earlier run of this size"
    )
    parser.add_argument(
        "--from-catalog",
        type=int,
        metavar="TRACKS",
        help="also build from a catalog of TRACKS tracks, a third packed (as publish does)",
    )
    args = parser.parse_args()
    n = args.entries
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / LOCATOR_FILE
    print(f"locator of {n:,} entries ({COLLECTIONS:,} collections) -> {path}", flush=True)
    if args.reuse and path.exists() and Locator(FileSource(path)).open().entries == n:
        print("  build: reused the file of an earlier run")
        top = Locator(FileSource(path)).open().top_index
    else:
        t0, c0 = time.monotonic(), time.process_time()
        summary = write_locator(entries(n), path)
        build, cpu = time.monotonic() - t0, time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"  build: {build:.1f} s ({n / build / 1e6:.2f} M entries/s), {cpu:.1f} CPU-s"
            f" ({cpu / max(n, 1) * 1e6:.2f} us per entry, synthetic entries included),"
            f" peak RSS {format_size(rss)}"
        )
        top = summary.top_index
    opened = Locator(FileSource(path)).open()
    size = path.stat().st_size
    print(
        f"  file: {format_size(size)} ({size / max(n, 1):.1f} B/entry), {opened.blocks:,}"
        f" blocks of <= 64 KiB, top index {format_size(len(top))}"
    )
    rng = random.Random(2)
    present = [track_id(rng.randrange(n), n) for _ in range(args.lookups)]
    absent = [track_id(rng.randrange(n), n) + "x" for _ in range(args.lookups)]
    ids = present + absent
    results = {"file": measure(lambda: FileSource(path), ids, len(present), top)}
    if args.http:
        from phonotheca.torrents.webseed import make_server

        server = make_server(args.workdir, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/{LOCATOR_FILE}"
        sample = present[:100] + absent[:100]
        results["http"] = measure(lambda: HttpSource(url), sample, 100, top)
        server.shutdown()
        server.server_close()
    for where, phases in results.items():
        for phase, (reads, nbytes, ms) in phases.items():
            ok = reads <= TARGET_READS and nbytes <= TARGET_BYTES
            print(
                f"  {where} {phase}: at most {reads} reads, {format_size(nbytes)}"
                f" ({nbytes:,} B), {ms:.2f} ms mean" + f"  [<= 2 reads, 128 KiB: {ok}]"
            )
    if args.from_catalog:
        from_catalog(args.workdir, args.from_catalog)
    line = baseline_line_bytes()
    print(
        f"  baseline (fetch without a locator: every index.jsonl): {format_size(n * line)}"
        f" per lookup ({line} B per index line)"
    )


if __name__ == "__main__":
    main()
