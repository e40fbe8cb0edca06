"""On-demand streaming from a local web seed: time to first byte, whole track, bytes moved.

    .venv/bin/python bench/on_demand.py                       # 2 GB in 20 collections
    .venv/bin/python bench/on_demand.py --size 400MB          # quick run
    .venv/bin/python bench/on_demand.py --peers               # from a libtorrent seeder
    .venv/bin/python bench/on_demand.py --http                # through the HTTP server

Packs (once, cached under $PHONOTHECA_BENCH_DIR) ``--collections`` collections of 4 MB
random tracks with the build library, 4 MiB pieces, and serves them with the project's
web seed (``serve-files``' server) on 127.0.0.1. The server's on-demand engine
(:class:`phonotheca.serve.ondemand.OnDemand`, what ``serve --on-demand`` runs per
process; with ``--http``, the server's application on 127.0.0.1 over a catalog placing
the tracks, each play a ``GET /tracks/ID/audio`` timed to its body's first byte) plays
``--plays`` random tracks one after the other, and ``--concurrent`` other ones at once,
each read to its end as a client would. Printed: time to first byte (p50/p99, limit
1.5 s), time to the whole track, bytes fetched per track against track + 2 pieces, and
a replay from the cache against a track held on disk (read the same way, in the same
run; limit 0.8x).
The server finds a track from its catalog's ledger, so no locator is read (0 bytes).
With ``--peers`` the torrents name no web seed but Debian's opentracker on 127.0.0.1, and
one libtorrent session seeds them: the engine's peers' session fetches every piece.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import quote

import libtorrent as lt
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_WORKDIR
from tests.mirror.swarm import Tracker
from tests.peers import free_port, local_session
from tests.peers import seed as seed_torrent

from phonotheca.archive import init_archive
from phonotheca.build import BagInfo, PackItem, member_name, pack_collection, read_index
from phonotheca.config import ServeSettings, load_settings
from phonotheca.mirror.session import SessionOptions
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.ondemand import OnDemand, OnDemandError, TrackFetch
from phonotheca.serve.ondemand.engine import SwarmTrack
from phonotheca.serve.streaming import read_slice
from phonotheca.torrents import make_torrent
from phonotheca.torrents.webseed import make_server

TRACK_SIZE = 4_000_000
PIECE = 4 << 20
TTFB_LIMIT = 1.5
REPLAY_LIMIT = 0.8


def build(
    root: Path, size: int, collections: int, seed_url: str | None, tracker: str | None = None
) -> list[SwarmTrack]:
    """The archive's torrents/ (packed once) and every track's place in it."""
    torrents = root / "torrents"
    per = max(1, size // collections // TRACK_SIZE)
    tracks: list[SwarmTrack] = []
    for c in range(collections):
        name = f"bench_pop-050-100_{c + 1:04d}"
        bag = torrents / name
        if not (bag / "bagit.txt").exists():
            items = []
            for i in range(per):
                data = os.urandom(TRACK_SIZE)
                track_id = f"bench:track:{c}:{i}"
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
        # The web seed's URL changes with its port: the torrent is made again each run.
        make_torrent(
            bag,
            piece_length=PIECE,
            web_seeds=[seed_url] if seed_url else [],
            trackers=[tracker] if tracker else [],
            output=torrents / f"{name}.torrent",
        )
        for line in read_index((bag / "data" / "index.jsonl").read_bytes()):
            e = line.entry
            if e is not None:
                tracks.append(SwarmTrack(e.id, name, e.volume, e.offset, e.length, e.sha256))
    return tracks


def play(engine: OnDemand, track: SwarmTrack) -> tuple[float, float]:
    """(seconds to the first byte, seconds to the last) of one play read to its end."""
    t0 = time.monotonic()
    opened = engine.open(track)
    chunks = (
        opened.chunks(0, track.length)
        if isinstance(opened, TrackFetch)
        else read_slice(opened, 0, track.length)
    )
    first = None
    got = 0
    for chunk in chunks:
        if first is None:
            first = time.monotonic() - t0
        got += len(chunk)
    assert got == track.length, (track.id, got)
    return first or 0.0, time.monotonic() - t0


class HttpServer:
    """``serve --on-demand``'s application on 127.0.0.1 (uvicorn in a thread) over a
    metadata-only root: a catalog whose ledger places ``tracks`` in the collections,
    the .torrent files, no audio."""

    def __init__(self, root: Path, tracks: list[SwarmTrack], peers: bool) -> None:
        (root / "phonotheca.toml").write_text(
            '[archive]\nname = "bench"\n[serve]\npublic_audio = true\non_demand = true\n'
            f'cache_dir = "{root / "cache"}"\non_demand_peers = {str(peers).lower()}\n'
            '[mirror]\nlisten = "127.0.0.1:6881"\ndht = false\nlsd = false\n'
            "upnp = false\nnatpmp = false\n"
        )
        conn = init_archive(root).connect()
        with conn:
            for n, t in enumerate(tracks, 1):
                conn.execute(
                    "INSERT INTO tracks(id, public_id, title, artist_credit) VALUES (?, ?, ?, ?)",
                    (n, t.id, f"Track {n}", "Bench"),
                )
                conn.execute(
                    "INSERT INTO ledger(track_id, status, tier, codec, size, sha256,"
                    " collection, volume, offset, length)"
                    " VALUES (?, 'packed', 'opus', 'opus', ?, ?, ?, ?, ?, ?)",
                    (n, t.length, t.sha256, t.collection, t.volume, t.offset, t.length),
                )
        conn.close()
        ctx = ServeContext(settings=load_settings(root), roots=[root])
        app = create_app(ctx)
        assert ctx.media is not None and ctx.media.on_demand is not None
        self.engine: OnDemand = ctx.media.on_demand
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)

    def play(self, track: SwarmTrack) -> tuple[float, float]:
        """(seconds to the first byte of the GET's body, to its last)."""
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", f"/tracks/{quote(track.id, safe='')}/audio")
            response = conn.getresponse()
            if response.status != 200:
                raise OnDemandError(f"{track.id}: HTTP {response.status} {response.read()!r}")
            got = len(response.read(1))
            first = time.monotonic() - t0
            while chunk := response.read(1 << 20):
                got += len(chunk)
        finally:
            conn.close()
        assert got == track.length, (track.id, got)
        return first, time.monotonic() - t0

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._sock.close()
        self.engine.close()


def _moved(engine: OnDemand) -> int:
    """Bytes the engine received: from web seeds, and pieces handed over by peers."""
    peers = engine.peers.bytes_received if engine.peers is not None else 0
    return engine.pieces.bytes_fetched + peers


def rate(path: Path, offset: int, length: int, rounds: int = 5) -> float:
    """Bytes per second reading a slice as the server streams it (best of ``rounds``)."""
    best = 0.0
    for _ in range(rounds):
        t0 = time.monotonic()
        n = sum(len(c) for c in read_slice(path, offset, length))
        best = max(best, n / max(1e-9, time.monotonic() - t0))
    return best


def announced(seeder: lt.session, count: int, timeout: float = 60) -> None:
    """Wait until the tracker answered the seeder's announce of ``count`` torrents: a
    seeder the tracker does not know yet is no swarm to measure (its first announces
    go out after it checked its files, not when it was added)."""
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(done) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the tracker knows the seeder of {len(done)} of {count} torrents")
        seeder.wait_for_alert(200)
        for alert in seeder.pop_alerts():
            if isinstance(alert, lt.tracker_reply_alert):
                done.add(str(alert.handle.info_hashes().v1))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2GB", help="audio in the archive (default 2GB)")
    parser.add_argument("--collections", type=int, default=20)
    parser.add_argument("--plays", type=int, default=50, help="sequential plays (50)")
    parser.add_argument("--concurrent", type=int, default=16, help="plays at once (16)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--peers", action="store_true", help="a libtorrent seeder, no web seed")
    parser.add_argument(
        "--http",
        action="store_true",
        help="play through serve --on-demand's HTTP server (GET /tracks/ID/audio)",
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    root = args.workdir / f"ondemand-{size}-{args.collections}"
    port = free_port()
    t0 = time.monotonic()
    tracker = Tracker(Path(tempfile.mkdtemp(prefix="bench-tracker-")), free_port())
    seed_url = None if args.peers else f"http://127.0.0.1:{port}/torrents/"
    tracks = build(root, size, args.collections, seed_url, tracker.url if args.peers else None)
    print(
        f"archive: {len(tracks)} tracks of {format_size(TRACK_SIZE)} in {args.collections}"
        f" collections ({format_size(len(tracks) * TRACK_SIZE)}), pieces of 4 MiB;"
        f" ready in {time.monotonic() - t0:.1f} s",
        flush=True,
    )
    server = make_server(root, port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seeder = None
    peer_options = None
    if args.peers:
        torrent_files = sorted((root / "torrents").glob("*.torrent"))
        tracker.start([str(lt.torrent_info(str(t)).info_hashes().v1) for t in torrent_files])
        # Every torrent announced, every requesting peer unchoked: one seeder stands for
        # a swarm (libtorrent unchokes 8 peers by default, rotating every 15 s).
        seeder = local_session(
            active_seeds=-1,
            active_limit=-1,
            unchoke_slots_limit=-1,
            alert_mask=int(lt.alert.category_t.tracker_notification),
        )
        for t in torrent_files:
            seed_torrent(seeder, t, root / "torrents", timeout=600)
        announced(seeder, len(torrent_files))
        peer_options = SessionOptions(
            listen="127.0.0.1:0", dht=False, lsd=False, upnp=False, natpmp=False
        )
        print(f"  seeder ready after {time.monotonic() - t0:.1f} s", flush=True)
    rng = random.Random(1)
    picks = rng.sample(tracks, min(len(tracks), args.plays + args.concurrent))
    sequential, concurrent = picks[: args.plays], picks[args.plays :]
    with tempfile.TemporaryDirectory(prefix="bench-ondemand-") as tmp:
        server_root = Path(tmp)  # a metadata-only server: the .torrent files, no audio
        (server_root / "torrents").mkdir()
        for torrent in (root / "torrents").glob("*.torrent"):
            shutil.copy(torrent, server_root / "torrents" / torrent.name)
        http_server = None
        if args.http:
            http_server = HttpServer(server_root, tracks, args.peers)
            engine = http_server.engine
            player = http_server.play
        else:
            settings = ServeSettings(
                on_demand=True, cache_dir=str(server_root / "cache"), on_demand_peers=args.peers
            )
            engine = OnDemand([server_root], settings, peer_options)
            player = partial(play, engine)
        try:
            ttfb, whole, moved = [], [], []
            for track in sequential:
                before = _moved(engine)
                first, last = player(track)
                ttfb.append(first)
                whole.append(last)
                moved.append(_moved(engine) - before)
            results: list[tuple[float, float]] = []
            lock = threading.Lock()

            failed: list[str] = []

            def one(track: SwarmTrack) -> None:
                try:
                    r = player(track)
                except OnDemandError as exc:
                    with lock:
                        failed.append(str(exc))
                    return
                with lock:
                    results.append(r)

            before = _moved(engine)
            threads = [threading.Thread(target=one, args=(t,)) for t in concurrent]
            c0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - c0
            c_moved = _moved(engine) - before
            # Replay: a cached track against one held on disk, read the same way.
            while engine.fetching():
                time.sleep(0.05)
            cached = engine.open(sequential[0])
            assert isinstance(cached, Path), "the first track played should be cached"
            held = sequential[1]
            volume = root / "torrents" / held.collection / "data" / held.volume
            cache_rate = rate(cached, 0, sequential[0].length)
            held_rate = rate(volume, held.offset, held.length)
        finally:
            if http_server is not None:
                http_server.close()
            else:
                engine.close()
            server.shutdown()
            server.server_close()
            if seeder is not None:
                del seeder
            tracker.stop()
    bound = TRACK_SIZE + 2 * PIECE
    print(f"through {'GET /tracks/ID/audio' if args.http else 'the engine (no HTTP)'}:")
    print(f"sequential, {len(sequential)} plays:")
    p99 = pct(ttfb, 0.99)
    print(
        f"  TTFB p50 {statistics.median(ttfb) * 1000:7.1f} ms, p99 {p99 * 1000:7.1f}"
        f" ms (limit {TTFB_LIMIT * 1000:.0f} ms: {'ok' if p99 <= TTFB_LIMIT else 'OVER'})"
    )
    print(
        f"  whole track p50 {statistics.median(whole):.2f} s, p99 {pct(whole, 0.99):.2f} s"
        f" ({format_size(TRACK_SIZE)})"
    )
    print(
        f"  bytes fetched per track: max {format_size(max(moved))}, mean"
        f" {format_size(int(statistics.mean(moved)))}; bound track + 2 pieces"
        f" {format_size(bound)} ({'ok' if max(moved) <= bound else 'OVER'})"
    )
    c_ttfb = [r[0] for r in results] or [0.0]
    print(
        f"concurrent, {len(concurrent)} plays at once ({wall:.2f} s wall),"
        f" {len(failed)} failed{': ' + failed[0] if failed else ''}:"
    )
    print(
        f"  TTFB p50 {statistics.median(c_ttfb) * 1000:7.1f} ms,"
        f" p99 {pct(c_ttfb, 0.99) * 1000:7.1f} ms;"
        f" whole track p99 {pct([r[1] for r in results] or [0.0], 0.99):.2f} s;"
        f" {format_size(c_moved // max(1, len(concurrent)))} fetched per track"
    )
    print("locator: 0 bytes per lookup (the server reads its catalog's ledger)")
    ratio = cache_rate / held_rate
    print(
        f"replay from the cache {format_size(int(cache_rate))}/s vs a track held on disk"
        f" {format_size(int(held_rate))}/s: {ratio:.2f}x"
        f" (limit {REPLAY_LIMIT}x: {'ok' if ratio >= REPLAY_LIMIT else 'UNDER'})"
    )
    print(f"load: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
