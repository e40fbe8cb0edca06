"""Subsonic list calls as the catalog grows: p50/p99 per call at each size, and the growth.

For each size (default 100,000 and 1,000,000 tracks; ``--tracks`` for others, such as
10,000,000) a synthetic catalog is imported (cached under the work directory), a tenth of
its tracks is marked held (packed in ten collections present on disk, as after a build;
the tracks whose id ends in 3, the collection by the id's tens digit),
and the library file is made (its time is printed: the cost an import or build pays).
Then ``phonotheca serve`` answers, one request at a time, 50 requests of each call in
both music folders (1: in this mirror, 2: whole catalog), with offsets drawn over the
whole list (deep pages included). The table gives, per size, the first request's time
(which may render a prepared answer, such as getArtists') and p50/p99 in ms of the
others, and the ratio
of the largest size's p99 to the smallest's: a call whose cost does not grow with the
catalog stays near 1. Targets (issue #18): p99 <= 50 ms at 10 M, ratio <= 2. The web
pages (home, artist, album, genre, search) and the JSON API's lists are measured the same
way (folder "web": they list the whole catalog). As latencies on a shared machine vary
with its load, a second table gives the median number of SQLite virtual machine steps per
request (from a server in the bench's process): the database work, which the load does
not change. The catalog gets playlists (one per 100 tracks, and one of 100,000
entries, paged by ``getPlaylist``'s ``offset``/``size``).

Then, at each size: ``getArtists``, ``getIndexes`` and ``getArtist`` of the artist with
most albums repeated with ``If-None-Match`` (p50/p99 of the 304s; target <= 5 ms), and 16
concurrent clients sending a shuffled mix of every call above, first alone, then while one
more client keeps asking for a query that never ends by itself (only the server's query
budget stops it): p99 of the bounded calls (target <= 100 ms), the unbounded ones
(getArtists, getIndexes, getArtist of the artist with most albums) apart.
For that run the server is the real app with that one extra Subsonic call, started by
this script in a process of its own. Last, the cost of keeping the library file: a full
build beside one held collection dropped and gained back in place.

    .venv/bin/python bench/serve_scale.py [--tracks 100000 1000000] [--workdir DIR]
        [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR, percentile, phonotheca_cmd, run_measured, synthetic_catalog
from phonotheca.archive import init_archive
from phonotheca.catalog import library, schema
from phonotheca.catalog.search import search_is_stale
from phonotheca.serve.state import StateStore
from phonotheca.serve.subsonic.prepared import PREPARED_DIR
from serve import Connection, free_port, running

COLLECTIONS = 10
CLIENTS = 16
WEB = 0
"""The "folder" of the web pages and JSON API calls (they list the whole catalog)."""
Params = Callable[[random.Random], dict[str, Any]]
Call = tuple[str, Params]
"""(path, parameters per request)."""

SLOW_SERVER = r"""
# The app of phonotheca serve with one more Subsonic call, benchSlow, whose query never
# ends by itself (bench/serve_scale.py's mixed run): a factory for uvicorn.

from phonotheca.serve.app import create_app_from_environment
from phonotheca.serve.subsonic import ENDPOINTS, system

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def slow(call):
    call.conn.execute(ENDLESS).fetchone()
    return {}


def create():
    ENDPOINTS["benchSlow"] = slow
    system.PUBLIC = system.PUBLIC | {"benchSlow"}
    return create_app_from_environment()
"""
"""The module :func:`slow_server` runs: ``phonotheca serve``'s app plus ``benchSlow``."""
SERVE_SLOW = r"""
import os
import sys
from pathlib import Path
from uvicorn.supervisors import Multiprocess
from phonotheca.serve.app import ROOTS_VARIABLE
from phonotheca.serve.listener import TcpConfig
from phonotheca.serve.security import load_key
from phonotheca.serve.state import StateStore
from phonotheca.serve.subsonic.prepared import PREPARED_DIR

root, port = Path(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, str(root))  # bench_slow_server, here and in the (spawned) workers
StateStore(root / "state.sqlite3").close()
load_key(root)
os.environ[ROOTS_VARIABLE] = str(root)
config = TcpConfig(
    "bench_slow_server:create", factory=True, workers=os.cpu_count() or 1,
    host="127.0.0.1", port=port, log_level="warning",
)
Multiprocess(config, sockets=[config.bind_socket()]).run()
"""
"""Serves :data:`SLOW_SERVER` as ``phonotheca serve`` does: one process per CPU."""


def slow_server(root: Path, port: int) -> list[str]:
    """The command of the mixed run's server (:data:`SERVE_SLOW`)."""
    (root / "bench_slow_server.py").write_text(SLOW_SERVER)
    return [sys.executable, "-c", SERVE_SLOW, str(root), str(port)]


def prepared_root(workdir: Path, tracks: int) -> tuple[Path, str]:
    """An archive of ``tracks`` synthetic tracks, a tenth held; and a user's API key."""
    root = workdir / f"serve-scale-{tracks}"
    if not (root / "catalog.sqlite3").exists() or _cut_short(root):
        # An import cut short (the bench stopped) is resumed where it stopped.
        root.mkdir(parents=True, exist_ok=True)
        src = synthetic_catalog(workdir, tracks)
        run = run_measured(phonotheca_cmd("import", "jsonl", str(src), "--archive", str(root)))
        print(f"  imported {tracks:,} tracks in {run.seconds:.0f} s", flush=True)
    init_archive(root, "bench")
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        if conn.execute("SELECT count(*) FROM collections").fetchone()[0] == 0:
            with schema.transaction(conn):
                conn.execute(
                    "INSERT INTO plans(id, created_at, budget, settings) VALUES(1, 'b', 1, '{}')"
                )
                conn.execute(
                    "INSERT INTO ledger(track_id, plan_id, status, tier, collection, volume,"
                    " offset, length, codec, position)"
                    f" SELECT id, 1, 'packed', 'original', 'bench_pop-000-100_' ||"
                    f" printf('%04d', 1 + id / 10 % {COLLECTIONS}), 'bench.0001.tar', 512, 1000,"
                    " 'flac',"
                    f" row_number() OVER (PARTITION BY id / 10 % {COLLECTIONS} ORDER BY id) - 1"
                    " FROM tracks WHERE id % 10 = 3"
                )
                for n in range(1, COLLECTIONS + 1):
                    conn.execute(
                        "INSERT INTO collections(name, kind, seq, plan_id, status, items,"
                        " built_at) VALUES(?, 'audio', ?, 1, 'published', 0, 'b')",
                        (f"bench_pop-000-100_{n:04d}", n),
                    )
        for n in range(1, COLLECTIONS + 1):
            (root / "torrents" / f"bench_pop-000-100_{n:04d}" / "data").mkdir(
                parents=True, exist_ok=True
            )
        add_playlists(conn, tracks)
        t0 = time.monotonic()
        if library.refresh(conn):
            print(f"  library file made in {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        conn.close()
    store = StateStore(root / "state.sqlite3")
    try:
        if store.get_user("bench") is None:
            store.add_user("bench", "bench password")
        key = store.rotate_subsonic_credentials("bench").api_key
    finally:
        store.close()
    return root, key


def add_playlists(conn: sqlite3.Connection, tracks: int) -> None:
    """Catalog playlists (FORMAT.md §4.8), once: one per 100 tracks (at least 1,000) of
    20 entries each, and ``pl:bench:big`` of up to 100,000 entries, a tenth unmatched."""
    if conn.execute("SELECT 1 FROM playlists LIMIT 1").fetchone() is not None:
        return
    small, big = max(1000, tracks // 100), min(tracks, 100_000)
    with schema.transaction(conn):
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {small})"
            " INSERT INTO playlists(id, public_id, title, creator, entries, matched)"
            " SELECT i, printf('pl:bench:%08d', i), 'Bench playlist ' || i, 'bench', 20, 20"
            " FROM n"
        )
        conn.execute(
            "WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < 19)"
            " INSERT INTO playlist_entries(playlist_id, position, track_id, match)"
            f" SELECT p.id, k.j, 1 + (p.id * 7919 + k.j * 104729) % {tracks}, 'mbid'"
            " FROM playlists p, k ORDER BY p.id, k.j"
        )
        conn.execute(
            "INSERT INTO playlists(id, public_id, title, creator, entries, matched)"
            f" VALUES({small + 1}, 'pl:bench:big', 'The big one', 'bench', {big},"
            f" {big - big // 10})"
        )
        conn.execute(
            f"WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < {big - 1})"
            " INSERT INTO playlist_entries(playlist_id, position, track_id, match, title)"
            f" SELECT {small + 1}, j, CASE WHEN j % 10 = 9 THEN NULL"
            f" ELSE 1 + j * 13 % {tracks} END, CASE WHEN j % 10 = 9 THEN NULL ELSE 'mbid' END,"
            " 'Entry ' || j FROM k"
        )
        conn.execute(
            "INSERT INTO playlist_search(rowid, title, creator)"
            " SELECT id, title, creator FROM playlists"
        )


def maintenance(root: Path) -> tuple[float, float, float, int]:
    """(seconds of a full build of the library file, of dropping one held collection in
    place, of gaining it back in place; tracks of that collection), in this run."""
    catalog = root / "catalog.sqlite3"
    conn = schema.connect(catalog, readonly=True)
    try:
        held = library.held_collections(conn, root)
        (k,) = conn.execute(
            "SELECT count(*) FROM ledger WHERE collection = ? AND status = 'packed'", (held[0],)
        ).fetchone()
    finally:
        conn.close()
    scratch = root / "library-full.sqlite3"
    t0 = time.monotonic()
    library.build(catalog, scratch, held)
    full = time.monotonic() - t0
    scratch.unlink()
    out = root / library.LIBRARY_FILE
    t0 = time.monotonic()
    if library.update(catalog, out, held[1:]) is None:
        raise SystemExit(f"{out}: not changed in place")
    drop = time.monotonic() - t0
    t0 = time.monotonic()
    if library.update(catalog, out, held) is None:
        raise SystemExit(f"{out}: not changed in place")
    return full, drop, time.monotonic() - t0, int(k)


def _cut_short(root: Path) -> bool:
    """Whether the cached archive's import did not finish: its records, or its indexes
    (the search index is made after the others; the library file is made below)."""
    conn = schema.connect(root / "catalog.sqlite3", readonly=True)
    try:
        return library.importing(conn) or search_is_stale(conn)
    finally:
        conn.close()


def calls(root: Path, folder: int) -> dict[str, Call]:
    """name -> (path, parameters per request) for one music folder (or :data:`WEB`)."""
    lists = 2 if folder == WEB else folder
    shelf = sqlite3.connect(f"{(root / library.LIBRARY_FILE).as_uri()}?mode=ro", uri=True)
    try:

        def size(what: int, kind: int) -> int:
            row = shelf.execute(
                "SELECT sum(n) FROM ranges WHERE lib = ? AND what = ? AND kind = ?",
                (lists, what, kind),
            ).fetchone()
            return int(row[0] or 0)

        albums = size(library.ALBUM, library.ALBUMS_BY_ID)
        songs = size(library.SONG, library.SONGS_ALL)
        genre_ids = [
            r[0]
            for r in shelf.execute(
                "SELECT key FROM ranges WHERE lib = ? AND what = ? AND kind = ? ORDER BY n DESC",
                (lists, library.SONG, library.SONGS_BY_GENRE),
            )
        ][:5]
        artists = [
            r[0]
            for r in shelf.execute(
                "SELECT artist_id FROM artist_order WHERE lib = ? AND artist_id % 97 = 0", (lists,)
            )
        ]
        prolific = shelf.execute(
            "SELECT artist_id, albums FROM artist_order WHERE lib = ? ORDER BY albums DESC LIMIT 1",
            (lists,),
        ).fetchone()
    finally:
        shelf.close()
    catalog = sqlite3.connect(f"{(root / 'catalog.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        genres = [
            catalog.execute("SELECT name FROM genres WHERE id = ?", (g,)).fetchone()[0]
            for g in genre_ids
        ]
        artist_pids = [
            catalog.execute("SELECT public_id FROM artists WHERE id = ?", (a,)).fetchone()[0]
            for a in [prolific[0], *artists[:50]]
        ]
        album_pids = [
            r[0] for r in catalog.execute("SELECT public_id FROM albums WHERE id % 97 = 0 LIMIT 50")
        ]
        words = [
            r[0].split()[0]
            for r in catalog.execute("SELECT title FROM tracks WHERE id % 997 = 0 LIMIT 50")
            if r[0].split()
        ]
        big, playlists = catalog.execute(
            "SELECT entries, (SELECT max(id) FROM playlists) FROM playlists"
            " WHERE public_id = 'pl:bench:big'"
        ).fetchone()
    finally:
        catalog.close()
    top_artist, artist_pids = artist_pids[0], artist_pids[1:]
    if folder == WEB:
        return _web_calls([top_artist, *artist_pids], album_pids, genres, words, prolific[1])

    def album_list(kind: str) -> Params:
        return lambda r: {"type": kind, "size": 50, "offset": r.randrange(max(1, albums - 50))}

    return {
        name: (f"/rest/{method}", _in_folder(params, folder))
        for name, (method, params) in {
            "getArtists": ("getArtists", lambda r: {}),
            "getIndexes": ("getIndexes", lambda r: {}),
            "getGenres": ("getGenres", lambda r: {}),
            "getArtist": ("getArtist", lambda r: {"id": "ar-" + r.choice(artist_pids)}),
            "getArtist most albums": ("getArtist", lambda r: {"id": "ar-" + top_artist}),
            "albums byName deep": ("getAlbumList2", album_list("alphabeticalByName")),
            "albums byArtist deep": ("getAlbumList2", album_list("alphabeticalByArtist")),
            "albums newest deep": ("getAlbumList2", album_list("newest")),
            "albums random": ("getAlbumList2", lambda r: {"type": "random", "size": 50}),
            "albums byYear": (
                "getAlbumList2",
                lambda r: {
                    "type": "byYear",
                    "fromYear": 1960,
                    "toYear": 2020,
                    "size": 50,
                    "offset": r.randrange(1000),
                },
            ),
            "albums byGenre": (
                "getAlbumList2",
                lambda r: {
                    "type": "byGenre",
                    "genre": r.choice(genres),
                    "size": 50,
                    "offset": r.randrange(100),
                },
            ),
            "songsByGenre deep": (
                "getSongsByGenre",
                lambda r: {"genre": genres[0], "count": 50, "offset": r.randrange(songs // 20 + 1)},
            ),
            "playlist deep": (
                "getPlaylist",
                lambda r: {"id": "pl:bench:big", "size": 500, "offset": r.randrange(big - 500)},
            ),
            "playlists deep": (
                "getPlaylists",
                lambda r: {"catalogAfter": f"pl:bench:{r.randrange(playlists - 50):08d}"},
            ),
            "randomSongs": ("getRandomSongs", lambda r: {"size": 20}),
            "randomSongs genre": (
                "getRandomSongs",
                lambda r: {"size": 20, "genre": r.choice(genres)},
            ),
            "search3 words": ("search3", lambda r: {"query": r.choice(words)}),
            "search3 sync deep": (
                "search3",
                lambda r: {
                    "query": "",
                    "artistCount": 0,
                    "albumCount": 0,
                    "songCount": 500,
                    "songOffset": r.randrange(max(1, songs - 500)),
                },
            ),
        }.items()
    }


def _in_folder(params: Params, folder: int) -> Params:
    return lambda r: {**params(r), "musicFolderId": folder, "f": "json"}


def _web_calls(
    artists: list[str], albums: list[str], genres: list[str], words: list[str], most: int
) -> dict[str, Call]:
    """The web pages and the JSON API's lists (the whole catalog; no music folder).
    ``artists[0]`` has most albums (``most``), whose artist page is paged deep."""
    from urllib.parse import quote

    top, artists = artists[0], artists[1:]

    def deep(total: int, page: int) -> int:
        return max(0, total - page)

    return {
        "web home": ("/", lambda r: {}),
        "web artist": (
            "/artists/{}",
            lambda r: {"": quote(r.choice(artists), safe="")},
        ),
        "web artist most albums": (
            "/artists/{}",
            lambda r: {"": quote(top, safe=""), "at": r.randrange(1 + deep(most, 50))},
        ),
        "web album": ("/albums/{}", lambda r: {"": quote(r.choice(albums), safe="")}),
        "web genre deep": (
            "/genres/{}",
            lambda r: {"": quote(genres[0], safe=""), "at": r.randrange(1 + deep(10_000, 100))},
        ),
        "web search": ("/", lambda r: {"q": r.choice(words)}),
        "api search": ("/api/v1/search", lambda r: {"q": r.choice(words)}),
        "api artist albums": (
            "/api/v1/artists/{}",
            lambda r: {"": quote(r.choice(artists), safe=""), "offset": 0, "limit": 50},
        ),
        "api shuffle": ("/api/v1/shuffle", lambda r: {"n": 20}),
    }


def request_of(path: str, params: dict[str, Any], key: str) -> tuple[str, dict[str, Any]]:
    """The URL path and query of one request (``""`` fills the path's ``{}``)."""
    params = dict(params)
    if "{}" in path:
        path = path.format(params.pop(""))
    if path.startswith("/rest/"):
        params["apiKey"] = key
    return path, params


FAILED: dict[tuple[int, str], list[str]] = {}
"""Calls answered with an error, per (folder, call): a query stopped by the server's time
budget (``[serve] query_budget_ms``) is a result to report, not a reason to stop."""


def check(path: str, r: httpx.Response, call: tuple[int, str] | None = None) -> None:
    """Stop on a broken answer; note an error answer of ``call`` in :data:`FAILED`."""
    error = None
    if r.status_code in (429, 503) and call is not None:
        error = f"HTTP {r.status_code}"
    elif r.status_code != 200:
        raise SystemExit(f"{path}: HTTP {r.status_code} {r.text[:200]}")
    elif path.startswith("/rest/"):
        body = r.json()["subsonic-response"]
        if body["status"] != "ok":
            if call is None:
                raise SystemExit(f"{path}: {body}")
            error = str(body.get("error", {}).get("message", body))
    if error is not None and call is not None:
        FAILED.setdefault(call, []).append(error)


def all_calls(root: Path) -> dict[tuple[int, str], Call]:
    return {(folder, name): c for folder in (1, 2, WEB) for name, c in calls(root, folder).items()}


def measure(port: int, key: str, root: Path, requests: int) -> dict[tuple[int, str], list[float]]:
    out: dict[tuple[int, str], list[float]] = {}
    rng = random.Random(1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        client.get("/rest/ping", params={"apiKey": key})
        # The first call makes the library file if the server finds it stale: not measured.
        client.get("/rest/getGenres", params={"apiKey": key, "f": "json"})
        for (folder, name), (path, params) in all_calls(root).items():
            times = []
            for _ in range(requests + 1):  # the first one is reported apart (cold)
                url, query = request_of(path, params(rng), key)
                t0 = time.perf_counter()
                r = client.get(url, params=query)
                times.append((time.perf_counter() - t0) * 1000)
                check(url, r, (folder, name))
            out[(folder, name)] = times
    return out


def not_modified(
    port: int, key: str, root: Path, requests: int
) -> dict[str, tuple[int, int, float, list[float]]]:
    """(bytes of the full answer, items in it, ms of the first request, ms of each 304)
    of the unbounded calls (:data:`UNBOUNDED`) repeated with ``If-None-Match``, from a
    server that has not answered them before (the first request makes the answer)."""
    out: dict[str, tuple[int, int, float, list[float]]] = {}
    calls = all_calls(root)
    rng = random.Random(4)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        for name in UNBOUNDED:
            for folder in (1, 2):
                url, query = request_of(*_call_of(calls[(folder, name)], rng), key)
                t0 = time.perf_counter()
                first = client.get(url, params=query)
                ms = (time.perf_counter() - t0) * 1000
                check(url, first)
                etag = first.headers["etag"]
                body = first.json()["subsonic-response"]
                shown = body.get("artist", {}).get("album") or [
                    a for group in _index_of(body) for a in group["artist"]
                ]
                times = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = client.get(url, params=query, headers={"If-None-Match": etag})
                    times.append((time.perf_counter() - t0) * 1000)
                    if r.status_code != 304:
                        raise SystemExit(f"{name} with If-None-Match: HTTP {r.status_code}")
                out[f"{name} folder {folder}"] = (len(first.content), len(shown), ms, times)
    return out


def _call_of(call: Call, rng: random.Random) -> tuple[str, dict[str, Any]]:
    path, params = call
    return path, params(rng)


def _index_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    lists = body.get("artists") or body.get("indexes") or {}
    return list(lists.get("index", []))


UNBOUNDED = ("getArtists", "getIndexes", "getArtist most albums")
"""Calls whose answer the API leaves unbounded: reported apart in the mixed run."""
Mixed = tuple[list[float], list[float], list[float]]
"""(ms of the bounded calls, ms of the unbounded ones, ms of the endless ones)."""


async def _mix(port: int, paths: list[tuple[str, str]], clients: int) -> list[tuple[str, float]]:
    """(call, ms) of each of ``paths`` ((call, URL)), ``clients`` at a time."""
    queue = list(reversed(paths))
    out: list[tuple[str, float]] = []

    async def client() -> None:
        conn = Connection(port)
        try:
            while queue:
                name, path = queue.pop()
                t0 = time.perf_counter()
                status, _ = await conn.get(path)
                out.append((name, (time.perf_counter() - t0) * 1000))
                if status != 200:
                    raise SystemExit(f"GET {path}: HTTP {status}")
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


def mixed(root: Path, key: str, requests: int, endless: bool) -> Mixed:
    """:data:`CLIENTS` clients through a shuffled list of every call (``requests`` of
    each), against ``phonotheca serve``'s app with an endless call added
    (:data:`SLOW_SERVER`, one process per CPU as ``serve`` runs by default); with
    ``endless``, one more client asks for it again and again. The unbounded calls'
    prepared answers are made first (by every server process, as their first request in
    :func:`measure`): the mix measures a server in its steady state."""
    from urllib.parse import urlencode

    rng = random.Random(3)
    paths: list[tuple[str, str]] = []
    warm: list[tuple[str, str]] = []
    for (_, name), (path, params) in all_calls(root).items():
        for n in range(requests + (name in UNBOUNDED)):
            url, query = request_of(path, params(rng), key)
            (warm if n == requests else paths).append((name, f"{url}?{urlencode(query)}"))
    rng.shuffle(paths)
    port = free_port()
    cmd = slow_server(root, port)
    slow_times: list[float] = []
    log = root / ("serve-scale-slow.log" if endless else "serve-scale-mixed.log")
    with running(cmd, port, log):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            check(
                "/rest/getGenres",
                client.get("/rest/getGenres", params={"apiKey": key, "f": "json"}),
            )
        # Over several connections, so that every server process makes them.
        asyncio.run(_mix(port, warm * 4, 8))

        async def both() -> list[tuple[str, float]]:
            done = False

            async def slow() -> None:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    while not done:
                        t0 = time.perf_counter()
                        r = await client.get("/rest/benchSlow", params={"f": "json"}, timeout=60)
                        slow_times.append((time.perf_counter() - t0) * 1000)
                        if r.json()["subsonic-response"]["status"] != "failed":
                            raise SystemExit(f"benchSlow was not stopped: {r.text[:200]}")

            task = asyncio.create_task(slow()) if endless else None
            try:
                return await _mix(port, paths, CLIENTS)
            finally:
                done = True
                if task is not None:
                    await task

        times = asyncio.run(both())
    bounded = [ms for name, ms in times if name not in UNBOUNDED]
    return bounded, [ms for name, ms in times if name in UNBOUNDED], slow_times


class StepCounter:
    """SQLite virtual machine steps run by the server's catalog and library connections:
    a measure of a request's database work that the machine's load does not change."""

    EVERY = 100

    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> int:
        self.ticks += 1
        return 0

    def hook(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.set_progress_handler(self.tick, self.EVERY)
        return conn


def count_steps(root: Path, key: str, requests: int) -> dict[tuple[int, str], int]:
    """Median VM steps per request of each call, from a server in this process (requests
    one at a time, so each step belongs to the request under way)."""
    import socket
    import threading

    import uvicorn

    from phonotheca.archive import open_archive
    from phonotheca.serve.app import create_app
    from phonotheca.serve.context import ServeContext
    from phonotheca.serve.library import ServerLibrary

    counter = StepCounter()
    catalog, reader = ServeContext.catalog, ServerLibrary.reader
    ServeContext.catalog = lambda self: counter.hook(catalog(self))  # type: ignore[method-assign]
    ServerLibrary.reader = lambda self: counter.hook(reader(self))  # type: ignore[method-assign]
    app = create_app(ServeContext(open_archive(root).settings, [root]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    out: dict[tuple[int, str], int] = {}
    rng = random.Random(2)
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with httpx.Client(base_url=base, timeout=600) as client:
            client.get("/rest/getGenres", params={"apiKey": key, "f": "json"})
            for (folder, name), (path, params) in all_calls(root).items():
                steps = []
                for _ in range(requests + 1):
                    url, query = request_of(path, params(rng), key)
                    counter.ticks = 0
                    check(url, client.get(url, params=query), (folder, name))
                    steps.append(counter.ticks * counter.EVERY)
                # An unbounded call's first request makes the answer the others reuse.
                out[(folder, name)] = (
                    steps[0]
                    if name in UNBOUNDED
                    else int(percentile([float(s) for s in steps[1:]], 0.5))
                )
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        ServeContext.catalog, ServerLibrary.reader = catalog, reader  # type: ignore[method-assign]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--no-maintenance",
        action="store_true",
        help="skip timing a full build of the library file beside the in-place changes",
    )
    args = parser.parse_args()
    results: dict[int, dict[tuple[int, str], list[float]]] = {}
    steps: dict[int, dict[tuple[int, str], int]] = {}
    cached: dict[int, dict[str, tuple[int, int, float, list[float]]]] = {}
    busy: dict[int, tuple[Mixed, Mixed]] = {}
    kept: dict[int, tuple[float, float, float, int]] = {}
    failures: dict[int, dict[tuple[int, str], list[str]]] = {}
    for tracks in args.tracks:
        print(f"{tracks:,} tracks (load {load()})", flush=True)
        root, key = prepared_root(args.workdir, tracks)
        if not args.no_maintenance:
            kept[tracks] = maintenance(root)
            full, drop, gain, k = kept[tracks]
            print(
                f"  library file: full build {full:.1f} s; a collection of {k:,} tracks"
                f" dropped in place {drop:.1f} s, gained {gain:.1f} s",
                flush=True,
            )
        steps[tracks] = count_steps(root, key, 10)
        # The answers prepared while counting are kept on disk for every server process:
        # the fresh server's first requests are to make them again.
        shutil.rmtree(root / PREPARED_DIR, ignore_errors=True)
        port = free_port()
        cmd = phonotheca_cmd("serve", "--archive", str(root), "--port", str(port))
        with running(cmd, port, root / "serve-scale.log"):
            cached[tracks] = not_modified(port, key, root, args.requests)
            results[tracks] = measure(port, key, root, args.requests)
        failures[tracks] = dict(FAILED)
        FAILED.clear()
        mix = args.requests // 10 or 1
        busy[tracks] = (mixed(root, key, mix, False), mixed(root, key, mix, True))
        print(f"  measured (load {load()})", flush=True)
    sizes = args.tracks
    head = "".join(f" {f'{n:,} first, p50/p99 ms':>29}" for n in sizes)
    print(f"\n{'folder':>6} {'call':<22}{head} {'p99 ratio':>10}")
    for folder, name in results[sizes[0]]:
        cells = ""
        for n in sizes:
            first, *times = results[n][(folder, name)]
            cells += (
                f" {first:>7.1f}, {percentile(times, 0.5):>8.1f} /{percentile(times, 0.99):>9.1f}"
            )
        low = percentile(results[sizes[0]][(folder, name)][1:], 0.99)
        high = percentile(results[sizes[-1]][(folder, name)][1:], 0.99)
        shown = "web" if folder == WEB else str(folder)
        print(f"{shown:>6} {name:<22}{cells} {high / low:>10.2f}")
    for n in sizes:
        for (folder, name), errors in failures[n].items():
            shown = "web" if folder == WEB else str(folder)
            print(f"{shown:>6} {name:<22} at {n:,}: {len(errors)} errors, as {errors[0][:50]}")
    head = "".join(f" {f'{n:,}':>12}" for n in sizes)
    print("\nSQLite VM steps per request (median; unbounded calls: the first; thousands)")
    print(f"{'folder':>6} {'call':<22}{head}")
    for folder, name in steps[sizes[0]]:
        cells = "".join(f" {steps[n][(folder, name)] / 1000:>12.1f}" for n in sizes)
        shown = "web" if folder == WEB else str(folder)
        print(f"{shown:>6} {name:<22}{cells}")
    print(
        "\nunbounded calls from a fresh server: the first request (which makes the"
        "\nanswer), its cost per item, and repeats with If-None-Match (304; target p99"
        " <= 5 ms)"
    )
    for name in cached[sizes[0]]:
        for n in sizes:
            nbytes, items, first_ms, times = cached[n][name]
            print(
                f"{name:<30} {n:>11,}: {nbytes / 1000:>8,.0f} kB, {items:>9,} items, first"
                f" {first_ms:>8,.0f} ms ({first_ms * 1000 / max(1, items):>6.0f} us/item);"
                f" 304 p50 {percentile(times, 0.5):.1f} p99 {percentile(times, 0.99):.1f}"
            )
    print(f"\n{CLIENTS} clients, every call mixed, without and with one more client asking")
    print("an endless query (target: p99 of the bounded calls <= 100 ms with it); ms")
    for n in sizes:
        for (bounded, unbounded, slow), label in zip(busy[n], ("alone", "endless"), strict=True):
            print(
                f"{n:>11,} {label:<7}: {len(bounded):,} bounded p50 {percentile(bounded, 0.5):.0f}"
                f" p99 {percentile(bounded, 0.99):.0f}; {len(unbounded)} unbounded p50"
                f" {percentile(unbounded, 0.5):.0f} p99 {percentile(unbounded, 0.99):.0f}"
                + (
                    f"; {len(slow)} endless stopped after p50 {percentile(slow, 0.5):,.0f}"
                    if slow
                    else ""
                )
            )
    print("\nlibrary file: a full build, and one held collection dropped / gained in place")
    for n in kept:
        full, drop, gain, k = kept[n]
        print(
            f"{n:>11,}: full {full:.1f} s; collection of {k:,} tracks dropped {drop:.1f} s,"
            f" gained {gain:.1f} s"
        )
    print(f"load average at the end: {load()}")
    return 0


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    raise SystemExit(main())
