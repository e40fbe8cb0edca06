"""verify --repair with a web seed as the only source: on an incomplete copy it fetches
the corrupted piece and nothing the mirror never downloaded; on a complete copy, about one
piece's bytes; the bag validates after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from phonotheca.build import validate_collection
from phonotheca.cli import main
from phonotheca.mirror.state import MirrorDir, read_verified
from phonotheca.mirror.status import MirrorStatus
from phonotheca.torrents.layout import TorrentLayout, read_layout
from tests.mirror.conftest import mirror_dir, mirror_once, mirror_until
from tests.mirror.swarm import RangeServer, publish_archive
from tests.peers import free_port

NAME = "demo_pop-050-100_0001"


def _flip_byte_in(mirror: MirrorDir, layout: TorrentLayout, piece: int) -> None:
    """Flip a byte in the middle of ``piece`` (inside one of the tar volumes)."""
    at = piece * layout.piece_length + layout.piece_size(piece) // 2
    f = next(f for f in layout.files if f.offset <= at < f.offset + f.length)
    assert not f.pad and f.path.endswith(".tar"), f
    path = mirror.payload(NAME) / f.path
    data = bytearray(path.read_bytes())
    data[at - f.offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _repair(directory: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["verify", str(directory), "--repair", "--timeout", "30", "--json"]
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _pieces_in_tars(layout: TorrentLayout, verified: list[bool]) -> list[int]:
    tars = [f for f in layout.files if f.path.endswith(".tar") and not f.pad]
    return [
        i
        for i, ok in enumerate(verified)
        if ok
        and any(
            f.offset <= i * layout.piece_length + layout.piece_size(i) // 2 < f.offset + f.length
            for f in tars
        )
    ]


def test_repair_from_a_web_seed_fetches_only_the_corrupted_piece(tmp_path: Path) -> None:
    port = free_port()
    published = publish_archive(
        tmp_path / "publisher",
        collections=(("pop-050-100_0001", 8, 30_000),),
        web_seeds=[f"http://127.0.0.1:{port}/torrents/"],
        metadata=False,
    )
    layout = read_layout(published.torrents / f"{NAME}.torrent")
    directory = mirror_dir(tmp_path)
    mirror = MirrorDir(directory)
    server = RangeServer(published.root, port, rate=40_000)
    try:
        # An incomplete copy: stopped with about half the pieces.
        def half(status: MirrorStatus) -> bool:
            [t] = status.torrents
            return t.pieces * 0.3 <= t.pieces_have <= t.pieces * 0.8

        mirror_until(directory, published.listing, half, save_interval=0.3)
        verified = read_verified(mirror, NAME)
        assert verified is not None and not all(verified)
        missing = verified.count(False)
        victim = _pieces_in_tars(layout, verified)[0]
        _flip_byte_in(mirror, layout, victim)

        server.set_rate(0)
        served = server.bytes_served
        report = _repair(directory)
        # Only the corrupted piece came from the web seed; the missing ones are still
        # missing (the next mirror run fetches them).
        assert report["repaired"] == {NAME: True}
        [collection] = report["collections"]
        assert collection["corrupted"] == [] and collection["missing"] == missing
        fetched = server.bytes_served - served
        assert layout.piece_size(victim) <= fetched <= 2 * layout.piece_length, fetched
        after = read_verified(mirror, NAME)
        assert after is not None and after[victim] and after.count(False) == missing

        # The next mirror run completes the copy (the repair left no priority behind).
        mirror_once(directory, published.listing)
        bag = mirror.payload(NAME)
        assert validate_collection(bag) == []

        # A complete copy with a flipped byte: about one piece's bytes fetched again.
        victim = _pieces_in_tars(layout, [True] * layout.num_pieces)[-1]
        _flip_byte_in(mirror, layout, victim)
        assert validate_collection(bag) != []
        served = server.bytes_served
        report = _repair(directory)
        assert report["repaired"] == {NAME: True} and report["ok"] is True
        fetched = server.bytes_served - served
        assert layout.piece_size(victim) <= fetched <= 2 * layout.piece_length, fetched
    finally:
        server.close()
    assert validate_collection(bag) == []
    for f in layout.files:
        if not f.pad:
            assert (bag / f.path).read_bytes() == (published.torrents / NAME / f.path).read_bytes()
