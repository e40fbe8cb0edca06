"""Tar volumes: member names, fixed headers, the real GNU tar, splitting, streaming."""

from __future__ import annotations

import hashlib
import io
import tarfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca import sha256pair
from phonotheca.build import PackError, VolumeWriter, member_name, plan_volumes
from phonotheca.build.tarvolume import (
    BLOCK,
    MAX_OCTAL_11,
    RECORD,
    check_member_name,
    member_header,
)
from tests.build import MTIME, RecordingSink, audio, run_tar

# --- member names -------------------------------------------------------------------------


def test_member_name_keeps_a_plain_id() -> None:
    assert member_name("syn:track:1", "opus") == "syn:track:1.opus"
    assert member_name("mb:track:e91522f2-d166-41ff-87b8-f280554d586d", "ogg") == (
        "mb:track:e91522f2-d166-41ff-87b8-f280554d586d.ogg"
    )
    assert member_name("Sigur Rós – Hoppípolla", "flac") == "Sigur Rós – Hoppípolla.flac"


@pytest.mark.parametrize(
    ("public_id", "name"),
    [
        ("a/b", "a%2Fb.ogg"),
        ("..", "%2E..ogg"),
        (".hidden", "%2Ehidden.ogg"),
        ("50%", "50%25.ogg"),
        ("a\\b\nc", "a%5Cb%0Ac.ogg"),
    ],
)
def test_member_name_escapes_unsafe_characters(public_id: str, name: str) -> None:
    assert member_name(public_id, "ogg") == name


def test_member_name_hashes_long_and_non_nfc_ids() -> None:
    long_id = "x" * 300
    name = member_name(long_id, "opus")
    assert len(name.encode()) == 100
    assert name.startswith("x" * 60) and "~" in name and name.endswith(".opus")
    # Two ids that share a long prefix still differ.
    assert member_name("x" * 300 + "1", "opus") != member_name("x" * 300 + "2", "opus")
    # NFC and NFD spellings are different ids: both names are NFC, and they differ.
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert member_name(nfc, "ogg") == "café.ogg"
    assert member_name(nfd, "ogg").startswith("café~")
    long_accented = "é" * 120
    assert len(member_name(long_accented, "ogg").encode()) <= 100


def test_member_name_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        member_name("", "ogg")
    for ext in ("", "o/g", ".ogg", "x" * 17):
        with pytest.raises(ValueError):
            member_name("syn:track:1", ext)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=150), min_size=2, max_size=8, unique=True))
def test_member_names_are_safe_unique_and_stable(ids: list[str]) -> None:
    names = [member_name(i, "ogg") for i in ids]
    assert len(set(names)) == len(ids)
    for public_id, name in zip(ids, names, strict=True):
        check_member_name(name)
        assert len(name.encode()) <= 100
        assert unicodedata.normalize("NFC", name) == name
        assert not name.startswith(".")
        assert member_name(public_id, "ogg") == name


# --- headers ------------------------------------------------------------------------------


def write_volume(
    tmp_path: Path, members: list[tuple[str, bytes]], max_volume_size: int = 2**20
) -> tuple[VolumeWriter, list[Path]]:
    tmp_path.mkdir(exist_ok=True)
    with VolumeWriter(tmp_path, "vol", mtime=MTIME, max_volume_size=max_volume_size) as writer:
        for name, data in members:
            writer.add(name, len(data), io.BytesIO(data))
    return writer, [tmp_path / v.name for v in writer.volumes]


def test_headers_are_fixed_ustar(tmp_path: Path) -> None:
    _, [volume] = write_volume(tmp_path, [("a.ogg", b"abc"), ("b.ogg", b"")])
    raw = volume.read_bytes()
    assert raw[257:265] == b"ustar\x0000" and raw[156:157] == b"0"
    with tarfile.open(volume) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a.ogg", "b.ogg"]
    for m in members:
        assert m.isreg() and m.mode == 0o644 and m.mtime == MTIME
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert (m.devmajor, m.devminor) == (0, 0) and not m.pax_headers
    assert len(raw) % RECORD == 0
    assert raw[-2 * BLOCK :] == bytes(2 * BLOCK)


def test_pax_header_only_for_non_ascii_long_names_and_huge_sizes() -> None:
    assert len(member_header("a.ogg", 10, MTIME)) == BLOCK
    for name in ("Björk.ogg", "x" * 101 + ".ogg"):
        header = member_header(name, 10, MTIME)
        assert header[156:157] == b"x" and len(header) == 3 * BLOCK
        info = tarfile.TarInfo.frombuf(header[2 * BLOCK :], "utf-8", "strict")
        assert info.name.isascii() and len(info.name) <= 100 and info.size == 10
    huge = member_header("a.ogg", MAX_OCTAL_11 + 1, MTIME)
    records = huge[BLOCK : 2 * BLOCK].rstrip(b"\0")
    assert records == b"19 size=8589934592\n"
    assert huge[2 * BLOCK + 124 : 2 * BLOCK + 136] == b"00000000000\0"


@pytest.mark.parametrize("length", range(85, 115))
def test_pax_record_lengths_count_themselves(length: int) -> None:
    # Around 100 bytes a record's length gains a digit: each declared length must be exact.
    header = member_header("é" + "y" * length, 1, MTIME)
    size = int(header[124:135], 8)
    data = header[BLOCK : BLOCK + size]
    while data:
        declared = int(data.split(b" ", 1)[0])
        assert data[declared - 1 : declared] == b"\n"
        data = data[declared:]


# --- the real tar -------------------------------------------------------------------------


def test_gnu_tar_lists_and_extracts_every_member(tmp_path: Path) -> None:
    members = [
        ("syn:track:1.opus", audio(1, 3000)),
        ("empty.ogg", b""),
        ("exactly-one-block.ogg", audio(2, 512)),
        ("one-more.ogg", audio(3, 513)),
        ("Hoppípolla – Sigur Rós.ogg", audio(4, 100)),
        ("日本語のタイトル.flac", audio(5, 77)),
        ("x" * 140 + ".ogg", audio(6, 1000)),
        (member_name("é" * 200, "ogg"), audio(7, 10)),
        ("big.flac", audio(8, 2**20 + 1)),  # crosses a copy chunk
    ]
    _, [volume] = write_volume(tmp_path / "out", members, max_volume_size=4 * 2**20)
    listing = run_tar("-tvf", volume).stdout.splitlines()
    assert len(listing) == len(members)
    for line, (name, data) in zip(listing, members, strict=True):
        assert line.startswith("-rw-r--r-- 0/0 ")
        assert line.endswith(" " + name)
        assert f" {len(data)} " in line
    extracted = tmp_path / "x"
    extracted.mkdir()
    run_tar("-xf", volume, cwd=extracted)
    assert sorted(p.name for p in extracted.iterdir()) == sorted(n for n, _ in members)
    for name, data in members:
        assert (extracted / name).read_bytes() == data


# --- streaming, offsets, observer ---------------------------------------------------------


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "hashlib"])
def test_the_sink_sees_every_byte_and_offsets_point_at_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paired: bool
) -> None:
    """Member and volume digests are hashlib's, computed in one pass or in two."""
    if paired and not sha256pair.PAIRED:
        pytest.skip("the compiled module is not available on this machine")
    monkeypatch.setattr(sha256pair, "PAIRED", paired)
    sink = RecordingSink()
    datas = [audio(i, s) for i, s in enumerate([4000, 9000, 0, 15000, 600, 2**20 + 3])]
    with VolumeWriter(
        tmp_path, "obs", mtime=MTIME, max_volume_size=RECORD * 2, sink=sink
    ) as writer:
        packed = [writer.add(f"m{i}.ogg", len(d), d) for i, d in enumerate(datas)]
    volumes = writer.volumes
    assert sink.order == [f"data/{v.name}" for v in volumes] and sink.current is None
    for v in volumes:
        raw = (tmp_path / v.name).read_bytes()
        assert bytes(sink.files[f"data/{v.name}"]) == raw
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == (v.size, v.sha256)
    for member, data in zip(packed, datas, strict=True):
        raw = (tmp_path / member.volume).read_bytes()
        assert raw[member.offset : member.offset + member.length] == data
        assert member.sha256 == hashlib.sha256(data).hexdigest()


def test_volumes_split_at_the_limit_and_big_members_stand_alone(tmp_path: Path) -> None:
    limit = 3 * RECORD
    sizes = [12_000, 12_000, 12_000, 12_000, 100_000, 10, 15_000, 20]
    datas = [audio(i, s) for i, s in enumerate(sizes)]
    with VolumeWriter(tmp_path, "split", mtime=MTIME, max_volume_size=limit) as writer:
        packed = [writer.add(f"t{i}.ogg", len(d), d) for i, d in enumerate(datas)]
    by_volume: dict[str, list[str]] = {}
    for v in writer.volumes:
        with tarfile.open(tmp_path / v.name) as tar:
            by_volume[v.name] = tar.getnames()
            for info in tar:  # every member lies whole inside its volume
                assert info.offset_data + info.size <= v.size
        assert v.size % RECORD == 0
        if v.members > 1:
            assert v.size <= limit
    assert list(by_volume.values()) == [
        ["t0.ogg", "t1.ogg"],
        ["t2.ogg", "t3.ogg"],
        ["t4.ogg"],  # larger than the limit: a volume of its own
        ["t5.ogg", "t6.ogg", "t7.ogg"],
    ]
    assert (tmp_path / "split.0003.tar").stat().st_size > limit
    assert [p.volume for p in packed] == [f"split.{n:04d}.tar" for n in (1, 1, 2, 2, 3, 4, 4, 4)]
    plan = plan_volumes("split", [(f"t{i}.ogg", s) for i, s in enumerate(sizes)], limit)
    assert [(v.name, v.size) for v in plan] == [(v.name, v.size) for v in writer.volumes]
    planned = [m for v in plan for m in v.members]
    assert [(m.volume, m.offset, m.length) for m in planned] == [
        (p.volume, p.offset, p.length) for p in packed
    ]


class Trickle(io.RawIOBase):
    """A stream that returns a few bytes per read, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.data.read(min(size, 7) if size >= 0 else 7)


def test_short_reads_are_fine(tmp_path: Path) -> None:
    data = audio(9, 1000)
    with VolumeWriter(tmp_path, "t", mtime=MTIME) as writer:
        member = writer.add("a.ogg", len(data), Trickle(data))  # type: ignore[arg-type]
    raw = (tmp_path / member.volume).read_bytes()
    assert raw[member.offset : member.offset + 1000] == data


@pytest.mark.parametrize("given", [999, 1001])
def test_a_stream_of_the_wrong_length_leaves_no_volume(tmp_path: Path, given: int) -> None:
    with (
        pytest.raises(PackError, match=r"a\.ogg"),
        VolumeWriter(tmp_path, "t", mtime=MTIME) as writer,
    ):
        writer.add("ok.ogg", 3, b"abc")
        writer.add("a.ogg", 1000, io.BytesIO(audio(1, given)))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PackError, match="cannot go on"):
        writer.add("b.ogg", 1, b"b")


def test_paths_are_opened_when_written_and_hashes_checked(tmp_path: Path) -> None:
    source = tmp_path / "src.ogg"
    source.write_bytes(audio(3, 5000))
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    with VolumeWriter(out, "t", mtime=MTIME) as writer:
        member = writer.add("a.ogg", 5000, source, sha256=good)
    assert member.sha256 == good
    with (
        pytest.raises(PackError, match="did the source change"),
        VolumeWriter(out, "u", mtime=MTIME) as writer,
    ):
        writer.add("a.ogg", 5000, source, sha256="0" * 64)
    assert sorted(p.name for p in out.iterdir()) == ["t.0001.tar"]


def test_bad_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    with VolumeWriter(tmp_path, "t", mtime=MTIME) as writer:
        for bad in ("", "..", "a/b.ogg", "a\0.ogg", unicodedata.normalize("NFD", "é.ogg")):
            with pytest.raises(PackError):
                writer.add(bad, 1, b"x")
        writer.add("a.ogg", 1, b"x")
        with pytest.raises(PackError, match="twice"):
            writer.add("a.ogg", 1, b"x")
        with pytest.raises(PackError, match="bytes given"):
            writer.add("c.ogg", 2, b"x")
