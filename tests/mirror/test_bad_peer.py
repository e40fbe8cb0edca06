"""A peer sending bad data: the piece is thrown away, the peer banned and named, and the
mirror completes from a good peer with a valid bag; a bad piece is never marked verified."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from phonotheca.build import validate_collection
from phonotheca.config import load_settings
from phonotheca.mirror import session as session_mod
from phonotheca.mirror.state import MirrorDir, read_verified
from phonotheca.mirror.status import MirrorStatus, read_status
from phonotheca.mirror.verify import hash_pieces
from phonotheca.torrents.layout import read_layout
from tests.mirror.conftest import all_seeding, mirror_dir, mirror_until
from tests.mirror.swarm import Published, Seeder, publish_archive

NAME = "demo_pop-050-100_0001"


def _wait(what: str, predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_bad_data_from_a_peer_is_thrown_away_and_the_peer_banned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = publish_archive(
        tmp_path / "publisher", collections=(("pop-050-100_0001", 6, 30_000),), metadata=False
    )
    # The bad peer's copy: the publisher's, with one byte flipped once it is seeding (it
    # checked its files before: it believes it holds every piece and serves the bad one).
    bad_copy = Published(tmp_path / "bad", published.listing, published.entries)
    shutil.copytree(published.torrents, bad_copy.torrents)
    layout = read_layout(published.torrents / f"{NAME}.torrent")
    volume = next(f for f in layout.files if f.path.endswith(".tar") and not f.pad)
    flip_at = volume.length // 2
    bad_piece = (volume.offset + flip_at) // layout.piece_length

    directory = mirror_dir(tmp_path)
    port = int(load_settings(directory).mirror.listen.rsplit(":", 1)[1])
    events: list[str] = []
    statuses: list[MirrorStatus] = []
    bad, good = Seeder(), Seeder()
    checked: dict[str, object] = {}
    # Each verified bitfield is written only once the payload it vouches for is fsynced.
    order: list[tuple[str, str]] = []
    real_sync, real_write = session_mod.sync_files, session_mod.write_verified

    def sync(root: Path) -> int:
        order.append(("sync", root.name))
        return real_sync(root)

    def write(mirror: MirrorDir, name: str, piece_length: int, have: list[bool]) -> None:
        order.append(("write", name))
        real_write(mirror, name, piece_length, have)

    monkeypatch.setattr(session_mod, "sync_files", sync)
    monkeypatch.setattr(session_mod, "write_verified", write)

    def swarm_script() -> None:
        """The bad peer connects first and alone; the good one once it is banned."""
        _wait("the mirror to add the torrent", lambda: statuses and statuses[-1].torrents)
        bad.handles[NAME].connect_peer(("127.0.0.1", port))
        _wait("a ban", lambda: any("banned" in e for e in events))
        # The bad piece is neither held nor recorded as verified; what is, is good on disk.
        _wait("a status after the ban", lambda: statuses[-1].torrents[0].banned_peers)
        time.sleep(0.3)  # one more save of the verified bitfield
        checked["status"] = statuses[-1].torrents[0]
        checked["verified"] = read_verified(MirrorDir(directory), NAME)
        checked["on_disk"] = hash_pieces(MirrorDir(directory).payload(NAME), layout)
        good.handles[NAME].connect_peer(("127.0.0.1", port))

    try:
        bad.seed(bad_copy)
        good.seed(published)
        tar = bad_copy.torrents / NAME / volume.path
        with open(tar, "r+b") as f:
            f.seek(flip_at)
            byte = f.read(1)
            f.seek(flip_at)
            f.write(bytes([byte[0] ^ 0xFF]))
        script = threading.Thread(target=swarm_script, daemon=True)
        script.start()
        final = mirror_until(
            directory,
            published.listing,
            all_seeding,
            save_interval=0.2,
            on_event=events.append,
            statuses=statuses,
        )
        script.join(5)
    finally:
        bad.close()
        good.close()

    # Named plainly: which torrent, which piece, which peer, and what was done about it.
    failed = [e for e in events if f"piece {bad_piece} failed the hash check" in e]
    assert failed and failed[0].startswith(f"{NAME}: "), events
    assert "peer 127.0.0.1:" in failed[0] and "banned" in failed[0], "\n".join(events)
    assert "thrown away and is downloaded again" in failed[0]
    [torrent] = final.torrents
    assert torrent.hash_failures >= 1
    assert torrent.banned_peers and torrent.banned_peers[0].startswith("127.0.0.1:")
    # The status file another shell reads says it too.
    status = read_status(MirrorDir(directory))
    assert status is not None and any(f"piece {bad_piece} failed" in e for e in status.events)

    # While only the bad peer was there, the bad piece was neither held nor verified.
    before = checked["status"]
    assert isinstance(before, type(torrent))
    assert 0 < before.pieces_have < layout.num_pieces
    verified_then, on_disk = checked["verified"], checked["on_disk"]
    assert isinstance(verified_then, list) and isinstance(on_disk, list)
    assert not verified_then[bad_piece] and any(verified_then)
    assert all(on_disk[i] for i, ok in enumerate(verified_then) if ok)

    # In the end: a complete, valid copy, identical to the publisher's.
    mirror = MirrorDir(directory)
    bag = mirror.payload(NAME)
    assert validate_collection(bag) == []
    assert (bag / volume.path).read_bytes() == (
        published.torrents / NAME / volume.path
    ).read_bytes()
    assert all(hash_pieces(bag, layout))
    assert read_verified(mirror, NAME) == [True] * layout.num_pieces
    writes = [i for i, step in enumerate(order) if step == ("write", NAME)]
    assert writes and all(order[i - 1] == ("sync", NAME) for i in writes), order
