"""Collections as BagIt bags: determinism, the real bagit.py, the index, crash safety."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phonotheca import __version__
from phonotheca.build import BagInfo, PackError, PackItem, plan_payload, validate_collection
from tests.build import (
    INFO,
    SIZES,
    SMALL_VOLUME,
    RecordingSink,
    bag_bytes,
    make_items,
    pack,
    run_tar,
)
from tests.conftest import REPO

BAGIT = Path(sys.executable).parent / "bagit.py"


def bagit_validate(bag_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BAGIT), "--validate", str(bag_dir)], capture_output=True, text=True)


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first = pack(tmp_path / "a")
    streamed = [
        dataclasses.replace(item, data=io.BytesIO(item.data))  # type: ignore[arg-type]
        for item in make_items(SIZES)
    ]
    second = pack(tmp_path / "b", streamed)
    files = bag_bytes(tmp_path / "a")
    assert files == bag_bytes(tmp_path / "b")
    assert len(first.volumes) > 1 and first == dataclasses.replace(second, path=first.path)
    assert sorted(files) == sorted(f.path for f in first.files)


def test_bagit_py_accepts_the_bag_and_rejects_a_changed_byte(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    pack(bag)
    result = bagit_validate(bag)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr
    volume = bag / "data" / "test.0001.tar"
    raw = bytearray(volume.read_bytes())
    raw[700] ^= 0x01
    volume.write_bytes(raw)
    result = bagit_validate(bag)
    assert result.returncode == 1
    assert "test.0001.tar" in result.stderr


def test_tag_files(tmp_path: Path) -> None:
    packed = pack(tmp_path)
    assert (tmp_path / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )
    payload = [f for f in packed.files if f.path.startswith("data/")]
    size = sum(f.size for f in payload)
    assert (tmp_path / "bag-info.txt").read_text() == (
        f"Bag-Software-Agent: phonotheca {__version__}\n"
        "Bagging-Date: 2025-01-02\n"
        "External-Description: Phonotheca test collection\n"
        "External-Identifier: urn:phonotheca:test:1\n"
        f"Payload-Oxum: {size}.{len(payload)}\n"
    )
    assert packed.payload_oxum == f"{size}.{len(payload)}"
    manifest = (tmp_path / "manifest-sha256.txt").read_bytes()
    assert b"\r" not in manifest
    lines = manifest.decode().splitlines()
    paths = [line.split(" ", 1)[1] for line in lines]
    assert (
        paths == sorted(paths) == ["data/index.jsonl", *(f"data/{v.name}" for v in packed.volumes)]
    )
    for line in lines:
        digest, path = line.split(" ", 1)
        assert hashlib.sha256((tmp_path / path).read_bytes()).hexdigest() == digest
    tags = (tmp_path / "tagmanifest-sha256.txt").read_text().splitlines()
    assert [t.split(" ", 1)[1] for t in tags] == [
        "bag-info.txt",
        "bagit.txt",
        "manifest-sha256.txt",
    ]


def test_bag_info_needs_one_line_values() -> None:
    with pytest.raises(PackError, match="External-Description"):
        BagInfo(dt.date(2025, 1, 1), external_description="two\nlines").text(0, 0)


def test_index_lines_locate_every_track(tmp_path: Path) -> None:
    items = make_items(SIZES)
    packed = pack(tmp_path, items)
    raw = (tmp_path / "data" / "index.jsonl").read_bytes()
    assert raw.endswith(b"\n") and "Sóng".encode() in raw  # UTF-8, not \u escapes
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [line["id"] for line in lines] == [i.public_id for i in items]  # order as written
    assert list(lines[0]) == [
        "id", "volume", "offset", "length", "sha256", "codec", "bitrate", "duration_ms",
        "tier", "title", "artists", "album", "isrc", "popularity",
        "loudness_lufs", "true_peak_dbtp", "loudness_range_lu",
    ]  # fmt: skip
    for line, item in zip(lines, items, strict=True):
        volume = (tmp_path / "data" / line["volume"]).read_bytes()
        data = volume[line["offset"] : line["offset"] + line["length"]]
        assert data == item.data
        assert hashlib.sha256(data).hexdigest() == line["sha256"]
        assert {k: line[k] for k in item.metadata} == item.metadata
    assert len(packed.entries) == len(items)


def test_index_fields_default_to_null(tmp_path: Path) -> None:
    pack(tmp_path, [PackItem("a", "a.ogg", 1, b"x")])
    line = json.loads((tmp_path / "data" / "index.jsonl").read_bytes())
    assert line["title"] is None and line["artists"] is None and line["popularity"] is None


def test_tracks_extract_with_tar_from_every_volume(tmp_path: Path) -> None:
    items = make_items(SIZES)
    packed = pack(tmp_path / "bag", items)
    out = tmp_path / "out"
    out.mkdir()
    listed = []
    for v in packed.volumes:
        listed += run_tar("-tf", tmp_path / "bag" / "data" / v.name).stdout.splitlines()
        run_tar("-xf", tmp_path / "bag" / "data" / v.name, cwd=out)
    assert listed == [i.name for i in items]
    for item in items:
        assert (out / item.name).read_bytes() == item.data


def test_plan_matches_what_is_written(tmp_path: Path) -> None:
    items = make_items(SIZES)
    plan = plan_payload("test", items, INFO, max_volume_size=SMALL_VOLUME)
    packed = pack(tmp_path, items)
    assert [(v.name, v.size) for v in plan.volumes] == [(v.name, v.size) for v in packed.volumes]
    assert plan.index_size == (tmp_path / "data" / "index.jsonl").stat().st_size
    assert plan.payload_oxum == packed.payload_oxum
    assert plan.bag_info == (tmp_path / "bag-info.txt").read_bytes()


def torrent_order(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: p.encode())


def with_hashes(items: list[PackItem]) -> list[PackItem]:
    return [
        dataclasses.replace(i, sha256=hashlib.sha256(i.data).hexdigest())  # type: ignore[arg-type]
        for i in items
    ]


@pytest.mark.parametrize("collection", ["alpha", "phonotheca-0001"])
def test_the_sink_sees_every_file_in_torrent_order(tmp_path: Path, collection: str) -> None:
    # "data/index.jsonl" sorts after "data/alpha.0001.tar" but before
    # "data/phonotheca-0001.0001.tar": with known hashes both come out in torrent order.
    sink = RecordingSink()
    packed = pack(tmp_path, with_hashes(make_items(SIZES)), collection, sink=sink)
    assert packed.torrent_order and sink.current is None
    assert sink.order == torrent_order(list(bag_bytes(tmp_path))) == [f.path for f in packed.files]
    assert {p: bytes(b) for p, b in sink.files.items()} == bag_bytes(tmp_path)
    assert validate_collection(tmp_path) == []


def test_without_hashes_an_index_that_sorts_first_is_written_last(tmp_path: Path) -> None:
    sink = RecordingSink()
    packed = pack(tmp_path, collection="phonotheca-0001", sink=sink)
    assert not packed.torrent_order
    assert sink.order[-3:] == ["data/index.jsonl", "manifest-sha256.txt", "tagmanifest-sha256.txt"]
    assert {p: bytes(b) for p, b in sink.files.items()} == bag_bytes(tmp_path)
    assert pack(tmp_path / "b", collection="alpha").torrent_order


def test_the_torrent_piece_hasher_can_be_the_sink(tmp_path: Path) -> None:
    pieces = pytest.importorskip("phonotheca.torrents.pieces")
    piece_length = 16 * 1024
    with pieces.PieceHasher(piece_length, workers=0) as hasher:
        pack(tmp_path, with_hashes(make_items(SIZES)), "phonotheca-0001", sink=hasher)
        hashes = hasher.finish()
    files = bag_bytes(tmp_path)
    stream = b"".join(files[p] for p in torrent_order(list(files)))
    expected = b"".join(
        hashlib.sha1(stream[i : i + piece_length]).digest()
        for i in range(0, len(stream), piece_length)
    )
    assert hashes.pieces == expected


def test_a_wrong_known_hash_stops_the_pack_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    items = [dataclasses.replace(i, sha256="0" * 64) for i in make_items(SIZES)]
    with pytest.raises(PackError, match="did the source change"):
        pack(tmp_path, items, "phonotheca-0001")
    assert not list(tmp_path.rglob("*.partial"))
    assert not (tmp_path / "data" / "index.jsonl").exists()
    assert not (tmp_path / "bag-info.txt").exists()
    with pytest.raises(PackError, match="lower-case hex"):
        pack(tmp_path, [dataclasses.replace(items[0], sha256="ABC")])


def test_tracks_can_come_from_files(tmp_path: Path) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    items = make_items(SIZES)
    from_files = []
    for item in items:
        path = sources / item.name
        path.write_bytes(item.data)  # type: ignore[arg-type]
        from_files.append(dataclasses.replace(item, data=path))
    pack(tmp_path / "a", items)
    pack(tmp_path / "b", from_files)
    assert bag_bytes(tmp_path / "a") == bag_bytes(tmp_path / "b")


KILLED_RUN = """
import sys, time
from pathlib import Path
from phonotheca.build import PackItem
from tests.build import SIZES, make_items, pack

class Stall:
    def read(self, size=-1):
        print("stalled", flush=True)
        time.sleep(60)
        return b""

items = make_items(SIZES)
items[-2] = PackItem(items[-2].public_id, items[-2].name, items[-2].size, Stall())
pack(Path(sys.argv[1]), items)
"""


def test_a_killed_run_leaves_no_half_volume_and_a_rerun_rewrites_it(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(bag)], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "stalled\n"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    data = sorted(p.name for p in (bag / "data").iterdir())
    assert data == ["test.0001.tar", "test.0002.tar.partial"]
    (bag / "data" / "test.0002.tar.partial").write_bytes(b"junk" * 10_000)  # larger than real

    packed = pack(bag)
    pack(tmp_path / "clean")
    assert bag_bytes(bag) == bag_bytes(tmp_path / "clean")
    assert not list(bag.rglob("*.partial"))
    assert ".partial" not in (bag / "manifest-sha256.txt").read_text()
    assert packed.payload_oxum.endswith(f".{len(packed.volumes) + 1}")
    assert validate_collection(bag) == []


def test_repacking_fewer_tracks_drops_stale_volumes(tmp_path: Path) -> None:
    assert len(pack(tmp_path).volumes) > 1
    packed = pack(tmp_path, make_items([10, 20]))
    assert [v.name for v in packed.volumes] == ["test.0001.tar"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["index.jsonl", "test.0001.tar"]
    assert validate_collection(tmp_path) == []


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(PackError, match=r"notes\.txt"):
        pack(tmp_path)
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


def test_bad_tracks_fail_before_their_data_is_written(tmp_path: Path) -> None:
    good = make_items([10])
    with pytest.raises(PackError, match="unknown index field"):
        pack(tmp_path, [*good, PackItem("x", "x.ogg", 1, b"x", {"genre": "pop"})])
    with pytest.raises(PackError, match="popularity"):
        pack(tmp_path, [*good, PackItem("x", "x.ogg", 1, b"x", {"popularity": "high"})])
    with pytest.raises(PackError, match="twice"):
        pack(tmp_path, [*good, good[0]])
    with pytest.raises(PackError, match="collection name"):
        plan_payload("no/slash", good, INFO)
    assert not list((tmp_path / "data").glob("*.tar*"))


def test_an_empty_collection_is_a_valid_bag(tmp_path: Path) -> None:
    packed = pack(tmp_path, [])
    assert packed.volumes == [] and packed.payload_oxum == "0.1"
    assert bagit_validate(tmp_path).returncode == 0
    assert validate_collection(tmp_path) == []
