"""Point 5 of #19: the demo's second server, with no audio at all, plays a track in
Chromium from the demo's web seed (the commands run as the demo prints them)."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.peers import free_port, wait_until
from tests.processes import start_in_a_terminal_group, stop_all, stop_with
from tests.serve.test_browser import audio_advances
from tests.test_demo import Demo, _start, _stop
from tests.test_demo import demo as built_demo  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
PASSWORD = "second server password"


def _second_server_commands(log: str) -> list[list[str]]:
    lines = log.splitlines()
    at = next(i for i, line in enumerate(lines) if "a second server with no audio" in line)
    return [shlex.split(line) for line in lines[at + 1 : at + 4]]


@pytest.fixture
def second_server(built_demo: Demo, tmp_path: Path) -> Iterator[tuple[str, Path]]:  # noqa: F811
    log = tmp_path / "demo.log"
    demo = _start(built_demo, log)
    server = None
    try:
        mirror, user, serve = _second_server_commands(log.read_text())
        directory = Path(mirror[mirror.index("run") + 1])
        directory.mkdir(exist_ok=True)
        (directory / "phonotheca.toml").write_text(
            "[mirror]\ndht = false\nlsd = false\nupnp = false\nnatpmp = false\n"
            "[serve]\npassword_cost = 12\n"
        )
        done = subprocess.run(mirror, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        done = subprocess.run(
            [*user, "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        port = free_port()
        serve[serve.index("--port") + 1] = str(port)
        with open(tmp_path / "second.log", "w") as out:
            server = start_in_a_terminal_group([*serve, "--workers", "1"], out)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert server is not None and server.poll() is None
            try:
                with urllib.request.urlopen(f"{url}/stats", timeout=30) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(up, 120, "the second server")
        yield url, directory
    finally:
        if server is not None:
            stop_with(server, "ctrl-c")
            server.wait(60)
            stop_all(server, set())
        _stop(demo, log, "ctrl-c")


def test_the_demo_s_second_server_plays_a_track_it_does_not_hold(
    browser: Browser, second_server: tuple[str, Path]
) -> None:
    url, directory = second_server
    assert not [p for p in (directory / "torrents").iterdir() if "_pop-" in p.name]
    conn = sqlite3.connect(f"file:{directory / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        (track_id,) = conn.execute(
            "SELECT t.public_id FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " WHERE l.status = 'packed' ORDER BY t.id LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    context = browser.new_context(base_url=url)
    page = context.new_page()
    try:
        page.goto("/signin")
        page.fill("input[name=username]", "demo")
        page.fill("input[name=password]", PASSWORD)
        page.click("form.signin button[type=submit]")
        expect(page.locator("nav")).to_contain_text("Sign out demo")
        page.goto(f"/tracks/{urllib.parse.quote(track_id, safe='')}")
        expect(page.locator("p.swarm")).to_contain_text("Played from the swarm")
        page.evaluate("document.querySelector('audio.inline-audio').play()")
        audio_advances(page, "audio.inline-audio")
    finally:
        context.close()
    # Played from the swarm, and now in the second server's cache.
    wait_until(lambda: any((directory / ".ondemand-cache").glob("??/*")), 60, "cached")
