"""Published collections reach real clients: from our web seed alone, and through opentracker.

The v1 infohash equals mktorrent's and transmission-show reads our torrents: see
tests/torrents/test_make.py (not repeated here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import libtorrent as lt
import pytest
from click.testing import CliRunner

from phonotheca.build import validate_collection
from phonotheca.cli import main
from phonotheca.torrents.webseed import make_server
from tests.conftest import REPO
from tests.peers import (
    FixtureArchive,
    build_archive,
    free_port,
    local_session,
    run_opentracker,
    seed,
    transmission_settings,
    wait_until,
)

TIMEOUT = 60.0


@pytest.fixture
def web_seeded(tmp_path: Path) -> Iterator[FixtureArchive]:
    """An archive whose torrents name our ``serve-files`` server as their only source."""
    root = tmp_path / "archive"
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/torrents/"
        fx = build_archive(root, web_seeds=[url], track_size=40_000)
        yield fx
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _bag_valid(bag: Path) -> None:
    assert validate_collection(bag) == []
    bagit = subprocess.run(
        [str(REPO / ".venv" / "bin" / "bagit.py"), "--validate", str(bag)],
        capture_output=True,
        text=True,
    )
    assert bagit.returncode == 0, bagit.stderr


def test_libtorrent_downloads_from_the_web_seed_alone(
    web_seeded: FixtureArchive, tmp_path: Path
) -> None:
    """libtorrent is strict about ranges: a server that gets them wrong never completes."""
    fx = web_seeded
    name = fx.collections[0]
    session = local_session()
    try:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(str(fx.torrent(name)))
        params.save_path = str(tmp_path / "lt")
        handle = session.add_torrent(params)
        wait_until(lambda: bool(handle.status().is_seeding), TIMEOUT, "libtorrent download")
        assert handle.status().num_peers <= 1  # the web seed, no peer
    finally:
        del session
    _bag_valid(tmp_path / "lt" / name)


def test_aria2_downloads_from_the_web_seed_alone(
    web_seeded: FixtureArchive, tmp_path: Path
) -> None:
    fx = web_seeded
    name = fx.collections[1]
    target = tmp_path / "aria2"
    run = subprocess.run(
        [
            "aria2c",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            f"--listen-port={free_port()}",
            "--seed-time=0",
            "--file-allocation=none",
            "--console-log-level=warn",
            "--summary-interval=0",
            f"--dir={target}",
            str(fx.torrent(name)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    _bag_valid(target / name)


@pytest.mark.slow
def test_transmission_downloads_through_opentracker(tmp_path: Path) -> None:
    """Transmission 3 finds the swarm through opentracker (whitelist written by publish) and
    downloads from a libtorrent seeder; it dials no 127.0.0.1 peer itself, so the seeder
    connects to it (docs/INTEROP.md)."""
    with run_opentracker(tmp_path / "tracker") as tracker:
        fx = build_archive(tmp_path / "archive", trackers=[tracker.http_announce])
        result = CliRunner().invoke(
            main, ["publish", "--archive", str(fx.root), "--whitelist", str(tracker.whitelist)]
        )
        assert result.exit_code == 0, result.output
        tracker.reload()
        name = fx.collections[0]
        # Transmission has uTP off (settings.json): libtorrent would try uTP first and wait.
        session = local_session(enable_outgoing_utp=False, enable_incoming_utp=False)
        config, target, done = tmp_path / "tr-config", tmp_path / "tr", tmp_path / "done"
        port = free_port()
        transmission_settings(config, port)
        script = tmp_path / "finished.sh"
        script.write_text(f"#!/bin/sh\ntouch {done}\n")
        script.chmod(0o755)
        target.mkdir()
        torrent = tmp_path / f"{name}.torrent"
        shutil.copy(fx.torrent(name), torrent)
        client = subprocess.Popen(
            [
                "transmission-cli",
                "-g",
                str(config),
                "-w",
                str(target),
                "-p",
                str(port),
                "-f",
                str(script),
                "-B",
                "-M",
                "-U",
                "-D",
                str(torrent),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        try:
            handle = seed(session, fx.torrent(name), fx.archive.torrents_dir)

            def finished() -> bool:
                if client.poll() is not None:
                    raise AssertionError(f"transmission-cli exited with {client.returncode}")
                if not done.exists() and handle.status().num_peers == 0:
                    handle.connect_peer(("127.0.0.1", port))
                return done.exists()

            wait_until(finished, 90, "Transmission download")
        finally:
            client.terminate()
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
            del session
        _bag_valid(target / name)
