"""A small built archive with real audio, and servers over it (in-process and live).

The archive is made once per session with the real commands: synth catalog and audio,
import, plan, build, publish; plus a few hostile records (markup in titles, a track
with a path-like id) to check escaping and lookups.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from playwright.sync_api import Browser, sync_playwright

from phonotheca.cli import main
from phonotheca.config import load_settings
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.state import StateStore

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium, which the browser tests drive through Playwright."""
USER = "alice"
PASSWORD = "correct horse battery staple"
FAST_COST = 12
FAST_SETTINGS = f"\n[serve]\npassword_cost = {FAST_COST}\n"
"""Password hashes at N = 2^12 keep the tests fast; test_accounts checks the default."""
HOSTILE_ALBUM = "<script>alert(1)</script>"
HOSTILE_TITLE = "Quotes \"double\" & 'single' <b>bold</b>"
# Long names: words longer than a phone's line must break somewhere, the others must not.
LONG_TITLE = (
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichensammlungsgeschichte"
    " (Live at the Großer Musikvereinssaal, Vienna)"
)
LONG_ALBUM = (
    "Konzertmitschnittsammlungsveröffentlichungsausgabe: The Complete Unabridged"
    " Recordings of an Extraordinarily Verbose Title"
)
LONG_ALBUM_ID = "test:album:long"
LONG_ARTIST = "Orchestre Philharmonique de Radio France et Chœur Extraordinairement Prolongé"


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _hostile_records() -> list[dict[str, object]]:
    artist = {"id": "test:artist:evil", "name": "Evil <img src=x onerror=alert(2)>"}
    album = {"id": "test:album:evil", "title": HOSTILE_ALBUM, "artists": [artist]}
    long_artist = {"id": "test:artist:long", "name": LONG_ARTIST}
    long_album = {"id": LONG_ALBUM_ID, "title": LONG_ALBUM, "artists": [long_artist]}
    return [
        {
            "id": "test:track:evil",
            "title": HOSTILE_TITLE,
            "artists": [artist],
            "album": album,
            "track_number": 1,
            "duration_ms": 1000,
            "popularity": 1,
        },
        {
            "id": "test:track:long",
            "title": LONG_TITLE,
            "artists": [long_artist],
            "album": long_album,
            "track_number": 1,
            "duration_ms": 1000,
            "popularity": 1,
        },
        {
            "id": "test:track:../../etc/passwd",
            "title": "Path-like id",
            "artists": [artist],
            "album": album,
            "track_number": 2,
            "duration_ms": 1000,
            "popularity": 1,
        },
    ]


@pytest.fixture(scope="session")
def built_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built and published archive; tests must not change it (copy it first)."""
    base = tmp_path_factory.mktemp("serve-archive")
    catalog = base / "catalog.jsonl"
    audio = base / "audio"
    arc = base / "arc"
    _run("synth", "catalog", "--tracks", "300", str(catalog))
    _run(
        "synth",
        "audio",
        "--catalog",
        str(catalog),
        "--tracks",
        "12",
        str(audio),
        "--min-seconds",
        "1.5",
        "--max-seconds",
        "2",
    )
    hostile = base / "hostile.jsonl"
    hostile.write_text("".join(json.dumps(r) + "\n" for r in _hostile_records()), encoding="utf-8")
    _run("init", str(arc))
    with open(arc / "phonotheca.toml", "a", encoding="utf-8") as f:
        f.write(FAST_SETTINGS)
    _run("import", "jsonl", "--archive", str(arc), str(catalog), str(hostile))
    _run("import", "files", "--archive", str(arc), str(audio))
    _run("plan", "--archive", str(arc), "--budget", "1GB", "--exclude-tier", "opus")
    _run("build", "--archive", str(arc), "--workers", "0")
    _run("publish", "--archive", str(arc))
    StateStore(arc / "state.sqlite3", password_cost=FAST_COST).add_user(USER, PASSWORD)
    return arc


def make_app(root: Path | list[Path], **serve: object) -> FastAPI:
    roots = root if isinstance(root, list) else [root]
    settings = load_settings(roots[0])
    settings = replace(settings, serve=replace(settings.serve, **serve))  # type: ignore[arg-type]
    return create_app(ServeContext(settings=settings, roots=roots))


@pytest.fixture(scope="session")
def app(built_archive: Path) -> FastAPI:
    """Default settings: public catalog, audio for signed-in users only."""
    return make_app(built_archive)


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A fresh client (no cookies) of the default server."""
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        yield c


def sign_in(client: httpx.Client, user: str = USER, password: str = PASSWORD) -> None:
    page = client.get("/signin")
    token = csrf_from(page.text)
    r = client.post(
        "/signin",
        data={"username": user, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_from(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture
def signed_in(client: httpx.Client) -> httpx.Client:
    sign_in(client)
    return client


def packed_tracks(root: Path) -> list[dict[str, object]]:
    """Packed tracks as the index files describe them (not through the server's code)."""
    out = []
    for index in sorted((root / "torrents").glob("*/data/index.jsonl")):
        for line in index.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "codec" in entry and entry.get("codec"):
                entry["collection"] = index.parent.parent.name
                out.append(entry)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


def copy_archive(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("session.key"))
    return dst


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (tests using it skip where it is not installed)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield b
        finally:
            b.close()
