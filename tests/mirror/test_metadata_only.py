"""``mirror run DIR --metadata-only``: the newest metadata release alone makes DIR servable.

A real archive (built, then published signed by the real ``publish``) is served by the
project's own web seed (``serve-files``' server), which records every path it sends
bytes of; the mirror has no peer, only that web seed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import libtorrent as lt
import pytest
import uvicorn
from click.testing import CliRunner, Result
from fastapi import FastAPI

from phonotheca.catalog.search import rebuild_search
from phonotheca.cli import main
from phonotheca.config import load_settings
from phonotheca.mirror.run import MirrorRequest, prepare_mirror, start_metadata_only
from phonotheca.serve.app import create_app
from phonotheca.serve.context import ServeContext
from phonotheca.torrents import minisign
from phonotheca.torrents.keys import ArchiveKeys, generate_keys, load_secret
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.metadata import CATALOG_FILE
from phonotheca.torrents.publish import publish
from phonotheca.torrents.webseed import make_server
from tests.mirror.swarm import MIRROR_TOML
from tests.peers import FixtureArchive, build_archive, free_port, local_session, wait_until

META_1 = "demo_metadata_0001"
META_2 = "demo_metadata_0002"


@dataclass
class WebSeed:
    """The publisher's archive behind ``serve-files``' server; while ``gate`` is cleared,
    requests for paths ending in ``held`` wait (a seed stalled on one file)."""

    fx: FixtureArchive
    public_key: str
    url: str
    sent: list[str] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    held: str = "\0"
    server: Any = None

    def republish(self, title: str) -> None:
        """A new metadata release: one track renamed, published again (signed)."""
        conn = self.fx.archive.connect()
        try:
            conn.execute("UPDATE tracks SET title = ? WHERE public_id = 'syn:track:0'", (title,))
            conn.commit()
            _publish(self.fx, conn)
        finally:
            conn.close()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def _publish(fx: FixtureArchive, conn: sqlite3.Connection) -> None:
    """Publish as an operator would: search index first (the fixture writes rows directly)."""
    rebuild_search(conn)
    secret = load_secret(ArchiveKeys(fx.root), lambda: b"")
    publish(fx.archive, conn, now=dt.datetime.now(dt.UTC), secret=secret)


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[WebSeed]:
    port = free_port()
    fx = build_archive(tmp_path / "archive", web_seeds=[f"http://127.0.0.1:{port}/torrents/"])
    public = generate_keys(ArchiveKeys(fx.root), None, cost=minisign.INTERACTIVE)
    conn = fx.archive.connect()
    try:
        _publish(fx, conn)
    finally:
        conn.close()
    web = WebSeed(fx, public.to_base64(), f"http://127.0.0.1:{port}/torrents.json")
    web.gate.set()
    server = make_server(fx.root, port=port)
    base: Any = server.RequestHandlerClass

    class Recording(base):  # type: ignore[misc, valid-type]
        def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
            web.sent.append(self.path)
            if self.path.endswith(web.held):
                web.gate.wait()
            super()._copy(f, offset, length)

    server.RequestHandlerClass = Recording
    web.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield web
    finally:
        web.stop()


def _mirror_dir(tmp_path: Path) -> tuple[Path, int]:
    d = tmp_path / "mirror"
    d.mkdir()
    port = free_port()
    (d / "phonotheca.toml").write_text(MIRROR_TOML.format(port=port))
    return d, port


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["mirror", "run", *args])


def _metadata_only(seed: WebSeed, directory: Path, *extra: str) -> Result:
    return _run(
        str(directory),
        "--torrents",
        seed.url,
        "--metadata-only",
        "--publisher-key",
        seed.public_key,
        *extra,
    )


@contextmanager
def _serving(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` under uvicorn on 127.0.0.1, and a client of it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn started")
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def _no_audio_sent(seed: WebSeed) -> None:
    """Not one byte of an audio collection left the web seed."""
    assert seed.sent
    assert not [p for p in seed.sent if any(c in p for c in seed.fx.collections)]


def test_metadata_only_makes_the_directory_servable(
    seed: WebSeed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _ = _mirror_dir(tmp_path)
    result = _metadata_only(seed, directory, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["complete"] and report["metadata_torrent"] == META_1
    assert report["listing_verified"] and not report["seeded"]
    assert report["tracks"] == seed.fx.tracks
    assert report["catalog"] == str(directory / "catalog.sqlite3")
    # The locator where a builder's archive has it, the same bytes as the release's.
    assert report["locator"] == str(directory / LOCATOR_FILE)
    published = (seed.fx.root / LOCATOR_FILE).read_bytes()
    assert (directory / LOCATOR_FILE).read_bytes() == published
    # Zero bytes of audio: nothing asked of the web seed, nothing on disk.
    _no_audio_sent(seed)
    assert sorted(p.name for p in (directory / "torrents").iterdir()) == [
        META_1,
        f"{META_1}.torrent",
    ]
    # Servable: the whole catalog, playing nothing.
    ctx = ServeContext(settings=load_settings(directory), roots=[directory])
    with _serving(create_app(ctx)) as client:
        found = client.get("/api/v1/search", params={"q": "Song", "limit": 100})
        assert found.status_code == 200
        tracks = found.json()["tracks"]
        assert len(tracks) == seed.fx.tracks
        assert not any(t["playable"] for t in tracks)
        page = client.get("/tracks/syn:track:3")
        assert page.status_code == 200 and "Song 3" in page.text
    # fetch --locator reads the mirror's copy (its session on 127.0.0.1 only).
    work = tmp_path / "work"
    work.mkdir()
    (work / "phonotheca.toml").write_text(MIRROR_TOML.format(port=free_port()))
    monkeypatch.chdir(work)
    fetched = CliRunner().invoke(
        main,
        [
            "fetch",
            "syn:track:3",
            "--torrents",
            seed.url,
            "--publisher-key",
            seed.public_key,
            "--locator",
            str(directory / LOCATOR_FILE),
            "--output",
            str(tmp_path / "track.opus"),
            "--json",
        ],
    )
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["found_by"] == "locator"


def test_a_newer_release_replaces_the_catalog_and_drops_the_old_one(
    seed: WebSeed, tmp_path: Path
) -> None:
    directory, _ = _mirror_dir(tmp_path)
    first = _metadata_only(seed, directory)
    assert first.exit_code == 0, first.output
    assert META_1 in first.stderr and "no audio downloaded" in first.stderr
    # A server reading the old catalog keeps reading it whole while it is replaced.
    reader = sqlite3.connect(f"file:{directory / 'catalog.sqlite3'}?mode=ro", uri=True)
    old_locator = (directory / LOCATOR_FILE).stat().st_ino
    seed.republish("Renamed Song")
    # The old release is kept while deleting it passes max_delete (a whole release is more
    # than 10 % of what such a mirror holds), named, and never unpacked again.
    second = _metadata_only(seed, directory)
    assert second.exit_code == 0, second.output
    assert f"{META_1}: obsolete, replaced by {META_2}" in second.stderr
    assert "--yes-delete-more" in second.stderr
    try:
        assert reader.execute("SELECT count(*) FROM tracks").fetchone() == (seed.fx.tracks,)
        title = reader.execute("SELECT title FROM tracks WHERE public_id = 'syn:track:0'")
        assert title.fetchone() == ("Song 0",)
    finally:
        reader.close()
    with sqlite3.connect(f"file:{directory / 'catalog.sqlite3'}?mode=ro", uri=True) as new:
        title = new.execute("SELECT title FROM tracks WHERE public_id = 'syn:track:0'")
        assert title.fetchone() == ("Renamed Song",)
    new.close()
    assert (directory / LOCATOR_FILE).stat().st_ino != old_locator
    assert (directory / LOCATOR_FILE).read_bytes() == (seed.fx.root / LOCATOR_FILE).read_bytes()
    assert (
        json.loads((directory / ".mirror" / "catalog.json").read_text())["metadata_torrent"]
        == META_2
    )
    # It goes when the operator says so: confirmed (--yes without a terminal) and past the cap.
    refused = _metadata_only(seed, directory, "--yes-delete-more")
    assert refused.exit_code == 1 and "--yes" in refused.stderr, refused.output
    third = _metadata_only(seed, directory, "--yes", "--yes-delete-more")
    assert third.exit_code == 0, third.output
    # Nothing obsolete kept: the superseded release went, with its reason logged.
    held = sorted(p.name for p in (directory / "torrents").iterdir())
    assert held == [META_2, f"{META_2}.torrent"]
    assert not list((directory / ".mirror" / "resume").glob(f"{META_1}*"))
    events = (directory / ".mirror" / "events.log").read_text()
    assert f"dropped {META_1}" in events and f"obsolete, replaced by {META_2}" in events
    assert not list(directory.glob("*.partial"))
    _no_audio_sent(seed)


def test_seed_keeps_seeding_the_metadata_torrent(seed: WebSeed, tmp_path: Path) -> None:
    directory, port = _mirror_dir(tmp_path)
    plan = prepare_mirror(
        MirrorRequest(directory, source=seed.url, publisher_key=seed.public_key, metadata_only=True)
    )
    stop = threading.Event()
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(start_metadata_only(plan, stop, seed=True))
    )
    thread.start()
    try:
        catalog = directory / "catalog.sqlite3"
        wait_until(catalog.exists, 60, "the catalog unpacked")
        assert thread.is_alive()  # still seeding, not stopped at the catalog
        # The web seed goes away: the mirror is the only source left.
        seed.stop()
        client_dir = tmp_path / "client"
        session = local_session()
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(str(seed.fx.torrent(META_1)))
        params.save_path = str(client_dir)
        handle = session.add_torrent(params)

        def downloaded() -> bool:
            status = handle.status()
            if not status.is_seeding and status.num_peers == 0:
                handle.connect_peer(("127.0.0.1", port))
            return bool(status.is_seeding)

        wait_until(downloaded, 60, "the metadata torrent from the mirror")
        got = client_dir / META_1 / CATALOG_FILE
        assert got.read_bytes() == (seed.fx.payload(META_1) / CATALOG_FILE).read_bytes()
        del session
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert results and results[0].complete and results[0].seeded


def test_a_killed_run_resumes(seed: WebSeed, tmp_path: Path) -> None:
    directory, _ = _mirror_dir(tmp_path)
    # The release's last file stalls until the test lets go: the pieces before it arrive.
    seed.held = f"/{META_1}/{LOCATOR_FILE}"
    seed.gate.clear()
    args = [
        sys.executable,
        "-m",
        "phonotheca",
        "mirror",
        "run",
        str(directory),
        "--torrents",
        seed.url,
        "--metadata-only",
        "--publisher-key",
        seed.public_key,
        "--save-interval",
        "0.2",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    verified = directory / ".mirror" / "verified" / f"{META_1}.json"

    def some_verified() -> bool:
        try:
            return bool(json.loads(verified.read_bytes())["have"].strip("A="))
        except (OSError, ValueError):
            return False

    try:
        wait_until(some_verified, 60, "some pieces verified")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not json.loads(verified.read_bytes())["complete"]
    assert not (directory / "catalog.sqlite3").exists()
    seed.gate.set()
    result = _run(str(directory), "--metadata-only")  # the last run's listing URL and key
    assert result.exit_code == 0, result.output
    with sqlite3.connect(f"file:{directory / 'catalog.sqlite3'}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM tracks").fetchone() == (seed.fx.tracks,)
    conn.close()
    assert json.loads(verified.read_bytes())["complete"]
    _no_audio_sent(seed)


def test_an_unsigned_listing_is_refused(seed: WebSeed, tmp_path: Path) -> None:
    (seed.fx.root / "torrents.json.minisig").unlink()
    directory, _ = _mirror_dir(tmp_path)
    refused = _run(str(directory), "--torrents", seed.url, "--metadata-only")
    assert refused.exit_code == 1
    assert "unsigned" in refused.stderr and "Traceback" not in refused.output
    assert not (directory / "catalog.sqlite3").exists()
    assert not [p for p in seed.sent if "_metadata_" in p]
    allowed = _run(str(directory), "--torrents", seed.url, "--metadata-only", "--allow-unsigned")
    assert allowed.exit_code == 0, allowed.output
    assert (directory / "catalog.sqlite3").exists()


def test_options_that_do_not_go_together(tmp_path: Path) -> None:
    directory, _ = _mirror_dir(tmp_path)
    for args, hint in (
        (["--metadata-only", "--budget", "1GB", "--torrents", "x"], "--budget"),
        (["--seed", "--budget", "1GB", "--torrents", "x"], "--seed"),
        (["--json", "--budget", "1GB", "--torrents", "x"], "--json"),
    ):
        result = _run(str(directory), *args)
        assert result.exit_code == 2 and hint in result.stderr, result.output


def test_seed_ends_on_sigterm_with_one_line(seed: WebSeed, tmp_path: Path) -> None:
    directory, _ = _mirror_dir(tmp_path)
    args = [sys.executable, "-m", "phonotheca", "mirror", "run", str(directory)]
    args += ["--torrents", seed.url, "--metadata-only", "--seed"]
    args += ["--publisher-key", seed.public_key]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until((directory / "catalog.sqlite3").exists, 60, "the catalog unpacked")
        assert process.poll() is None  # seeding on
    finally:
        process.send_signal(signal.SIGTERM)
        out, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors.decode()
    last = errors.decode().strip().splitlines()[-1]
    assert last.startswith(f"{META_1}: verified, catalog of") and out == b""
