"""phonotheca mirror end to end: a real console-script process, a real swarm, SIGTERM/kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from phonotheca.build import validate_collection
from tests.mirror.conftest import Swarm, mirror_dir
from tests.mirror.swarm import run_env

PHONOTHECA = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "phonotheca"
TIMEOUT = 60.0


def start(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PHONOTHECA), "mirror", str(directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_env(),
    )


def status(directory: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(PHONOTHECA), "mirror", "status", str(directory), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=run_env(),
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def wait_seeding(directory: Path, proc: subprocess.Popen[str], count: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mirror exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        report = status(directory)
        current = report["status"] or {}
        torrents = current.get("torrents", [])
        if current.get("pid") != proc.pid or current.get("state") != "running":
            pass  # the status file of an earlier run
        elif len(torrents) == count and all(t["state"] == "seeding" for t in torrents):
            return report
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"not seeding within {TIMEOUT} s: {report}; {proc.communicate()[1]}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    return stderr


def test_mirror_downloads_seeds_and_resumes_without_rehash(swarm: Swarm, tmp_path: Path) -> None:
    published = swarm.published
    directory = mirror_dir(tmp_path)
    listing = str(published.listing)

    dry = subprocess.run(
        [
            str(PHONOTHECA),
            "mirror",
            str(directory),
            "--torrents",
            listing,
            "--budget",
            "10MB",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=run_env(),
        check=True,
    )
    assert "3 torrent(s)" in dry.stderr
    assert not (directory / "torrents").exists()

    proc = start(directory, "--torrents", listing, "--budget", "10MB")
    try:
        report = wait_seeding(directory, proc, 3)
        assert report["running"] and report["pid"] == proc.pid
        # The status can say "seeding" a moment before the completion is handled and the
        # metadata torrent's catalog unpacked: wait for it before stopping.
        deadline = time.monotonic() + TIMEOUT
        while not (directory / "catalog.sqlite3").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        stderr = stop(proc)
    finally:
        proc.kill()
    assert "stopped" in stderr
    torrents = directory / "torrents"
    for name, entry in published.entries.items():
        assert (torrents / f"{name}.torrent").read_bytes() == (
            published.torrents / f"{name}.torrent"
        ).read_bytes()
        verified = json.loads((directory / ".mirror" / "verified" / f"{name}.json").read_text())
        assert verified["complete"] is True
        if entry.kind == "audio":
            assert validate_collection(torrents / name) == []
    # The catalog came out of the metadata torrent.
    with sqlite3.connect(f"file:{directory / 'catalog.sqlite3'}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM tracks").fetchone() == (500,)
    assert json.loads((directory / "torrents.json").read_text())["archive"] == "demo"
    after_stop = status(directory)
    assert not after_stop["running"] and after_stop["status"]["state"] == "stopped"
    # The signed listing's key was pinned on first use, and its signature kept beside it.
    assert after_stop["trust"]["pinned_by"] == "first use"
    assert after_stop["trust"]["publisher_key"] == published.public_key
    assert (directory / "torrents.json").read_bytes() == published.listing.read_bytes()
    assert (directory / "torrents.json.minisig").exists()

    # Restart: flags come from the last run, complete data is not hashed again.
    proc = start(directory)
    try:
        report = wait_seeding(directory, proc, 3)
        assert [t["checks"] for t in report["status"]["torrents"]] == [0, 0, 0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    killed = status(directory)
    assert not killed["running"], killed
    assert "without saying so" in killed["status"].get("note", ""), killed

    # After kill -9: still no re-hash, and the data is intact.
    proc = start(directory)
    try:
        report = wait_seeding(directory, proc, 3)
        assert [t["checks"] for t in report["status"]["torrents"]] == [0, 0, 0]
        stop(proc)
    finally:
        proc.kill()
    for name, entry in published.entries.items():
        if entry.kind == "audio":
            assert validate_collection(torrents / name) == []
