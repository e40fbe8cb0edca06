"""``make demo`` (``python -m phonotheca.demo``) as a stranger runs it, on a small catalog:
twice on one folder, serving, mirrored from its own web seed, stopped by signals."""

from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import free_port, wait_until
from tests.processes import (
    alive,
    cmdline,
    descendants,
    start_in_a_terminal_group,
    stop_all,
    stop_with,
)

pytestmark = pytest.mark.slow

BUDGET = "1MB"


@dataclass(frozen=True)
class Demo:
    root: Path
    port: int
    first_output: str

    def args(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "phonotheca.demo",
            "--dir",
            str(self.root),
            "--tracks",
            "2000",
            "--audio-tracks",
            "12",
            "--budget",
            BUDGET,
            "--port",
            str(self.port),
            *extra,
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A demo folder after a first run that stopped before serving."""
    root = tmp_path_factory.mktemp("demo") / "demo-archive"
    d = Demo(root, free_port(), "")
    return Demo(root, d.port, _run(d.args("--no-serve")))


def _published(root: Path) -> dict[str, str | None]:
    conn = sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, infohash_v1 FROM collections").fetchall()
    finally:
        conn.close()
    return dict(rows)


def _count(root: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def _torrent_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "torrents").glob("*.torrent"))}


def test_a_second_run_reuses_the_folder_and_publishes_nothing_new(demo: Demo) -> None:
    assert "metadata release demo_metadata_0001: new" in demo.first_output
    before = _published(demo.root)
    torrents = _torrent_files(demo.root)
    plans = _count(demo.root, "SELECT count(*) FROM plans")
    assert any(name.startswith("demo_pop-") for name in before)
    again = _run(demo.args("--no-serve"))
    assert "metadata release demo_metadata_0001: unchanged catalog, kept" in again
    assert "$ phonotheca import" not in again and "$ phonotheca plan" not in again
    assert _published(demo.root) == before
    assert _torrent_files(demo.root) == torrents
    assert _count(demo.root, "SELECT count(*) FROM plans") == plans
    listing = json.loads((demo.root / "torrents.json").read_text())
    assert listing["base_url"] == demo.url
    for entry in listing["torrents"]:
        assert f"{demo.url}torrents/" in entry["web_seeds"], entry["name"]


def _start(demo: Demo, log: Path) -> subprocess.Popen[str]:
    """The demo serving, in its own process group (as a terminal runs it)."""
    with open(log, "w") as out:
        process = start_in_a_terminal_group(demo.args("--workers", "2"), out)

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{demo.url}torrents.json", timeout=60) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(up, 120, "the demo to serve")
    return process


def _stop(process: subprocess.Popen[str], log: Path, send: str) -> str:
    """Send the signal; return what the demo printed after it, once it has exited and
    every process it started is gone."""
    children = descendants(process.pid)
    assert children, "the server runs worker processes"
    printed = len(log.read_text())
    try:
        stop_with(process, send)
        assert process.wait(60) == 0, log.read_text()
        wait_until(lambda: not alive(children), 30, "the demo's children to end")
    finally:
        stop_all(process, children)
    output = log.read_text()
    assert "Traceback" not in output and "Error" not in output, output
    return output[printed:]


def _mirror(demo: Demo, printed: str) -> None:
    """The mirror command the demo prints, run as printed until every torrent is
    complete, then stopped with Ctrl-C, as the demo's instructions say."""
    command = shlex.split(printed)
    directory = Path(command[command.index("mirror") + 1])
    directory.mkdir()
    # Nothing but the web seed: no DHT, LSD or port mapping beyond 127.0.0.1.
    (directory / "phonotheca.toml").write_text(
        "[mirror]\ndht = false\nlsd = false\nupnp = false\nnatpmp = false\n"
    )
    mirror = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    names = {e["name"] for e in json.loads((demo.root / "torrents.json").read_text())["torrents"]}

    def complete() -> bool:
        assert mirror.poll() is None, mirror.stdout.read() if mirror.stdout else ""
        status = subprocess.run(
            [sys.executable, "-m", "phonotheca.cli", "mirror", "status", str(directory), "--json"],
            capture_output=True,
            text=True,
        )
        if status.returncode != 0:
            return False
        held = (json.loads(status.stdout).get("status") or {}).get("torrents", [])
        return {t["name"] for t in held if t["progress"] == 1.0} == names

    try:
        wait_until(complete, 180, "the mirror to download every demo torrent")
    finally:
        mirror.send_signal(signal.SIGINT)
        out, _ = mirror.communicate(timeout=60)
    assert mirror.returncode == 0 and "Traceback" not in out, out
    verify = subprocess.run(
        [sys.executable, "-m", "phonotheca.cli", "verify", str(directory), "--json"],
        capture_output=True,
        text=True,
    )
    report = json.loads(verify.stdout)
    assert report["ok"], verify.stdout
    assert {c["name"] for c in report["collections"]} == names
    for c in report["collections"]:
        assert c["good"] == c["pieces"] > 0 and c["complete"], c


def test_the_demo_seeds_its_torrents_and_stops_on_ctrl_c(demo: Demo, tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    process = _start(demo, log)
    try:
        text = log.read_text()
        command = next(line.strip() for line in text.splitlines() if " --torrents " in line)
        assert f"--torrents {demo.url}torrents.json" in command
        _mirror(demo, command)
    finally:
        after = _stop(process, log, "ctrl-c")
    assert after.strip().splitlines() == [f"stopped serving {demo.url}"]


def test_kill_of_the_demo_stops_its_server_and_workers(demo: Demo, tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    process = _start(demo, log)
    after = _stop(process, log, "kill")
    assert after.strip().splitlines() == [f"stopped serving {demo.url}"]


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_a_signal_during_a_step_stops_it_and_the_demo(tmp_path: Path, how: str) -> None:
    """Stopped while it prepares (here: generating the catalog), the demo ends the step's
    processes and says in one line how to go on; nothing else is printed."""
    d = Demo(tmp_path / "demo-archive", free_port(), "")
    args = d.args("--no-serve")
    args[args.index("--tracks") + 1] = "3000000"  # long enough to be interrupted
    process = start_in_a_terminal_group(args, subprocess.PIPE)
    children: set[int] = set()
    try:

        def generating() -> bool:
            return any(b"synth" in cmdline(pid) for pid in descendants(process.pid))

        wait_until(generating, 60, "the catalog step to start")
        children = descendants(process.pid)
        stop_with(process, how)
        out, _ = process.communicate(timeout=60)
        wait_until(lambda: not alive(children), 30, "the step's process to end")
    finally:
        stop_all(process, children)
    assert process.returncode == 130
    lines = out.strip().splitlines()
    assert lines[-2].startswith("$ phonotheca synth catalog"), out
    assert lines[-1].startswith("demo stopped; run it again"), out
