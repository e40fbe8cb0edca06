"""Real peers on 127.0.0.1 for the publish and mirror tests (see docs/INTEROP.md).

Stable helpers, documented here so other test packages can import them:

- :func:`free_port` — a port free for both TCP and UDP on 127.0.0.1.
- :func:`run_opentracker` — Debian's opentracker (whitelist mode) as a context manager;
  ``tracker.reload()`` re-reads its whitelist (SIGHUP).
- :func:`local_session`, :func:`seed`, :func:`wait_until` — libtorrent sessions that talk
  to nobody but 127.0.0.1, and a seeder of a ``.torrent`` whose payload is on disk.
- :func:`build_archive` — an archive with a small catalog (paths of the operator's source
  files and imports included, so scrubbing can be checked), a plan, and two packed audio
  collections (BagIt bags of tar volumes) with their torrents, as the build stage leaves
  them: ready for ``phonotheca publish``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from phonotheca.archive import Archive, init_archive
from phonotheca.build import BagInfo, PackItem, member_name, pack_collection
from phonotheca.torrents import make_torrent, write_torrent

BAG_DATE = dt.date(2026, 1, 1)
PIECE_LENGTH = 16 * 1024


def free_port() -> int:
    """A port on 127.0.0.1 that is free for TCP and for UDP (opentracker takes both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for TCP and UDP")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; raise AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


# -- opentracker ------------------------------------------------------------------------------


@dataclass
class Opentracker:
    """A running opentracker: HTTP and UDP on the same port of 127.0.0.1."""

    directory: Path
    """Its chroot; the whitelist is ``directory / "whitelist"``."""
    port: int
    process: subprocess.Popen[bytes]

    @property
    def whitelist(self) -> Path:
        return self.directory / "whitelist"

    @property
    def http_announce(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    @property
    def udp_announce(self) -> str:
        return f"udp://127.0.0.1:{self.port}/announce"

    def reload(self) -> None:
        """Re-read the whitelist (opentracker's accesslist thread waits for SIGHUP)."""
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)


@contextmanager
def run_opentracker(directory: Path, infohashes: Sequence[str] = ()) -> Iterator[Opentracker]:
    """Start Debian's opentracker in whitelist mode; stop it on exit.

    It chroots into ``directory`` (as root) and reads ``whitelist`` there; ``infohashes``
    (40 hex digits each) are written to it first. Write more later and call ``reload``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    whitelist = directory / "whitelist"
    if infohashes or not whitelist.exists():
        whitelist.write_text("".join(f"{h}\n" for h in infohashes))
    port = free_port()
    process = start_opentracker(directory, port)
    try:
        yield Opentracker(directory, port, process)
    finally:
        stop_process(process)


def start_opentracker(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """Start opentracker on 127.0.0.1:``port`` in whitelist mode (``directory/whitelist``,
    read inside its chroot) and return once it accepts connections."""
    process = subprocess.Popen(
        # -u: the user it drops to after the chroot; "nobody" exists everywhere.
        [
            "opentracker",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-P",
            str(port),
            "-d",
            str(directory),
            "-w",
            "whitelist",
            "-u",
            "nobody",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"opentracker exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 10, "opentracker listening")
    except BaseException:
        stop_process(process)
        raise
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child and reap it; kill it if it takes more than 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- libtorrent ------------------------------------------------------------------------------


def local_session(port: int = 0, **settings: Any) -> lt.session:
    """A libtorrent session that talks to nobody but 127.0.0.1 (DHT, LSD, UPnP, NAT-PMP off).

    Tracker announces are allowed to 127.0.0.1; ``settings`` add or override settings.
    """
    pack: dict[str, Any] = {
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "listen_interfaces": f"127.0.0.1:{port}",
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": 0,
    }
    pack.update(settings)
    return lt.session(pack)  # type: ignore[call-overload,no-any-return]


def seed(session: lt.session, torrent: Path, save_path: Path, timeout: float = 30) -> Any:
    """Add ``torrent`` with its payload in ``save_path`` and wait until it seeds."""
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save_path)
    handle = session.add_torrent(params)
    wait_until(lambda: bool(handle.status().is_seeding), timeout, f"seeding {torrent.name}")
    return handle


# -- an archive ready to publish ---------------------------------------------------------------


@dataclass
class FixtureArchive:
    archive: Archive
    collections: list[str]
    """Audio collection names, most popular band first."""
    tracks: int
    listens_total: int

    @property
    def root(self) -> Path:
        return self.archive.root

    def torrent(self, name: str) -> Path:
        return self.archive.torrents_dir / f"{name}.torrent"

    def payload(self, name: str) -> Path:
        return self.archive.torrents_dir / name


SOURCE_DIR = "/home/operator/music"
"""Where the fixture's source files claim to be: must never appear in a published catalog."""
IMPORT_PATH = "/home/operator/dumps/catalog.jsonl"


def build_archive(
    root: Path,
    *,
    name: str = "demo",
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    hybrid: bool = False,
    track_size: int = 20_000,
    tracks_per_collection: int = 6,
) -> FixtureArchive:
    """An archive with 3 × ``tracks_per_collection`` tracks, two of three packed in two audio
    collections (bands 50-100 and 0-49), their ``.torrent`` files, and a plan.
    """
    settings = [f'[archive]\nname = "{name}"\n', "[build]\n"]
    settings.append(f'torrent_format = "{"hybrid" if hybrid else "v1"}"\n')
    settings.append("bands = [50, 0]\n[torrents]\n")
    settings.append(f"trackers = {json.dumps(list(trackers))}\n")
    settings.append(f"web_seeds = {json.dumps(list(web_seeds))}\n")
    root.mkdir(parents=True, exist_ok=True)
    (root / "phonotheca.toml").write_text("".join(settings))
    archive = init_archive(root)
    conn = archive.connect()
    n_tracks = 3 * tracks_per_collection
    rng = random.Random(7)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO imports(id, kind, path, fingerprint, started_at, finished_at, read,"
            " loaded, rejects_file) VALUES (1, 'jsonl', ?, 'fp', '2026-01-01T00:00:00Z',"
            " '2026-01-01T00:00:01Z', ?, ?, ?)",
            (IMPORT_PATH, n_tracks, n_tracks, f"{root}/rejects/1-catalog.jsonl.rejects.jsonl"),
        )
        listens = {}
        for n in range(n_tracks):
            popularity = 100 - 5 * n
            listens[n] = 10 * (n_tracks - n) ** 2
            conn.execute(
                "INSERT INTO tracks(id, public_id, title, artist_credit, popularity, listens)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (n + 1, f"syn:track:{n}", f"Song {n}", f"Artist {n % 3}", popularity, listens[n]),
            )
            conn.execute(
                "INSERT INTO source_files(id, track_id, path, size, mtime_ns, sha256, codec,"
                " bitrate, status, error, scanned_at) VALUES (?, ?, ?, ?, ?, ?, 'opus', 75000,"
                " 'ok', ?, '2026-01-01T00:00:00Z')",
                (
                    n + 1,
                    n + 1,
                    f"{SOURCE_DIR}/{n}.opus",
                    track_size,
                    1_700_000_000_000_000_000 + n,
                    f"{n:064x}",
                    f"{SOURCE_DIR}/{n}.opus: was unreadable once" if n == 0 else None,
                ),
            )
        total = sum(listens.values())
        conn.execute(
            "INSERT INTO plans(id, created_at, budget, settings, report)"
            " VALUES (1, '2026-01-01T00:00:00Z', 1000000000, '{}', ?)",
            (json.dumps({"listens_total": total, "listens_covered": total}),),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise
    collections = []
    try:
        bands = [(50, 100, range(0, tracks_per_collection))]
        bands.append((0, 49, range(tracks_per_collection, 2 * tracks_per_collection)))
        for low, high, members in bands:
            collection = f"{name}_pop-{low:03d}-{high:03d}_0001"
            items = []
            for n in members:
                public_id = f"syn:track:{n}"
                items.append(
                    PackItem(
                        public_id,
                        member_name(public_id, "opus"),
                        track_size,
                        rng.randbytes(track_size),
                        {"codec": "opus", "tier": "opus", "title": f"Song {n}"},
                    )
                )
            packed = pack_collection(
                archive.torrents_dir / collection,
                collection,
                items,
                info=BagInfo(BAG_DATE),
                mtime=int(dt.datetime.combine(BAG_DATE, dt.time(), dt.UTC).timestamp()),
                max_volume_size=64 * 1024,
            )
            torrent = make_torrent(
                packed.path,
                hybrid=hybrid,
                piece_length=PIECE_LENGTH,
                trackers=list(trackers),
                web_seeds=list(web_seeds),
            )
            write_torrent(torrent, archive.torrents_dir / f"{collection}.torrent")
            covered = sum(listens[n] for n in members)
            with _transaction(conn):
                for entry in packed.entries:
                    n = int(entry.id.rsplit(":", 1)[1])
                    conn.execute(
                        "INSERT INTO ledger(track_id, plan_id, status, tier, source_file_id,"
                        " codec, bitrate, size, sha256, collection, volume, offset, length)"
                        " VALUES (?, 1, 'packed', 'opus', ?, 'opus', 75000, ?, ?, ?, ?, ?, ?)",
                        (
                            n + 1,
                            n + 1,
                            entry.length,
                            entry.sha256,
                            collection,
                            entry.volume,
                            entry.offset,
                            entry.length,
                        ),
                    )
                conn.execute(
                    "INSERT INTO collections(name, kind, band_low, band_high, seq, plan_id,"
                    " status, items, files, payload_bytes, listens, torrent_format,"
                    " piece_length, infohash_v1, infohash_v2, built_at) VALUES (?, 'audio', ?,"
                    " ?, 1, 1, 'published', ?, ?, ?, ?, ?, ?, ?, ?, '2026-01-01T00:00:00Z')",
                    (
                        collection,
                        low,
                        high,
                        len(items),
                        len(torrent.files),
                        torrent.total_size,
                        covered,
                        "hybrid" if hybrid else "v1",
                        torrent.piece_length,
                        torrent.infohash_v1,
                        torrent.infohash_v2,
                    ),
                )
            collections.append(collection)
    finally:
        conn.close()
    return FixtureArchive(archive, collections, n_tracks, total)


@contextmanager
def _transaction(conn: Any) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- Transmission 3 ----------------------------------------------------------------------------


def transmission_settings(config_dir: Path, peer_port: int) -> None:
    """A settings.json for Transmission 3 that keeps it on 127.0.0.1 and quiet
    (no DHT, LPD, PEX, port forwarding, blocklist; docs/INTEROP.md)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "port-forwarding-enabled": False,
        "blocklist-enabled": False,
        "bind-address-ipv4": "127.0.0.1",
        "bind-address-ipv6": "::1",
        "peer-port": peer_port,
        "peer-port-random-on-start": False,
        "rpc-enabled": False,
        "speed-limit-up-enabled": False,
        "speed-limit-down-enabled": False,
        "encryption": 1,
    }
    (config_dir / "settings.json").write_text(json.dumps(settings, indent=2))


def transmission_env() -> dict[str, str]:
    """Environment for Transmission: its own HOME so it never reads the user's config."""
    return {k: v for k, v in os.environ.items() if k not in ("HOME",)}
