"""A listing that changes under a mirror: obsolete torrents (replaced, in a signed listing)
and a lower budget drop held copies (after confirmation, within max_delete); a full disk is
a clear error, not corruption."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.mirror.session import MirrorSession, SessionOptions
from phonotheca.mirror.sources import torrent_data
from phonotheca.mirror.state import MirrorDir, read_verified
from phonotheca.mirror.verify import hash_pieces, verify_collection
from phonotheca.torrents.layout import read_layout
from phonotheca.torrents.listing import read_listing
from tests.mirror.conftest import Swarm, mirror_dir, mirror_once
from tests.mirror.swarm import Seeder, Tracker, publish_archive
from tests.mirror.test_mirror_run import start, wait_seeding
from tests.peers import free_port

OLD = "demo_pop-030-049_0001"
KEPT = "demo_pop-050-100_0001"


def test_obsolete_and_lower_budget_drop_after_confirmation(swarm: Swarm, tmp_path: Path) -> None:
    published = swarm.published
    directory = mirror_dir(tmp_path)
    mirror_once(directory, published.listing)
    listing = read_listing(published.listing)
    for entry in listing.torrents:
        if entry.name == OLD:
            entry.obsolete = True
            entry.replaced_by = [KEPT]
    changed = tmp_path / "changed" / "torrents.json"
    changed.parent.mkdir()
    published.write(listing, changed)
    (changed.parent / "torrents").symlink_to(published.torrents)

    runner = CliRunner()
    dry = runner.invoke(
        main,
        ["mirror", str(directory), "--torrents", str(changed), "--budget", "10MB", "--dry-run"],
    )
    assert dry.exit_code == 0, dry.output
    # More than max_delete (10 % of the held bytes): kept, and said so.
    assert f"= {OLD}: obsolete, replaced by {KEPT}; but deleting it would pass max_delete" in (
        dry.output
    )
    dry = runner.invoke(
        main,
        [
            "mirror",
            str(directory),
            "--torrents",
            str(changed),
            "--budget",
            "10MB",
            "--dry-run",
            "--yes-delete-more",
        ],
    )
    assert f"x {OLD} (" in dry.output and f"delete (obsolete, replaced by {KEPT})" in dry.output
    # Not on a terminal and no --yes: nothing is deleted.
    refused = runner.invoke(
        main,
        [
            "mirror",
            str(directory),
            "--torrents",
            str(changed),
            "--budget",
            "10MB",
            "--yes-delete-more",
        ],
    )
    assert refused.exit_code == 1
    assert "--yes" in refused.output and OLD in refused.output
    assert (directory / "torrents" / OLD).is_dir()

    # A budget too small for both audio collections drops the less useful one too.
    kept_size = published.entries[KEPT].size + published.entries["demo_metadata_0001"].size
    small = runner.invoke(
        main,
        [
            "mirror",
            str(directory),
            "--torrents",
            str(changed),
            "--budget",
            str(kept_size),
            "--dry-run",
            "--yes-delete-more",
        ],
    )
    assert f"x {OLD} (" in small.output and f"+ {KEPT}" in small.output

    proc = start(
        directory, "--torrents", str(changed), "--budget", "10MB", "--yes", "--yes-delete-more"
    )
    try:
        report = wait_seeding(directory, proc, 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "dropped 1 torrent(s)" in stderr
    assert {t["name"] for t in report["status"]["torrents"]} == {KEPT, "demo_metadata_0001"}
    assert not (directory / "torrents" / OLD).exists()
    assert not (directory / "torrents" / f"{OLD}.torrent").exists()
    assert verify_collection(MirrorDir(directory), KEPT)[0].ok
    log = (directory / ".mirror" / "events.log").read_text()
    assert f"dropped {OLD} (" in log and f"obsolete, replaced by {KEPT}" in log


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk that fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_a_clear_error_and_keeps_verified_data(
    tmp_path: Path, small_disk: Path
) -> None:
    tracker = Tracker(tmp_path / "tracker", free_port())
    published = publish_archive(
        tmp_path / "publisher",
        collections=(("pop-050-100_0001", 12, 200_000),),
        trackers=[tracker.url],
        metadata=False,
        piece_length=64 * 1024,
    )
    [entry] = published.entries.values()
    assert entry.size > 2_000_000
    directory = small_disk / "mirror"
    directory.mkdir()
    toml = tmp_path / "phonotheca.toml"
    toml.write_text(
        f'[mirror]\nlisten = "127.0.0.1:{free_port()}"\n'
        "dht = false\nlsd = false\nupnp = false\nnatpmp = false\n"
    )
    (directory / "phonotheca.toml").write_bytes(toml.read_bytes())

    # Before anything is downloaded: refused with what to do.
    result = CliRunner().invoke(
        main, ["mirror", str(directory), "--torrents", str(published.listing), "--budget", "1GB"]
    )
    assert result.exit_code == 1
    assert "free, but the chosen torrents need" in result.output
    assert "lower --budget" in result.output

    # The disk fills while downloading (someone else wrote to it): the torrent stops with
    # a message naming the cause, and the pieces verified so far stay verified.
    seeder = Seeder()
    tracker.start([entry.infohash_v1])
    mirror = MirrorDir(directory)
    events: list[str] = []
    try:
        seeder.seed(published)
        session = MirrorSession(
            mirror,
            SessionOptions(
                listen="127.0.0.1:0",
                dht=False,
                lsd=False,
                upnp=False,
                natpmp=False,
                max_down=400_000,
                save_interval=0.3,
            ),
            on_event=events.append,
        )
        # Slow enough to record progress before the disk fills (local peers are exempt from
        # rate limits unless told otherwise).
        session.session.apply_settings({"ignore_limits_on_local_network": False})
        session.add(
            entry.name,
            entry.kind,
            torrent_data(str(published.listing), read_listing(published.listing), entry, mirror),
        )
        stop = threading.Event()
        thread = threading.Thread(target=session.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("disk full" in e for e in events):
            time.sleep(0.1)
        [torrent] = session.snapshot("running").torrents
        stop.set()
        thread.join(15)
        del session
    finally:
        seeder.close()
        tracker.stop()
    assert any("disk full" in e and "--budget" in e for e in events), events
    assert torrent.state == "error" and torrent.error and "disk full" in torrent.error
    # The state files the full disk could not take were left as they were, never half-written.
    json.loads((directory / ".mirror" / "status.json").read_text())
    assert not list((directory / ".mirror").rglob("*.partial"))
    # Every piece recorded as verified is still good on disk.
    verified = read_verified(mirror, entry.name)
    assert verified is not None and any(verified)
    layout = read_layout(mirror.torrent_file(entry.name))
    good = hash_pieces(mirror.payload(entry.name), layout)
    assert all(good[i] for i, ok in enumerate(verified) if ok)
