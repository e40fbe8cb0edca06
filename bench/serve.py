"""The server under load: search latency at 10 M tracks, streaming beside nginx.

Search: 16 concurrent clients send search-as-you-type queries (five kinds, as in
bench/search.py) to ``GET /api/v1/search`` and to the Subsonic ``search3``; the figures
are p50/p99 per endpoint, beside the engine called directly in one thread (the floor the
HTTP layer adds to). The server runs with 1 and with 2 worker processes
(``serve --workers``). Target: p99 <= 20 ms.

Streaming: clients read random 4 MiB ranges of 16 MiB tracks from a tar volume through
``GET /tracks/{id}/audio``, and the same bytes from the same volume through Debian's
nginx (``sendfile on``, one worker process, as uvicorn here is one process), with the
same load generator in the same run. Target: >= 0.5x nginx's throughput.

The load generator is Debian's ``wrk`` (C, epoll) with a Lua script that cycles through
the request list: on the 2 cores this bench has, a Python client would spend as much CPU
per request as the server under test. Without wrk a small asyncio HTTP/1.1 keep-alive
client stands in (then each query is sent once); either way both servers of the
streaming test get the same generator.

    .venv/bin/python bench/serve.py [--tracks N] [--workdir DIR] [--seconds S]
        [--generator wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, percentile, phonotheca_cmd, run_measured, synthetic_catalog
from phonotheca.archive import init_archive
from phonotheca.build import BagInfo, PackItem, member_name, pack_collection
from phonotheca.catalog import schema
from phonotheca.catalog.search import search
from phonotheca.serve.state import StateStore
from search import make_queries

CLIENTS = 16
RANGE = 4 << 20
STREAM_TRACK = 16 << 20
STREAM_TRACKS = 32
STREAM_CLIENTS = 8
COLLECTION = "bench_pop-000-100_0001"
WRK_THREADS = 2  # wrk's own event loops: one per core of this machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server did not listen on {port}; see {log}")


@contextmanager
def running(cmd: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, proc, log)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the load generator -----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (enough of HTTP for these two servers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, int]:
        """(status, body bytes) of ``GET path``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=1 << 20
            )
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if b"content-length" in fields:
            remaining = int(fields[b"content-length"])
            received = remaining
            while remaining:
                chunk = await self.reader.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ConnectionError("closed mid-body")
                remaining -= len(chunk)
        else:  # chunked
            received = 0
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                received += size
                if size == 0:
                    break
        return status, received

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def latencies(port: int, paths: list[str], clients: int) -> list[float]:
    """Milliseconds per request, ``clients`` at a time, each path once."""
    queue = list(reversed(paths))
    out: list[float] = []

    async def client() -> None:
        conn = Connection(port)
        try:
            while queue:
                path = queue.pop()
                t0 = time.perf_counter()
                status, _ = await conn.get(path)
                out.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    raise SystemExit(f"GET {path}: HTTP {status}")
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


async def throughput(
    port: int, targets: list[tuple[str, int]], clients: int, seconds: float
) -> tuple[float, int]:
    """(bytes per second, requests) of random 4 MiB ranges; ``targets`` are (path, start
    of the track in that resource)."""
    rng = random.Random(5)
    total = 0
    count = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal total, count
        conn = Connection(port)
        try:
            while time.perf_counter() < deadline:
                path, base = rng.choice(targets)
                first = base + rng.randrange(0, STREAM_TRACK - RANGE + 1, 4096)
                status, n = await conn.get(path, {"Range": f"bytes={first}-{first + RANGE - 1}"})
                if status != 206 or n != RANGE:
                    raise SystemExit(f"GET {path}: HTTP {status}, {n} bytes")
                total += n
                count += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return total / (time.perf_counter() - t0), count


# -- the load generator: wrk ------------------------------------------------------------------

WRK_SCRIPT = """
-- GET each line of a file in turn (args[1]), each thread from its own place in the list.
-- A line "PATH FIRST END" asks for a random range of args[2] bytes (4 KiB aligned) in
-- [FIRST, END).
local lines, n, i, range = {}, 0, 0, 0
function setup(thread)
  setup_id = (setup_id or 0) + 1
  thread:set("id", setup_id)
end
function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    lines[n] = line
  end
  range = tonumber(args[2])
  i = (id * 7919) % n
  math.randomseed(id)
end
function request()
  i = i % n + 1
  local path, first, stop = lines[i]:match("^(%S+) (%d+) (%d+)$")
  if path == nil then
    return wrk.format("GET", lines[i])
  end
  local slots = math.floor((tonumber(stop) - tonumber(first) - range) / 4096)
  local start = tonumber(first) + math.random(0, slots) * 4096
  return wrk.format("GET", path, {Range = string.format("bytes=%d-%d", start, start + range - 1)})
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "bytes": %d, "micros": %d, "p50": %d,'
    .. ' "p99": %d, "errors": %d, "status": %d}\\n', summary.requests, summary.bytes,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class WrkRun:
    requests: int
    bytes: int
    seconds: float
    p50_ms: float
    p99_ms: float


def wrk(port: int, lines: list[str], clients: int, seconds: float) -> WrkRun:
    """``wrk`` with :data:`WRK_SCRIPT` over ``lines``; any error or non-2xx/3xx fails."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        listing = Path(tmp) / "requests.txt"
        listing.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        cmd = [
            "wrk",
            f"-t{min(WRK_THREADS, clients)}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(listing),
            str(RANGE),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = [line for line in out.stdout.splitlines() if line.startswith("WRK ")]
    if out.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    got = json.loads(found[0][4:])
    if got["errors"] or got["status"]:
        raise SystemExit(
            f"wrk on port {port}: {got['errors']} socket errors, {got['status']} HTTP errors"
        )
    return WrkRun(
        requests=got["requests"],
        bytes=got["bytes"],
        seconds=got["micros"] / 1e6,
        p50_ms=got["p50"] / 1000,
        p99_ms=got["p99"] / 1000,
    )


# -- search -----------------------------------------------------------------------------------


def search_root(workdir: Path, tracks: int) -> Path:
    """The catalog of bench/search.py, copied (this bench migrates and serves its copy)."""
    root = workdir / f"serve-{tracks}"
    catalog = root / "catalog.sqlite3"
    if catalog.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    source = workdir / f"search-{tracks}" / "catalog.sqlite3"
    if source.exists():
        t0 = time.monotonic()
        partial = catalog.with_name("catalog.sqlite3.partial")
        shutil.copyfile(source, partial)
        partial.replace(catalog)
        print(f"  copied {source} in {time.monotonic() - t0:.0f} s", flush=True)
    else:
        src = synthetic_catalog(workdir, tracks)
        run = run_measured(phonotheca_cmd("import", "jsonl", str(src), "--archive", str(root)))
        print(f"  imported {tracks:,} tracks in {run.seconds:.0f} s", flush=True)
    init_archive(root, "bench")  # settings file, directories, schema migration
    return root


def bench_search(
    root: Path, n: int, workers: int, generator: str, seconds: float
) -> dict[str, tuple[float, float]]:
    conn = schema.connect(root / "catalog.sqlite3", readonly=True)
    kinds = make_queries(conn, random.Random(7), n)
    queries = [q for qs in kinds.values() for q in qs]
    random.Random(3).shuffle(queries)
    # Warm the page cache with other queries than the timed ones.
    for qs in make_queries(conn, random.Random(8), n).values():
        for q in qs:
            search(conn, q)
    direct = []
    for q in queries:
        t0 = time.perf_counter()
        search(conn, q)
        direct.append((time.perf_counter() - t0) * 1000)
    conn.close()

    state = StateStore(root / "state.sqlite3")
    if state.get_user("bench") is None:
        state.add_user("bench", "bench password, long enough")
    api_key = state.rotate_subsonic_credentials("bench").api_key
    state.close()

    port = free_port()
    results = {"engine, 1 thread": (percentile(direct, 0.5), percentile(direct, 0.99))}
    cmd = phonotheca_cmd(
        "serve", "--archive", str(root), "--port", str(port), "--workers", str(workers)
    )
    with running(cmd, port, root / "work" / "bench-serve.log"):
        quoted = [urllib.parse.quote(q) for q in queries]
        api = [f"/api/v1/search?limit=20&q={q}" for q in quoted]
        sub = [
            f"/rest/search3?apiKey={api_key}&c=bench&v=1.16.1&f=json&songCount=20"
            f"&albumCount=0&artistCount=0&query={q}"
            for q in quoted
        ]
        _check_answers(port, api[0], sub[0])
        for name, paths in (("GET /api/v1/search", api), ("Subsonic search3", sub)):
            label = f"{name}, {CLIENTS} clients, {workers} worker(s)"
            if generator == "wrk":
                wrk(port, paths, CLIENTS, 2)  # warm the server (each worker process)
                run = wrk(port, paths, CLIENTS, seconds)
                results[label] = (run.p50_ms, run.p99_ms)
                print(f"  ({label}: {run.requests / run.seconds:.0f} requests/s)", flush=True)
            else:
                asyncio.run(latencies(port, paths[: len(paths) // 4], CLIENTS))  # warm up
                ms = asyncio.run(latencies(port, paths, CLIENTS))
                results[label] = (percentile(ms, 0.5), percentile(ms, 0.99))
    return results


def _check_answers(port: int, api: str, sub: str) -> None:
    """Both endpoints answer a search with results, not an error: the load generators
    look at HTTP statuses only, and Subsonic errors come with a 200."""
    for path in (api, sub):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            body = json.load(r)
        if path == sub and body["subsonic-response"]["status"] != "ok":
            raise SystemExit(f"search3 failed: {body}")
        if path == api and "tracks" not in body:
            raise SystemExit(f"/api/v1/search failed: {body}")


# -- streaming --------------------------------------------------------------------------------


def stream_root(workdir: Path) -> tuple[Path, list[tuple[str, str, int]]]:
    """An archive with :data:`STREAM_TRACKS` tracks of 16 MiB packed into one volume.

    Returns the root and (track id, volume, offset) per track.
    """
    root = workdir / "serve-stream"
    done = root / "work" / "bench-ready"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        init_archive(root, "bench")
        with (root / "phonotheca.toml").open("a", encoding="utf-8") as f:
            f.write("\n[serve]\npublic_audio = true\n")
        rng = random.Random(11)
        ids = [f"bench:track:{i}" for i in range(STREAM_TRACKS)]
        items = [
            PackItem(
                public_id=i,
                name=member_name(i, "opus"),
                size=STREAM_TRACK,
                data=rng.randbytes(STREAM_TRACK),
                metadata={"codec": "opus"},
            )
            for i in ids
        ]
        packed = pack_collection(
            root / "torrents" / COLLECTION,
            COLLECTION,
            items,
            info=BagInfo(bagging_date=dt.date(2026, 1, 1)),
            mtime=0,
        )
        conn = schema.connect(root / "catalog.sqlite3")
        with schema.transaction(conn):
            for n, i in enumerate(ids):
                conn.execute(
                    "INSERT INTO tracks(id, public_id, title, artist_credit) VALUES(?, ?, ?, ?)",
                    (n + 1, i, f"Bench track {n}", "Bench"),
                )
            for n, m in enumerate(packed.entries):
                conn.execute(
                    "INSERT INTO ledger(track_id, status, tier, codec, size, sha256, collection,"
                    " volume, offset, length) VALUES(?, 'packed', 'original', 'opus', ?, ?, ?,"
                    " ?, ?, ?)",
                    (n + 1, m.length, m.sha256, COLLECTION, m.volume, m.offset, m.length),
                )
        conn.close()
        done.write_text("ok\n")
    conn = sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT t.public_id, l.volume, l.offset FROM ledger l JOIN tracks t ON t.id = l.track_id"
    ).fetchall()
    conn.close()
    return root, rows


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def bench_stream(workdir: Path, seconds: float, generator: str) -> dict[str, float]:
    root, rows = stream_root(workdir)
    # Read the volume once so both servers start from a warm page cache.
    for volume in {v for _, v, _ in rows}:
        with open(root / "torrents" / COLLECTION / "data" / volume, "rb") as f:
            while f.read(1 << 24):
                pass
    ours = [(f"/tracks/{urllib.parse.quote(i, safe='')}/audio", 0) for i, _, _ in rows]
    theirs = [(f"/{COLLECTION}/data/{v}", offset) for _, v, offset in rows]
    results: dict[str, float] = {}
    port = free_port()
    nginx_port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(tmp=tmp, port=nginx_port, root=root / "torrents"), encoding="utf-8"
        )
        serve = phonotheca_cmd("serve", "--archive", str(root), "--port", str(port))
        nginx = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", tmp]
        with (
            running(serve, port, root / "work" / "bench-serve.log"),
            running(nginx, nginx_port, Path(tmp) / "stdout.log"),
        ):
            for p, targets in ((port, ours), (nginx_port, theirs)):
                _stream_rate(p, targets, 1.0, generator)  # warm up
            # Alternate, twice each, so that both see the same machine load.
            for _ in range(2):
                for name, p, targets in (("phonotheca", port, ours), ("nginx", nginx_port, theirs)):
                    rate = _stream_rate(p, targets, seconds, generator)
                    results[name] = max(results.get(name, 0.0), rate)
    return results


def _stream_rate(
    port: int, targets: list[tuple[str, int]], seconds: float, generator: str
) -> float:
    """Bytes per second of random 4 MiB ranges of the tracks at ``targets``."""
    if generator != "wrk":
        return asyncio.run(throughput(port, targets, STREAM_CLIENTS, seconds))[0]
    run = wrk(port, [f"{p} {b} {b + STREAM_TRACK}" for p, b in targets], STREAM_CLIENTS, seconds)
    # A 200 with the whole file instead of a 206 would count as success: check the sizes
    # (wrk's byte count also has the responses still in flight when it stopped).
    if not run.requests * RANGE <= run.bytes < (run.requests + STREAM_CLIENTS) * (RANGE + 4096):
        raise SystemExit(
            f"port {port}: {run.bytes} bytes in {run.requests} responses, not 4 MiB ranges"
        )
    return run.requests * RANGE / run.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--queries", type=int, default=200, help="per kind of query")
    parser.add_argument("--seconds", type=float, default=8.0, help="per streaming run")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="server processes to try"
    )
    parser.add_argument(
        "--generator",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk when installed)",
    )
    parser.add_argument(
        "--search-seconds", type=float, default=5.0, help="per search endpoint (wrk only)"
    )
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    ok = True
    print(f"load generator: {args.generator}; load average {_load()}")
    if not args.skip_search:
        root = search_root(args.workdir, args.tracks)
        print(f"search at {args.tracks:,} tracks ({5 * args.queries} queries, target p99 <= 20 ms)")
        results: dict[str, tuple[float, float]] = {}
        for workers in args.workers:
            results.update(
                bench_search(root, args.queries, workers, args.generator, args.search_seconds)
            )
        for name, (p50, p99) in results.items():
            print(f"  {name:<48} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
        best = min(p99 for name, (_, p99) in results.items() if "clients" in name)
        ok = best <= 20
    if not args.skip_stream:
        rates = bench_stream(args.workdir, args.seconds, args.generator)
        ratio = rates["phonotheca"] / rates["nginx"]
        print(
            f"streaming 4 MiB ranges, {STREAM_CLIENTS} clients (target >= 0.5x nginx)\n"
            f"  phonotheca {rates['phonotheca'] / 1e6:8.0f} MB/s\n"
            f"  nginx      {rates['nginx'] / 1e6:8.0f} MB/s   (baseline)\n"
            f"  ratio      {ratio:8.2f}x"
        )
        ok = ok and ratio >= 0.5
    print(f"load average at the end {_load()} (other work on the machine shifts the figures)")
    return 0 if ok else 1


def _load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
