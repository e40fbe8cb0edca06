"""``phonotheca serve`` as a user runs it: a real process on a random port."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from tests.peers import wait_until
from tests.processes import alive, descendants, start_in_a_terminal_group, stop_all, stop_with
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
    # uvicorn shuts down cleanly and hands the signal back; the command ends with 0.
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}/" in out.decode()


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "how"), [(1, "ctrl-c"), (2, "ctrl-c"), (2, "kill")])
def test_ctrl_c_and_kill_end_the_server_and_its_workers_with_one_line(
    built_archive: Path, tmp_path: Path, workers: int, how: str
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "phonotheca.cli", "serve", "--archive", str(built_archive)]
    with open(log, "w") as out:
        proc = start_in_a_terminal_group(
            [*command, "--port", str(port), "--workers", str(workers)], out
        )

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/torrents.json").status_code == 200
        except httpx.TransportError:
            return False

    children: set[int] = set()
    try:
        wait_until(up, 60, "the server to answer")
        children = descendants(proc.pid)
        if workers > 1:
            assert len(children) >= workers
        printed = len(log.read_text())
        stop_with(proc, how)
        assert proc.wait(30) == 0, log.read_text()
        wait_until(lambda: not alive(children), 30, "the worker processes to end")
    finally:
        stop_all(proc, children)
    output = log.read_text()
    assert "Traceback" not in output, output
    assert output[printed:].splitlines() == [f"stopped serving http://127.0.0.1:{port}/"]
