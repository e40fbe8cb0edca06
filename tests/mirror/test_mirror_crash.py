"""A tracker that is down and a ``kill -9`` in the middle of a download: the real
``phonotheca mirror`` process says which tracker fails and why, keeps downloading from
the web seed, and after the kill resumes from its resume data without fetching again
what it had saved, and without hashing the files again; the bags validate."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import libtorrent as lt

from phonotheca.build import validate_collection
from phonotheca.mirror.state import MirrorDir, read_verified
from phonotheca.mirror.verify import hash_pieces
from phonotheca.torrents.layout import read_layout
from tests.mirror.conftest import mirror_dir
from tests.mirror.swarm import PIECE, RangeServer, publish_archive, run_env
from tests.mirror.test_mirror_run import PHONOTHECA, start, status, stop, wait_seeding
from tests.peers import free_port

NAME = "demo_pop-050-100_0001"
RATE = 30_000
"""Bytes per second the web seed sends at during the first run: a download of ~10 s."""


def _saved_pieces(mirror: MirrorDir) -> int:
    """Pieces the resume data on disk lists as held (what a restart trusts)."""
    try:
        data = mirror.resume_file(NAME).read_bytes()
    except FileNotFoundError:
        return 0
    return sum(lt.read_resume_data(data).have_pieces)


def _wait_partial(directory: Path, proc: subprocess.Popen[str], mirror: MirrorDir) -> Any:
    """The status once the tracker failure is reported and a third of the torrent saved."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        current = status(directory)["status"] or {}
        torrents = current.get("torrents") or []
        if current.get("pid") == proc.pid and torrents:
            [torrent] = torrents
            assert torrent["pieces_have"] < torrent["pieces"], "downloaded too fast to kill"
            if torrent["trackers_down"] and _saved_pieces(mirror) >= 0.3 * torrent["pieces"]:
                return current
        time.sleep(0.2)
    raise AssertionError("no partial progress in time")


def test_tracker_down_and_kill_9_mid_download(tmp_path: Path) -> None:
    dead_tracker = f"http://127.0.0.1:{free_port()}/announce"  # nothing listens there
    port = free_port()
    published = publish_archive(
        tmp_path / "publisher",
        collections=(("pop-050-100_0001", 8, 30_000),),
        trackers=[dead_tracker],
        web_seeds=[f"http://127.0.0.1:{port}/torrents/"],
        metadata=False,
    )
    layout = read_layout(published.torrents / f"{NAME}.torrent")
    directory = mirror_dir(tmp_path)
    mirror = MirrorDir(directory)
    server = RangeServer(published.root, port, rate=RATE)
    args = ("--torrents", str(published.listing), "--budget", "10MB", "--save-interval", "0.5")
    try:
        proc = start(directory, *args)
        try:
            before_kill = _wait_partial(directory, proc, mirror)
            os.kill(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=10)
        finally:
            proc.kill()

        # The tracker failure, plainly, on the console and in the status file.
        [console] = [line for line in stderr.splitlines() if dead_tracker in line]
        assert "unreachable (Connection refused)" in console
        assert "keeps retrying" in console and "web seeds" in console
        [torrent] = before_kill["torrents"]
        [down] = torrent["trackers_down"]
        assert down["url"] == dead_tracker and down["error"] == "Connection refused"
        shown = subprocess.run(
            [str(PHONOTHECA), "mirror", "status", str(directory)],
            capture_output=True,
            text=True,
            env=run_env(),
        ).stderr
        assert "not running" in shown and "stopped without saying so" in shown
        assert f"tracker {dead_tracker} unreachable" in shown, shown

        # What the kill left on disk: every piece recorded as verified is good.
        verified = read_verified(mirror, NAME)
        assert verified is not None
        on_disk = hash_pieces(mirror.payload(NAME), layout)
        assert all(on_disk[i] for i, ok in enumerate(verified) if ok)
        resumed = lt.read_resume_data(mirror.resume_file(NAME).read_bytes())
        saved = sum(resumed.have_pieces)
        assert layout.num_pieces * 0.3 <= saved < layout.num_pieces, (saved, before_kill)
        assert all(on_disk[i] for i, ok in enumerate(resumed.have_pieces) if ok)

        # Restart at full speed: the resume data is trusted (no hashing of the files), only
        # pieces not saved before the kill are fetched, and the copy is complete and valid.
        served_before = server.bytes_served
        server.set_rate(0)
        proc = start(directory)
        try:
            report = wait_seeding(directory, proc, 1)
            restarted = stop(proc)
        finally:
            proc.kill()
        [torrent] = report["status"]["torrents"]
        assert torrent["checks"] == 0
        fetched_again = server.bytes_served - served_before
        not_saved = layout.num_pieces - saved
        assert fetched_again <= not_saved * PIECE, (fetched_again, not_saved)
        assert dead_tracker in restarted  # still said, still no reason to stop
    finally:
        server.close()
    assert validate_collection(mirror.payload(NAME)) == []
    assert read_verified(mirror, NAME) == [True] * layout.num_pieces
