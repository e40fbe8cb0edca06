"""Our torrents work in a real swarm: one libtorrent session seeds, another downloads."""

from __future__ import annotations

import time
from pathlib import Path

import libtorrent as lt
import pytest

from phonotheca.torrents import make_torrent
from tests.peers import local_session
from tests.torrents import SIZES, make_tree

TIMEOUT = 60.0


def _wait(handle: lt.torrent_handle, done: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        status = handle.status()
        if status.errc.value():
            pytest.fail(f"libtorrent error: {status.errc.message()}")
        if getattr(status, done):
            return
        time.sleep(0.05)
    pytest.fail(f"not {done} within {TIMEOUT} s: {handle.status().state}")


@pytest.mark.parametrize("hybrid", [False, True], ids=["v1", "hybrid"])
def test_download_between_two_sessions(tmp_path: Path, hybrid: bool) -> None:
    payload = make_tree(tmp_path / "seed" / "collection-0001", SIZES, seed=5)
    torrent = make_torrent(payload, hybrid=hybrid, piece_length=16 * 1024)
    seeder = local_session()
    leecher = local_session()
    deadline = time.monotonic() + TIMEOUT
    try:
        seed_params = lt.add_torrent_params()
        seed_params.ti = lt.torrent_info(torrent.data)
        seed_params.save_path = str(payload.parent)
        seed = seeder.add_torrent(seed_params)
        # The seeder checks its files against our hashes (v1 and v2) before it seeds.
        _wait(seed, "is_seeding", deadline)

        leech_params = lt.add_torrent_params()
        leech_params.ti = lt.torrent_info(torrent.data)
        leech_params.save_path = str(tmp_path / "leech")
        leech = leecher.add_torrent(leech_params)
        leech.connect_peer(("127.0.0.1", seeder.listen_port()))
        _wait(leech, "is_seeding", deadline)
    finally:
        del seeder, leecher

    got = tmp_path / "leech" / "collection-0001"
    for rel in SIZES:
        assert (got / rel).read_bytes() == (payload / rel).read_bytes(), rel
    # Pad files are not data: libtorrent never writes them to disk.
    assert not (got / ".pad").exists()
