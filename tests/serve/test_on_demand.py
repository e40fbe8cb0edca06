"""``serve --on-demand``: tracks the server does not hold, played from the collections'
web seeds.

A real archive (tests.peers.build_archive: 16 KiB pieces, 200 kB tracks) is served by two
real web seeds (``serve-files``' server) that can stall or corrupt what they send; the
server's root holds its catalog and ``.torrent`` files but no audio. Every assertion is
about bytes, requests and files, never about time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import libtorrent as lt
import pytest

from phonotheca.catalog.search import rebuild_search
from phonotheca.config import load_settings
from phonotheca.mirror.session import SessionOptions
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.ondemand import OnDemand, OnDemandError
from phonotheca.serve.ondemand.engine import SwarmTrack
from phonotheca.serve.state import StateStore
from phonotheca.torrents.layout import read_layout
from phonotheca.torrents.scrape import scrape_http
from phonotheca.torrents.webseed import make_server
from tests.mirror.swarm import Tracker
from tests.mirror.test_metadata_only import (
    WebSeed,
    _metadata_only,
    _mirror_dir,
    _serving,
)
from tests.mirror.test_metadata_only import seed as published_seed  # noqa: F401 (a fixture)
from tests.peers import (
    PIECE_LENGTH,
    FixtureArchive,
    build_archive,
    free_port,
    local_session,
    wait_until,
)
from tests.peers import seed as seed_torrent

TRACK_SIZE = 200_000
USER, PASSWORD = "alice", "correct horse battery staple"


@dataclass
class Seed:
    """One web seed of the archive; records the ranges it sends, and can stall (while
    ``hold`` says so for a range, until ``gate`` is set) or corrupt what it sends."""

    url: str
    sent: list[tuple[str, int, int]] = field(default_factory=list)
    corrupt: bool = False
    hold: Callable[[str, int], bool] = lambda path, offset: False
    gate: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    def bytes_sent(self) -> int:
        return sum(length for _, _, length in self.sent)

    def reset(self) -> None:
        self.sent.clear()
        self.corrupt = False
        self.hold = lambda path, offset: False
        self.gate.set()


@dataclass
class Swarm:
    fx: FixtureArchive
    seeds: list[Seed]
    server_root: Path
    subsonic_password: str

    def subsonic(self, track_id: str) -> dict[str, str]:
        """Parameters of a Subsonic ``stream`` call for ``track_id``."""
        return {
            "id": f"tr-{track_id}",
            "u": USER,
            "p": self.subsonic_password,
            "v": "1.16.1",
            "c": "test",
            "f": "json",
        }

    def track(self, n: int) -> tuple[str, bytes]:
        """(public id, bytes) of packed track ``n``, read from the archive's volume."""
        conn = sqlite3.connect(self.fx.root / "catalog.sqlite3")
        try:
            collection, volume, offset, length = conn.execute(
                "SELECT l.collection, l.volume, l.offset, l.length FROM ledger l"
                " JOIN tracks t ON t.id = l.track_id WHERE t.public_id = ?",
                (f"syn:track:{n}",),
            ).fetchone()
        finally:
            conn.close()
        with open(self.fx.payload(collection) / "data" / volume, "rb") as f:
            f.seek(offset)
            return f"syn:track:{n}", f.read(length)


def _start_seed(root: Path, port: int) -> Seed:
    seed = Seed(f"http://127.0.0.1:{port}/torrents/")
    seed.gate.set()
    server = make_server(root, port=port)
    base: Any = server.RequestHandlerClass

    class Recording(base):  # type: ignore[misc]
        def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
            while seed.hold(self.path, offset) and not seed.gate.is_set():
                seed.gate.wait(0.05)
            seed.sent.append((self.path, offset, length))
            if not seed.corrupt:
                super()._copy(f, offset, length)
                return
            f.seek(offset)
            data = bytearray(f.read(length))
            data[0] ^= 0xFF
            self.wfile.write(bytes(data))

    server.RequestHandlerClass = Recording
    seed.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return seed


def _server_root(fx: FixtureArchive, server_root: Path) -> Path:
    """A server's root for ``fx``: its catalog and .torrent files, no audio."""
    (server_root / "torrents").mkdir(parents=True)
    shutil.copy(fx.root / "catalog.sqlite3", server_root / "catalog.sqlite3")
    conn = sqlite3.connect(server_root / "catalog.sqlite3")
    try:
        rebuild_search(conn)  # as publish does (the fixture writes rows directly)
        conn.commit()
    finally:
        conn.close()
    for torrent in (fx.root / "torrents").glob("*.torrent"):
        shutil.copy(torrent, server_root / "torrents" / torrent.name)
    (server_root / "phonotheca.toml").write_text(
        '[archive]\nname = "demo"\n[serve]\npassword_cost = 12\npublic_audio = true\n'
        # The peers' session talks to 127.0.0.1 only.
        '[mirror]\nlisten = "127.0.0.1:6881"\ndht = false\nlsd = false\nupnp = false\n'
        "natpmp = false\n"
    )
    return server_root


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    base = tmp_path_factory.mktemp("ondemand")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}/torrents/" for p in ports]
    fx = build_archive(base / "archive", web_seeds=urls, track_size=TRACK_SIZE)
    seeds = [_start_seed(fx.root, p) for p in ports]
    server_root = _server_root(fx, base / "server")
    store = StateStore(server_root / "state.sqlite3", password_cost=12)
    store.add_user(USER, PASSWORD)
    creds = store.rotate_subsonic_credentials(USER)
    store.close()
    try:
        yield Swarm(fx, seeds, server_root, creds.password)
    finally:
        for seed in seeds:
            seed.gate.set()
            seed.server.shutdown()
            seed.server.server_close()


@pytest.fixture
def seeds(swarm: Swarm) -> Iterator[list[Seed]]:
    for seed in swarm.seeds:
        seed.reset()
    yield swarm.seeds
    for seed in swarm.seeds:
        seed.reset()


def _context(swarm: Swarm, cache: Path, **serve: Any) -> ServeContext:
    settings = load_settings(swarm.server_root)
    options = {"on_demand": True, "cache_dir": str(cache), **serve}
    settings = replace(settings, serve=replace(settings.serve, **options))
    return ServeContext(settings=settings, roots=[swarm.server_root])


def _cached_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("??/*") if p.is_file())


def test_plays_a_track_it_does_not_hold_and_caches_it(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, data = swarm.track(3)
    ctx = _context(swarm, tmp_path / "cache")
    with _serving(create_app(ctx)) as client:
        info = client.get(f"/api/v1/tracks/{track_id}").json()
        assert not info["playable"]
        # A HEAD says what a GET would send, and fetches nothing.
        head = client.head(f"/tracks/{track_id}/audio")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        assert seeds[0].sent == [] and ctx.media.on_demand.fetches_started == 0
        got = client.get(f"/tracks/{track_id}/audio")
        assert got.status_code == 200, got.text
        assert got.content == data
        assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        # Only the pieces holding the track: at most the track and two pieces.
        fetched = seeds[0].bytes_sent()
        assert len(data) <= fetched <= len(data) + 2 * PIECE_LENGTH
        assert seeds[1].sent == []
        # In the cache once its sha256 is checked: played again with no byte asked of
        # any seed.
        cache = tmp_path / "cache"
        wait_until(lambda: bool(_cached_files(cache)), 30, "the track cached")
        assert [p.name for p in _cached_files(tmp_path / "cache")] == [
            hashlib.sha256(data).hexdigest()
        ]
        seeds[0].sent.clear()
        again = client.get(f"/tracks/{track_id}/audio", headers={"Range": "bytes=1000-1999"})
        assert again.status_code == 206 and again.content == data[1000:2000]
        assert seeds[0].sent == []
    assert ctx.media.on_demand.fetches_started == 1


def _last_piece_held(swarm: Swarm, n: int) -> Callable[[str, int], bool]:
    """A ``hold`` for the seed: the range holding the last piece of track ``n``."""
    conn = sqlite3.connect(swarm.fx.root / "catalog.sqlite3")
    try:
        collection, volume, offset, length = conn.execute(
            "SELECT l.collection, l.volume, l.offset, l.length FROM ledger l"
            " JOIN tracks t ON t.id = l.track_id WHERE t.public_id = ?",
            (f"syn:track:{n}",),
        ).fetchone()
    finally:
        conn.close()
    layout = read_layout(swarm.fx.torrent(collection))
    volume_file = layout.file(f"data/{volume}")
    last = layout.pieces(volume_file.offset + offset, length)[-1]
    last_at = last * layout.piece_length - volume_file.offset  # in the volume file
    return lambda path, at: path.endswith(volume) and at >= last_at


def test_first_bytes_and_ranges_arrive_before_the_last_piece(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, data = swarm.track(4)
    seeds[0].hold = _last_piece_held(swarm, 4)
    seeds[0].gate.clear()
    seeds[1].hold = seeds[0].hold
    ctx = _context(swarm, tmp_path / "cache")
    with _serving(create_app(ctx)) as client:
        with client.stream("GET", f"/tracks/{track_id}/audio") as response:
            assert response.status_code == 200
            stream = response.iter_raw()
            first = next(stream)
            assert first and data.startswith(first)
            # A seek into the middle while the last piece is still held back.
            middle = client.get(
                f"/tracks/{track_id}/audio", headers={"Range": "bytes=100000-100999"}
            )
            assert middle.status_code == 206 and middle.content == data[100000:101000]
            assert not seeds[0].gate.is_set()  # the last piece was never sent so far
            assert _cached_files(tmp_path / "cache") == []
            seeds[0].gate.set()
            rest = b"".join(stream)
        assert first + rest == data
    assert ctx.media.on_demand.fetches_started == 1


def test_many_clients_at_once_share_one_fetch(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, data = swarm.track(5)
    seeds[0].hold = _last_piece_held(swarm, 5)
    seeds[0].gate.clear()
    ctx = _context(swarm, tmp_path / "cache")
    results: list[bytes] = []
    with _serving(create_app(ctx)) as client:

        def play() -> None:
            results.append(client.get(f"/tracks/{track_id}/audio").content)

        threads = [threading.Thread(target=play) for _ in range(6)]
        for t in threads:
            t.start()
        # Every client is waiting on the same held piece; then it comes.
        seeds[0].gate.set()
        for t in threads:
            t.join(60)
    assert results == [data] * 6
    assert ctx.media.on_demand.fetches_started == 1
    assert seeds[0].bytes_sent() <= len(data) + 2 * PIECE_LENGTH


def test_a_seed_sending_bad_data_is_dropped(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, data = swarm.track(1)
    seeds[0].corrupt = True
    ctx = _context(swarm, tmp_path / "cache")
    with _serving(create_app(ctx)) as client:
        got = client.get(f"/tracks/{track_id}/audio")
        assert got.status_code == 200 and got.content == data
        # The corrupting seed sent one piece (in one or two files' ranges), then was
        # never asked again for this torrent.
        assert 0 < seeds[0].bytes_sent() <= PIECE_LENGTH
        assert seeds[1].bytes_sent() >= len(data)


def test_only_bad_data_is_a_clear_error_and_nothing_is_cached(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, _ = swarm.track(2)
    for seed in seeds:
        seed.corrupt = True
    cache = tmp_path / "cache"
    ctx = _context(swarm, cache)
    with _serving(create_app(ctx)) as client:
        got = client.get(f"/tracks/{track_id}/audio")
        assert got.status_code == 503
        body = got.json()
        assert body["torrent"] == "demo_pop-050-100_0001.torrent"
        assert "demo_pop-050-100_0001.torrent" in body["error"]
        assert "bad data" in body["error"]
        # Subsonic: error 70 naming the torrent.
        sub = client.get(
            "/rest/stream",
            params=swarm.subsonic(track_id),
        )
        error = sub.json()["subsonic-response"]["error"]
        assert error["code"] == 70 and "demo_pop-050-100_0001.torrent" in error["message"]
    assert _cached_files(cache) == []
    assert list((cache / "partial").iterdir()) == []


def test_a_fetch_that_cannot_start_in_time_is_error_70(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    track_id, _ = swarm.track(0)
    for seed in seeds:
        seed.hold = lambda path, offset: True
        seed.gate.clear()
    ctx = _context(swarm, tmp_path / "cache", on_demand_timeout=1.0)
    with _serving(create_app(ctx)) as client:
        sub = client.get(
            "/rest/stream",
            params=swarm.subsonic(track_id),
        )
        error = sub.json()["subsonic-response"]["error"]
        assert error["code"] == 70
        assert "demo_pop-050-100_0001.torrent" in error["message"]
        web = client.get(f"/tracks/{track_id}/audio")
        assert web.status_code == 504 and "demo_pop-050-100_0001.torrent" in web.json()["error"]
    for seed in seeds:
        seed.gate.set()


def test_the_cache_keeps_to_its_budget_least_recently_played_first(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    tracks = [swarm.track(n) for n in (6, 7, 8)]
    digests = [hashlib.sha256(d).hexdigest() for _, d in tracks]
    ctx = _context(swarm, cache, cache_budget=int(2.5 * TRACK_SIZE))
    with _serving(create_app(ctx)) as client:

        def play(n: int) -> None:
            track_id, data = tracks[n]
            assert client.get(f"/tracks/{track_id}/audio").content == data
            wait_until(lambda: (cache / digests[n][:2] / digests[n]).exists(), 30, "cached")

        play(0)
        play(1)
        play(0)  # played again: now the least recently played is the second
        play(2)
    held = {p.name for p in _cached_files(cache)}
    assert held == {digests[0], digests[2]}
    assert ctx.media.on_demand.cache.held() == [digests[0], digests[2]]
    assert sum(p.stat().st_size for p in _cached_files(cache)) <= 2.5 * TRACK_SIZE


def test_a_restart_plays_from_the_cache_and_never_serves_changed_bytes(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    good_id, good = swarm.track(9)
    bad_id, bad = swarm.track(10)
    with _serving(create_app(_context(swarm, cache))) as client:
        assert client.get(f"/tracks/{good_id}/audio").content == good
        assert client.get(f"/tracks/{bad_id}/audio").content == bad
        wait_until(lambda: len(_cached_files(cache)) == 2, 30, "both tracks cached")
    # Damage one cached file in place: same size, same mtime.
    damaged = cache / hashlib.sha256(bad).hexdigest()[:2] / hashlib.sha256(bad).hexdigest()
    st = damaged.stat()
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(bytes([bad[100] ^ 1]))
    os.utime(damaged, ns=(st.st_atime_ns, st.st_mtime_ns))
    # A crash between a file's rename and its row: the file is not counted, so it goes.
    stray = cache / "ff" / ("f" * 64)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"x" * 1000)
    for seed in seeds:
        seed.sent.clear()
    ctx = _context(swarm, cache)  # a new server process: a new engine on the same cache
    app = create_app(ctx)
    assert not stray.exists()
    with _serving(app) as client:
        assert client.get(f"/tracks/{good_id}/audio").content == good
        assert seeds[0].sent == []  # from the cache
        assert client.get(f"/tracks/{bad_id}/audio").content == bad
        assert seeds[0].bytes_sent() >= len(bad)  # fetched again, not served damaged
    assert ctx.media.on_demand.fetches_started == 1


def test_pages_api_and_subsonic_mark_tracks_played_from_the_swarm(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    packed, not_packed = "syn:track:3", "syn:track:17"  # the third band is metadata only
    with _serving(create_app(_context(swarm, tmp_path / "cache"))) as client:
        info = client.get(f"/api/v1/tracks/{packed}").json()
        assert info["availability"]["swarm"] and not info["availability"]["playable"]
        assert info["audio_url"] == "/tracks/syn%3Atrack%3A3/audio"
        bare = client.get(f"/api/v1/tracks/{not_packed}").json()
        assert not bare["availability"]["swarm"] and bare["audio_url"] is None
        page = client.get(f"/tracks/{packed}").text
        assert "Played from the swarm" in page and "demo_pop-050-100_0001.torrent" in page
        assert "Played from the swarm" not in client.get(f"/tracks/{not_packed}").text
        found = client.get("/", params={"q": "Song"}).text
        assert "from the swarm" in found
    # Without on_demand, the same track is "not here".
    with _serving(create_app(_context(swarm, tmp_path / "c2", on_demand=False))) as client:
        info = client.get(f"/api/v1/tracks/{packed}").json()
        assert not info["availability"]["swarm"] and info["audio_url"] is None
        assert client.get(f"/tracks/{packed}/audio").status_code == 404


def _random_ids(client: Any, swarm: Swarm) -> list[str]:
    params = {**swarm.subsonic(""), "size": "50", "musicFolderId": "1"}
    del params["id"]
    got = client.get("/rest/getRandomSongs", params=params).json()["subsonic-response"]
    return [s["id"] for s in got["randomSongs"].get("song", [])]


def test_random_songs_draw_swarm_tracks_only_when_asked(
    swarm: Swarm, seeds: list[Seed], tmp_path: Path
) -> None:
    with _serving(create_app(_context(swarm, tmp_path / "cache"))) as client:
        assert _random_ids(client, swarm) == []  # this server holds no track
    ctx = _context(swarm, tmp_path / "cache", on_demand_random=True)
    with _serving(create_app(ctx)) as client:
        drawn = _random_ids(client, swarm)
    # The 12 packed tracks, none of the 6 metadata-only ones.
    packed = {f"tr-syn:track:{n}" for n in range(12)}
    assert drawn and set(drawn) <= packed and len(drawn) == len(set(drawn))


def test_a_metadata_only_mirror_plays_the_archive_from_its_web_seed(
    published_seed: WebSeed,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """The whole point: a mirror with the catalog and no audio plays any packed track;
    the audio torrent comes from the listing (checked against its infohash)."""
    directory, _ = _mirror_dir(tmp_path)
    result = _metadata_only(published_seed, directory)
    assert result.exit_code == 0, result.output
    collection = published_seed.fx.collections[0]
    assert not (directory / "torrents" / f"{collection}.torrent").exists()
    settings = load_settings(directory)
    cache = tmp_path / "cache"
    serve = replace(settings.serve, on_demand=True, cache_dir=str(cache), public_audio=True)
    ctx = ServeContext(settings=replace(settings, serve=serve), roots=[directory])
    volume, offset, length = _ledger(directory, "syn:track:2")
    with open(published_seed.fx.payload(collection) / "data" / volume, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    with _serving(create_app(ctx)) as client:
        got = client.get("/tracks/syn:track:2/audio")
        assert got.status_code == 200 and got.content == data
    assert (cache / "torrents" / f"{collection}.torrent").read_bytes() == (
        published_seed.fx.torrent(collection).read_bytes()
    )
    assert any(collection in path for path in published_seed.sent)


def _ledger(root: Path, track_id: str) -> tuple[str, int, int]:
    conn = sqlite3.connect(root / "catalog.sqlite3")
    try:
        row = conn.execute(
            "SELECT l.volume, l.offset, l.length FROM ledger l JOIN tracks t"
            " ON t.id = l.track_id WHERE t.public_id = ?",
            (track_id,),
        ).fetchone()
    finally:
        conn.close()
    return str(row[0]), int(row[1]), int(row[2])


def test_pieces_come_from_peers_when_there_is_no_web_seed(tmp_path: Path) -> None:
    """A torrent with a tracker and no web seed: a libtorrent seeder on 127.0.0.1 sends
    the pieces (announced to Debian's opentracker), through the server's peers' session."""
    tracker = Tracker(tmp_path / "tracker", free_port())
    fx = build_archive(tmp_path / "archive", trackers=[tracker.url], track_size=TRACK_SIZE)
    torrents = [fx.torrent(c) for c in fx.collections]
    tracker.start([str(lt.torrent_info(str(t)).info_hashes().v1) for t in torrents])
    seeder = local_session()
    try:
        for torrent in torrents:
            seed_torrent(seeder, torrent, fx.root / "torrents")
        root = _server_root(fx, tmp_path / "server")
        settings = load_settings(root)
        serve = replace(settings.serve, on_demand=True, cache_dir=str(tmp_path / "cache"))
        ctx = ServeContext(settings=replace(settings, serve=serve), roots=[root])
        track_id = "syn:track:7"
        volume, offset, length = _ledger(fx.root, track_id)
        with open(fx.payload(fx.collections[1]) / "data" / volume, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        with _serving(create_app(ctx)) as client:
            got = client.get(f"/tracks/{track_id}/audio")
            assert got.status_code == 200, got.text
            assert got.content == data
        engine = ctx.media.on_demand
        assert engine.pieces.bytes_fetched == 0  # no web seed
        assert engine.peers is not None and engine.peers.bytes_received >= len(data)
    finally:
        del seeder
        tracker.stop()


UPLOAD_TO_UPLOAD = 37
"""libtorrent's error code ``upload_upload_connection`` (the binding names none)."""


def test_every_track_at_once_arrives_from_a_peer_that_keeps_the_connection(
    tmp_path: Path,
) -> None:
    """Every packed track played at once (two torrents, several tracks each, so torrents
    are shared, released and added again) arrives whole from one libtorrent seeder, and
    the seeder never closes a connection of the server's as one between two uploaders:
    a torrent added wanting nothing and given its pieces afterwards was "finished" at
    its first connections, told the seeder it only uploads, and was dropped (plays then
    waited for a reconnection, or failed after ``on_demand_timeout``). The server also
    connects out over TCP, not uTP."""
    tracker = Tracker(tmp_path / "tracker", free_port())
    fx = build_archive(tmp_path / "archive", trackers=[tracker.url], track_size=TRACK_SIZE)
    torrents = [fx.torrent(c) for c in fx.collections]
    hashes = [lt.torrent_info(str(t)).info_hashes().v1.to_bytes() for t in torrents]
    tracker.start([h.hex() for h in hashes])
    category = lt.alert.category_t
    seeder = local_session(
        alert_mask=int(category.connect_notification | category.peer_notification)
    )
    try:
        for torrent in torrents:
            seed_torrent(seeder, torrent, fx.root / "torrents")
        for h in hashes:
            wait_until(
                partial(lambda h: scrape_http(tracker.url, [h])[h].seeders == 1, h),
                30,
                "the seeder announced",
            )
        root = _server_root(fx, tmp_path / "server")
        serve = replace(
            load_settings(root).serve, on_demand=True, cache_dir=str(tmp_path / "cache")
        )
        local = SessionOptions(listen="127.0.0.1:0", dht=False, lsd=False, upnp=False, natpmp=False)
        engine = OnDemand([root], serve, local)
        assert engine.peers is not None
        # Its first announce says "started" (wanting pieces), not "paused" (done).
        first = engine.finder.find(fx.collections[0])
        engine.peers.use(first, range(1, 2))
        handle = engine.peers.handle(first)
        assert handle is not None
        wait_until(
            lambda: any(t["verified"] and not t["updating"] for t in handle.trackers()),
            30,
            "the server's first announce",
        )
        assert [t["start_sent"] for t in handle.trackers()] == [True]
        engine.peers.release(first)
        conn = sqlite3.connect(fx.root / "catalog.sqlite3")
        try:
            tracks = [
                SwarmTrack(*row)
                for row in conn.execute(
                    "SELECT t.public_id, l.collection, l.volume, l.offset, l.length, l.sha256"
                    " FROM ledger l JOIN tracks t ON t.id = l.track_id"
                    " WHERE l.collection IS NOT NULL ORDER BY t.id"
                )
            ]
        finally:
            conn.close()
        assert len({t.collection for t in tracks}) == 2 and len(tracks) >= 8
        got: dict[str, bytes] = {}
        errors: list[str] = []

        def play(track: SwarmTrack) -> None:
            try:
                opened = engine.open(track)
                assert not isinstance(opened, Path)
                got[track.id] = b"".join(opened.chunks(0, track.length))
            except OnDemandError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=play, args=(t,)) for t in tracks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.close()
        assert errors == []
        assert {k: hashlib.sha256(v).hexdigest() for k, v in got.items()} == {
            t.id: t.sha256 for t in tracks
        }
        assert engine.pieces.bytes_fetched == 0  # no web seed: every piece from the peer
        alerts = seeder.pop_alerts()
        incoming = [a for a in alerts if isinstance(a, lt.incoming_connection_alert)]
        assert incoming and {a.socket_type for a in incoming} == {lt.socket_type_t.tcp}
        dropped = [
            a.message()
            for a in alerts
            if isinstance(a, lt.peer_disconnected_alert)
            and a.error.category() == lt.libtorrent_category()
            and a.error.value() == UPLOAD_TO_UPLOAD
        ]
        assert dropped == []
    finally:
        del seeder
        tracker.stop()
