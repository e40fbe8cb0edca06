"""``phonotheca serve`` as a user runs it: a real process on a random port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from phonotheca.cli import main
from tests.serve.conftest import free_port


def test_refuses_a_directory_without_catalog(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--archive", str(tmp_path)])
    assert result.exit_code != 0
    assert "no catalog.sqlite3" in result.output
    result = CliRunner().invoke(main, ["serve", "--archive", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "not a directory" in result.output


def test_serves_an_archive_and_stops_on_sigterm(built_archive: Path, tmp_path: Path) -> None:
    port = free_port()
    second = tmp_path / "disk2"
    second.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phonotheca.cli",
            "serve",
            "--archive",
            str(built_archive),
            "--archive",
            str(second),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/search", params={"q": "a"})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.json()["tracks"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert f"http://127.0.0.1:{port}/" in out.decode()
