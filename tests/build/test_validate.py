"""validate_collection: each kind of damage is found and says where it is."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from phonotheca.build import PackedCollection, Problem, validate_collection
from phonotheca.build.bag import BagFile, write_tag_files
from tests.build import INFO, pack


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    return tmp_path / "bag"


@pytest.fixture
def packed(bag: Path) -> PackedCollection:
    return pack(bag)


def reseal(bag: Path) -> None:
    """Rewrite the manifests and bag-info for the payload as it is now, so that only the
    damage under test remains (the bag itself is valid again)."""
    payload = [
        BagFile(p.relative_to(bag).as_posix(), p.stat().st_size, sha256(p))
        for p in sorted((bag / "data").iterdir())
    ]
    write_tag_files(bag, payload, INFO, None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_index(bag: Path, number: int, **changes: object) -> None:
    path = bag / "data" / "index.jsonl"
    lines = path.read_bytes().splitlines()
    entry = json.loads(lines[number - 1])
    entry.update(changes)
    lines[number - 1] = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def where(problems: list[Problem]) -> set[str]:
    return {p.location for p in problems}


def test_a_fresh_collection_is_valid(packed: PackedCollection) -> None:
    assert validate_collection(packed.path) == []


def test_a_flipped_byte_in_a_volume(packed: PackedCollection) -> None:
    entry = packed.entries[3]
    volume = packed.path / "data" / entry.volume
    raw = bytearray(volume.read_bytes())
    raw[entry.offset + entry.length // 2] ^= 0x80
    volume.write_bytes(raw)
    problems = validate_collection(packed.path)
    assert (
        Problem(
            "data/index.jsonl:4",
            "the data of member 'syn:track:3.opus' does not match sha256",
        )
        in problems
    )
    bagit = [p for p in problems if p.location == f"data/{entry.volume}"]
    assert bagit and "bagit" in bagit[0].message and "sha256" in bagit[0].message


def test_a_flipped_byte_in_a_header(packed: PackedCollection) -> None:
    entry = packed.entries[1]
    volume = packed.path / "data" / entry.volume
    raw = bytearray(volume.read_bytes())
    raw[entry.offset - 512 + 130] ^= 0x01  # inside the size field of the member's header
    volume.write_bytes(raw)
    reseal(packed.path)
    problems = validate_collection(packed.path)
    assert (
        Problem(
            f"data/{entry.volume}",
            f"no valid header or end-of-archive at offset {entry.offset - 512}",
        )
        in problems
    )
    assert "data/index.jsonl:2" in where(problems)


def test_a_wrong_offset_in_the_index(packed: PackedCollection) -> None:
    entry = packed.entries[4]
    edit_index(packed.path, 5, offset=entry.offset + 512)
    reseal(packed.path)
    problems = validate_collection(packed.path)
    assert problems == [
        Problem(
            "data/index.jsonl:5",
            f"no member's data starts at offset {entry.offset + 512} in {entry.volume}",
        ),
        Problem(
            f"data/{entry.volume}",
            f"member 'syn:track:4.opus' at offset {entry.offset} is not in the index",
        ),
    ]


def test_a_wrong_length_or_hash_in_the_index(packed: PackedCollection) -> None:
    edit_index(packed.path, 1, length=packed.entries[0].length - 1)
    edit_index(packed.path, 2, sha256="0" * 64)
    reseal(packed.path)
    problems = validate_collection(packed.path)
    assert where(problems) == {"data/index.jsonl:1", "data/index.jsonl:2"}
    assert "length" in problems[0].message and "sha256" in problems[1].message


def test_a_missing_volume(packed: PackedCollection) -> None:
    gone = packed.volumes[1].name
    (packed.path / "data" / gone).unlink()
    problems = validate_collection(packed.path)
    assert Problem(f"data/{gone}", "missing (listed in manifest-sha256.txt)") in problems
    lines = [n for n, e in enumerate(packed.entries, 1) if e.volume == gone]
    for n in lines:
        assert Problem(f"data/index.jsonl:{n}", f"volume {gone} does not exist") in problems
    assert [p.location for p in problems if "Payload-Oxum" in p.message] == ["bag-info.txt"]


@pytest.mark.parametrize("name", ["bagit.txt", "bag-info.txt", "tagmanifest-sha256.txt"])
def test_a_missing_tag_file(packed: PackedCollection, name: str) -> None:
    (packed.path / name).unlink()
    assert Problem(name, "missing") in validate_collection(packed.path)


def test_a_missing_index(packed: PackedCollection) -> None:
    (packed.path / "data" / "index.jsonl").unlink()
    problems = validate_collection(packed.path)
    assert Problem("data/index.jsonl", "missing") in problems


def test_extra_and_leftover_files(packed: PackedCollection) -> None:
    (packed.path / "data" / "extra.tar").write_bytes(b"")
    (packed.path / "data" / "test.0009.tar.partial").write_bytes(b"x")
    (packed.path / "notes.txt").write_text("hi")
    (packed.path / "data" / "sub").mkdir()
    problems = validate_collection(packed.path)
    assert {
        Problem("data/extra.tar", "unexpected file (not in manifest-sha256.txt)"),
        Problem(
            "data/test.0009.tar.partial", "left over from an interrupted build (safe to delete)"
        ),
        Problem("notes.txt", "unexpected file (not in manifest-sha256.txt)"),
        Problem("data/sub", "unexpected directory"),
    } <= set(problems)


def test_a_track_missing_from_the_index(packed: PackedCollection) -> None:
    path = packed.path / "data" / "index.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    reseal(packed.path)
    entry = packed.entries[2]
    assert validate_collection(packed.path) == [
        Problem(
            f"data/{entry.volume}",
            f"member 'syn:track:2.opus' at offset {entry.offset} is not in the index",
        )
    ]


def test_a_broken_index_line(packed: PackedCollection) -> None:
    path = packed.path / "data" / "index.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[6] = b'{"id": "x"}\n'
    path.write_bytes(b"".join(lines))
    reseal(packed.path)
    problems = validate_collection(packed.path)
    assert problems[0].location == "data/index.jsonl:7"
    assert "invalid line" in problems[0].message


def test_payload_oxum_is_required(packed: PackedCollection) -> None:
    info = packed.path / "bag-info.txt"
    info.write_text("".join(t for t in info.read_text().splitlines(True) if "Oxum" not in t))
    problems = validate_collection(packed.path)
    assert Problem("bag-info.txt", "no Payload-Oxum") in problems


def test_extra_checks_add_their_problems(packed: PackedCollection) -> None:
    seen: list[Path] = []

    def torrent_check(bag: Path) -> list[Problem]:
        seen.append(bag)
        return [Problem("../test.torrent", "piece 3 does not match")]

    assert validate_collection(packed.path, extra_checks=[torrent_check]) == [
        Problem("../test.torrent", "piece 3 does not match")
    ]
    assert seen == [packed.path]


def test_not_a_directory(tmp_path: Path) -> None:
    assert [p.location for p in validate_collection(tmp_path / "nothing")] == ["."]
