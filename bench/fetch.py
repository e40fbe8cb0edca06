"""Fetch one track from a 1 GB collection through a local swarm: only its pieces move.

    .venv/bin/python bench/fetch.py               # 1 GB collection
    .venv/bin/python bench/fetch.py --size 200MB  # quick run

Packs (once, cached under $PHONOTHECA_BENCH_DIR) a collection of 4 MB tracks with the build
library, makes its torrent, seeds it from a libtorrent session announced to Debian's
opentracker on 127.0.0.1, then runs ``fetch_track`` for one track in the middle, with and
without a catalog. Prints the bytes downloaded beside the bound (track + index + 2 pieces
per range) and beside the whole collection (the baseline: downloading the torrent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_WORKDIR
from tests.mirror.swarm import Seeder, TorrentEntry, Tracker, listing_of, write_listing
from tests.peers import free_port

from phonotheca.build import BagInfo, PackItem, member_name, pack_collection, read_index
from phonotheca.build.tarvolume import BLOCK
from phonotheca.mirror.fetch import fetch_track
from phonotheca.mirror.session import SessionOptions
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.torrents import make_torrent

TRACK_SIZE = 4_000_000


def build(root: Path, size: int, tracker_url: str) -> tuple[Path, list[str]]:
    """The publisher's torrents/ directory and the track ids; rebuilt when the URL changes."""
    name = "bench_pop-050-100_0001"
    torrents = root / "torrents"
    bag = torrents / name
    count = max(3, size // TRACK_SIZE)
    ids = [f"bench:track:{i}" for i in range(count)]
    if not (bag / "bagit.txt").exists():
        torrents.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        items = []
        for track_id in ids:
            data = os.urandom(TRACK_SIZE)
            items.append(
                PackItem(
                    track_id,
                    member_name(track_id, "opus"),
                    len(data),
                    data,
                    {"codec": "opus"},
                    hashlib.sha256(data).hexdigest(),
                )
            )
        pack_collection(
            bag,
            name,
            items,
            info=BagInfo(bagging_date=dt.date(2026, 1, 1)),
            mtime=0,
            max_volume_size=256 * 1024 * 1024,
        )
        print(f"  packed {format_size(count * TRACK_SIZE)} in {time.monotonic() - t0:.1f} s")
    torrent = make_torrent(bag, trackers=[tracker_url], output=torrents / f"{name}.torrent")
    entry = TorrentEntry(
        name=name,
        collection=name,
        kind="audio",
        infohash_v1=torrent.infohash_v1,
        magnet=torrent.magnet,
        torrent_url=f"torrents/{name}.torrent",
        size=torrent.total_size,
        files=len(torrent.files),
        tracks=count,
        added="2026-01-01",
    )
    write_listing(listing_of([entry]), root / "torrents.json")
    return root, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GB", help="collection size (default 1GB)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    size = parse_size(args.size)
    tracker = Tracker(Path(tempfile.mkdtemp(prefix="bench-tracker-")), free_port())
    root, ids = build(args.workdir / f"fetch-{size}", size, tracker.url)
    name = "bench_pop-050-100_0001"
    bag = root / "torrents" / name
    whole = sum(p.stat().st_size for p in bag.rglob("*") if p.is_file())
    index = [ln.entry for ln in read_index((bag / "data" / "index.jsonl").read_bytes())]
    seeder = Seeder()
    listing = root / "torrents.json"
    from phonotheca.torrents.listing import read_listing

    [entry] = read_listing(listing).torrents
    tracker.start([entry.infohash_v1])
    try:
        t0 = time.monotonic()
        from tests.mirror.swarm import Published

        seeder.seed(Published(root, listing, {name: entry}))
        print(f"  seeder checked its {format_size(whole)} in {time.monotonic() - t0:.1f} s")
        catalog = root / "catalog.sqlite3"
        catalog.unlink(missing_ok=True)
        with sqlite3.connect(catalog) as conn:
            conn.execute("CREATE TABLE tracks(id INTEGER PRIMARY KEY, public_id TEXT)")
            conn.execute("CREATE TABLE ledger(track_id INTEGER, status TEXT, collection TEXT)")
            conn.executemany("INSERT INTO tracks VALUES (?, ?)", enumerate(ids))
            conn.executemany(
                "INSERT INTO ledger VALUES (?, 'packed', ?)", [(i, name) for i in range(len(ids))]
            )
        conn.close()
        track = ids[len(ids) // 2]
        line = next(e for e in index if e is not None and e.id == track)
        piece = entry.size and make_piece_length(bag, root, name)
        index_size = (bag / "data" / "index.jsonl").stat().st_size
        bound = line.length + BLOCK + index_size + 2 * 2 * piece
        print(
            f"fetch one {format_size(line.length)} track from {format_size(whole)}"
            f" (pieces of {format_size(piece, binary=True)}):"
        )
        for label, cat in (("index lookup", None), ("catalog lookup", catalog)):
            with tempfile.TemporaryDirectory() as out:
                options = SessionOptions(
                    listen=f"127.0.0.1:{free_port()}",
                    dht=False,
                    lsd=False,
                    upnp=False,
                    natpmp=False,
                )
                t0 = time.monotonic()
                result = fetch_track(str(listing), track, Path(out), options, catalog=cat)
                seconds = time.monotonic() - t0
            print(
                f"  {label:15s} {format_size(result.downloaded):>9s} downloaded in"
                f" {seconds:5.2f} s; bound {format_size(bound)}"
                f" ({'ok' if result.downloaded <= bound else 'OVER'}); whole collection"
                f" {format_size(whole)} ({whole / max(1, result.downloaded):.0f}x more)"
            )
    finally:
        seeder.close()
        tracker.stop()


def make_piece_length(bag: Path, root: Path, name: str) -> int:
    from phonotheca.torrents.layout import read_layout

    return read_layout(root / "torrents" / f"{name}.torrent").piece_length


if __name__ == "__main__":
    main()
