"""A small built archive with real audio, a user, and a live server on 127.0.0.1.

The archive is made the way a user makes one: a synthetic catalog and synthetic audio
files (``phonotheca synth``), imported (``import jsonl``, ``import files``), planned and
built (``phonotheca build``: bags of tar volumes, torrents, the ledger). The smallest
audio collection is then deleted from disk: its tracks are "in a torrent this server
does not hold".
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from phonotheca.archive import open_archive
from phonotheca.cli import main
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.serve.state import StateStore, SubsonicCredentials

ARCHIVE_NAME = "demo"
USER, WEB_PASSWORD = "alice", "correct horse battery"


@dataclass
class Packed:
    """A packed track: where its bytes are, per the ledger."""

    public_id: str
    collection: str
    volume: str
    offset: int
    length: int
    source: Path

    def tar_bytes(self, root: Path) -> bytes:
        with (root / "torrents" / self.collection / "data" / self.volume).open("rb") as f:
            f.seek(self.offset)
            return f.read(self.length)


@dataclass
class Fixture:
    root: Path
    present: list[Packed]
    absent: Packed
    creds: SubsonicCredentials


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="package")
def archive_fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    base = tmp_path_factory.mktemp("subsonic")
    root = base / ARCHIVE_NAME
    catalog, audio = base / "catalog.jsonl", base / "audio"
    _run("synth", "catalog", "--tracks", "40", str(catalog))
    _run(
        "synth", "audio", "--catalog", str(catalog), "--tracks", "10", str(audio),
        "--min-seconds", "1", "--max-seconds", "2",
    )  # fmt: skip
    _run("init", str(root), "--name", ARCHIVE_NAME)
    # Fast password hashes (test_accounts in tests/serve checks the default cost), and
    # room for the failed sign-ins the tests make on purpose from 127.0.0.1.
    with open(root / "phonotheca.toml", "a", encoding="utf-8") as f:
        f.write("\n[serve]\npassword_cost = 12\nsignin_failures = 1000\n")
    _run("import", "jsonl", "--archive", str(root), str(catalog))
    _run(
        "import", "files", "--archive", str(root), "--workers", "0", "--no-fingerprints",
        str(audio),
    )  # fmt: skip
    _run("plan", "--archive", str(root), "--budget", "1GB", "--exclude-tier", "opus")
    _run("build", "--archive", str(root), "--workers", "0")
    conn = open_archive(root).connect(readonly=True)
    try:
        rows = conn.execute(
            "SELECT t.public_id, l.collection, l.volume, l.offset, l.length, s.path"
            " FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " JOIN source_files s ON s.id = l.source_file_id"
            " WHERE l.status = 'packed' ORDER BY t.id"
        ).fetchall()
        # The smallest audio collection plays "a torrent this server does not hold".
        (absent_collection,) = conn.execute(
            "SELECT name FROM collections WHERE kind = 'audio' ORDER BY items, name LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    packed = [Packed(r[0], r[1], r[2], r[3], r[4], Path(r[5])) for r in rows]
    present = [p for p in packed if p.collection != absent_collection]
    absent = [p for p in packed if p.collection == absent_collection]
    assert len(present) >= 3 and absent, "the synthetic audio should fill several collections"
    shutil.rmtree(root / "torrents" / absent_collection)
    store = StateStore(root / "state.sqlite3", password_cost=12)
    store.add_user(USER, WEB_PASSWORD)
    creds = store.rotate_subsonic_credentials(USER)
    store.close()
    return Fixture(root, present, absent[0], creds)


class LiveServer:
    """The real app under uvicorn on 127.0.0.1, on a free port, in a thread."""

    def __init__(self, root: Path) -> None:
        archive = open_archive(root)
        self.ctx = ServeContext(archive.settings, [root])
        self.app = create_app(self.ctx)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", ws="none", http="h11"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="package")
def live(archive_fixture: Fixture) -> Iterator[LiveServer]:
    server = LiveServer(archive_fixture.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
