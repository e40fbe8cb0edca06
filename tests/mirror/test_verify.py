"""verify finds a flipped byte's piece and track; --repair fetches only that piece again."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from phonotheca.build import read_index, validate_collection
from phonotheca.cli import main
from tests.mirror.conftest import Swarm, mirror_dir, mirror_once
from tests.mirror.swarm import PIECE


def test_verify_finds_corruption_and_repair_fixes_it(swarm: Swarm, tmp_path: Path) -> None:
    published = swarm.published
    directory = mirror_dir(tmp_path)
    mirror_once(directory, published.listing)
    runner = CliRunner()

    clean = runner.invoke(main, ["verify", str(directory), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["ok"] is True

    name = "demo_pop-050-100_0001"
    bag = directory / "torrents" / name
    entries = [line.entry for line in read_index((bag / "data/index.jsonl").read_bytes())]
    victim = entries[2]
    assert victim is not None
    volume = bag / "data" / victim.volume
    data = bytearray(volume.read_bytes())
    data[victim.offset + victim.length // 2] ^= 0xFF
    volume.write_bytes(bytes(data))

    found = runner.invoke(main, ["verify", str(directory), "--json"])
    assert found.exit_code == 1
    report = json.loads(found.stdout)
    assert report["ok"] is False
    [collection] = [c for c in report["collections"] if c["name"] == name]
    [bad] = collection["corrupted"]
    assert bad["files"] == [f"data/{victim.volume}"]
    assert victim.id in bad["tracks"]
    # The piece is the one holding the flipped byte (stream offset of the volume + offset).
    torrent_files = sorted(p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file())
    start = 0
    for rel in sorted(torrent_files, key=lambda r: r.encode()):
        if rel == f"data/{victim.volume}":
            break
        start += (bag / rel).stat().st_size
    assert bad["piece"] == (start + victim.offset + victim.length // 2) // PIECE
    assert validate_collection(bag) != []

    fixed = runner.invoke(main, ["verify", str(directory), "--repair", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["repaired"] == {name: True}
    assert validate_collection(bag) == []
    assert volume.read_bytes() == (published.torrents / name / "data" / victim.volume).read_bytes()
    assert json.loads((directory / ".mirror/verified" / f"{name}.json").read_text())["complete"]
