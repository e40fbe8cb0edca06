"""A small published archive and a local swarm for the mirror tests (127.0.0.1 only).

``publish_archive`` packs real collections (bags of tar volumes) with the build library,
makes their torrents and writes ``torrents.json``; ``Tracker`` runs Debian's opentracker
with the torrents whitelisted; ``Seeder`` is a libtorrent session seeding the archive;
``RangeServer`` is a Range-capable HTTP server for web seeds (BEP 19).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import os
import random
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libtorrent as lt
import msgspec

from phonotheca.build import BagInfo, PackItem, member_name, pack_collection
from phonotheca.catalog import schema
from phonotheca.catalog.release_db import write_release
from phonotheca.httprange import RangeNotSatisfiable, parse_ranges
from phonotheca.torrents import make_torrent, minisign
from phonotheca.torrents.keys import sign_file
from phonotheca.torrents.listing import (
    Band,
    Health,
    Listing,
    TorrentEntry,
    Totals,
    write_listing,
)
from phonotheca.torrents.metadata import CATALOG_FILE, compress_release
from phonotheca.torrents.minisign import SecretKey
from tests.peers import local_session, start_opentracker, stop_process

ARCHIVE = "demo"
PIECE = 16 * 1024


@dataclass
class Published:
    root: Path
    """The publisher's archive directory (torrents/ and torrents.json)."""
    listing: Path
    entries: dict[str, TorrentEntry]
    tracks: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Track id -> (collection, data)."""
    secret: SecretKey | None = None
    """The publisher's key; None when the listing is unsigned."""
    seq: int = 0

    @property
    def torrents(self) -> Path:
        return self.root / "torrents"

    @property
    def public_key(self) -> str:
        assert self.secret is not None
        return self.secret.public.to_base64()

    def write(
        self,
        listing: Listing,
        path: Path | None = None,
        *,
        secret: SecretKey | None = None,
        seq: int | None = None,
        expires: dt.datetime | None = None,
    ) -> Path:
        """Write ``listing`` signed (by ``secret``, default the publisher's key) with the
        next ``seq`` and an expiry in 30 days, as ``publish`` does; returns the path."""
        path = path or self.listing
        key = secret or self.secret
        assert key is not None
        if seq is None:
            self.seq += 1
            seq = self.seq
        expiry = expires or dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        signed = msgspec.structs.replace(
            listing,
            seq=seq,
            expires=expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            publisher_key=key.public.to_base64(),
        )
        write_listing(signed, path)
        sign_file(path, key)
        return path


def _released_catalog(path: Path, rows: int) -> None:
    """A tiny catalog of ``rows`` tracks, released as ``publish`` releases it
    (docs/FORMAT.md §12)."""
    db = path.with_name("catalog.tmp.sqlite3")
    conn = schema.connect(db)
    schema.migrate(conn)
    conn.executemany(
        "INSERT INTO tracks(public_id, title) VALUES (?, ?)",
        [(f"t:{i}", f"Song {i}") for i in range(rows)],
    )
    conn.close()
    released = path.with_name("release.tmp.sqlite3")
    write_release(db, released)
    with open(path, "wb") as out:
        compress_release(released, out, level=3, threads=1)
    for tmp in path.parent.glob("*.tmp.sqlite3*"):
        tmp.unlink()


def publish_archive(
    root: Path,
    *,
    collections: Sequence[tuple[str, int, int]] = (("pop-050-100_0001", 6, 30_000),),
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    metadata: bool = True,
    seed: int = 1,
    piece_length: int = PIECE,
    signed: bool = True,
) -> Published:
    """Pack ``(suffix, tracks, bytes per track)`` collections and publish their torrents,
    with ``torrents.json`` signed by a new publisher key (unless not ``signed``)."""
    rng = random.Random(seed)
    torrents_dir = root / "torrents"
    torrents_dir.mkdir(parents=True, exist_ok=True)
    published = Published(root, root / "torrents.json", {})
    specs: list[tuple[str, str, Path, int, int]] = []  # name, kind, dir, tracks, listens
    for suffix, count, size in collections:
        name = f"{ARCHIVE}_{suffix}"
        items = []
        for i in range(count):
            track_id = f"{ARCHIVE}:track:{name}:{i}"
            data = rng.randbytes(size + rng.randrange(size // 2))
            published.tracks[track_id] = (name, data)
            items.append(
                PackItem(
                    public_id=track_id,
                    name=member_name(track_id, "opus"),
                    size=len(data),
                    data=data,
                    metadata={"codec": "opus", "tier": "opus", "title": f"Song {i}"},
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
        pack_collection(
            torrents_dir / name,
            name,
            items,
            info=BagInfo(bagging_date=dt.date(2026, 1, 1)),
            mtime=1767225600,
            max_volume_size=count * size // 2 + 20_480,
        )
        specs.append((name, "audio", torrents_dir / name, count, 1000 * count))
    if metadata:
        name = f"{ARCHIVE}_metadata_0001"
        meta_dir = torrents_dir / name
        meta_dir.mkdir()
        _released_catalog(meta_dir / CATALOG_FILE, 500)
        (meta_dir / "FORMAT.md").write_text("# formats\n")
        specs.insert(0, (name, "metadata", meta_dir, 500, 0))
    entries = []
    for name, kind, directory, count, listens in specs:
        torrent = make_torrent(
            directory,
            piece_length=piece_length,
            trackers=list(trackers),
            web_seeds=list(web_seeds),
            output=torrents_dir / f"{name}.torrent",
        )
        entries.append(
            TorrentEntry(
                name=name,
                collection=name,
                kind=kind,  # type: ignore[arg-type]
                infohash_v1=torrent.infohash_v1,
                magnet=torrent.magnet,
                torrent_url=f"torrents/{name}.torrent",
                size=torrent.total_size,
                files=len(torrent.files),
                tracks=count,
                band=Band(low=50, high=100) if kind == "audio" else None,
                listens=listens,
                added="2026-01-01",
                web_seeds=list(web_seeds),
                trackers=[list(trackers)] if trackers else [],
                health=Health(seeders=1),
            )
        )
    published.entries = {e.name: e for e in entries}
    if signed:
        published.secret = minisign.generate()
        published.write(listing_of(entries))
    else:
        write_listing(listing_of(entries), published.listing)
    return published


def listing_of(entries: Sequence[TorrentEntry]) -> Listing:
    return Listing(
        archive=ARCHIVE,
        generated_at="2026-01-01T00:00:00Z",
        totals=Totals(
            tracks=sum(e.tracks for e in entries),
            bytes=sum(e.size for e in entries),
            listens_covered=sum(e.listens for e in entries),
            listens_total=sum(e.listens for e in entries),
            share_of_listens=1.0,
        ),
        torrents=list(entries),
    )


MIRROR_TOML = """[mirror]
listen = "127.0.0.1:{port}"
dht = false
lsd = false
upnp = false
natpmp = false
"""


class Tracker:
    """Debian's opentracker on 127.0.0.1, whitelisting the given infohashes."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    def start(self, infohashes: Sequence[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "whitelist").write_text("".join(h + "\n" for h in infohashes))
        # It drops to user nobody, who must be able to read its directory and whitelist.
        self.workdir.chmod(0o755)
        (self.workdir / "whitelist").chmod(0o644)
        self.process = start_opentracker(self.workdir, self.port)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


class Seeder:
    """A libtorrent session seeding published torrents from their archive."""

    def __init__(self) -> None:
        self.session = local_session()
        self.handles: dict[str, lt.torrent_handle] = {}

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def seed(self, published: Published, names: Sequence[str] | None = None) -> None:
        for name in names or list(published.entries):
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(str(published.torrents / f"{name}.torrent"))
            params.save_path = str(published.torrents)
            self.handles[name] = self.session.add_torrent(params)
        deadline = time.monotonic() + 30
        while not all(h.status().is_seeding for h in self.handles.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the seeder did not check its files in time")
            time.sleep(0.05)

    def close(self) -> None:
        for h in self.handles.values():
            self.session.remove_torrent(h)
        self.handles.clear()
        del self.session


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    root: Path
    served: list[int]
    rate: list[int]
    """Bytes per second each reply is sent at (one element; 0 is unlimited)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        from urllib.parse import unquote

        path = self.root / unquote(self.path.split("?", 1)[0].lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        try:
            ranges = parse_ranges(self.headers.get("Range"), size)
        except RangeNotSatisfiable as exc:
            self.send_response(416)
            self.send_header("Content-Range", exc.content_range)
            self.end_headers()
            return
        with open(path, "rb") as f:
            if ranges is None:
                body = f.read()
                self.send_response(200)
            else:
                r = ranges[0]
                f.seek(r.first)
                body = f.read(r.length)
                self.send_response(206)
                self.send_header("Content-Range", r.content_range(size))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        step = 4096
        for i in range(0, len(body), step):
            chunk = body[i : i + step]
            try:
                self.wfile.write(chunk)
            except OSError:  # the client went away (e.g. killed)
                return
            self.served.append(len(chunk))
            if self.rate[0]:
                time.sleep(len(chunk) / self.rate[0])


class RangeServer:
    """Serves a directory over HTTP with single-range support (enough for libtorrent)."""

    def __init__(self, root: Path, port: int | None = None, rate: int = 0) -> None:
        handler: type[_RangeHandler] = type(
            "Handler", (_RangeHandler,), {"root": root, "served": [], "rate": [rate]}
        )
        self.handler = handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def bytes_served(self) -> int:
        """Payload bytes written to clients so far."""
        return sum(self.handler.served)

    def set_rate(self, rate: int) -> None:
        """Send at most ``rate`` bytes per second per reply from now on (0: unlimited)."""
        self.handler.rate[0] = rate

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PHONOTHECA_ARCHIVE", None)
    return env
