"""Volumes written with direct I/O from the buffers that are hashed: the same bytes,
digests and piece hashes as through the page cache, the same errors, and the page cache
where direct I/O is refused."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
from pathlib import Path

import pytest

from phonotheca import filemap
from phonotheca.build import PackError, VolumeWriter, volumeio, volumewindow
from phonotheca.build.tarvolume import PackedMember
from phonotheca.torrents import PieceHasher
from tests.build import MTIME, RecordingSink, audio

# Members of several windows each and one of a few bytes, starting at offsets that are not
# page aligned (a 512-byte header comes first).
SIZES = [300_000, 700_001, 1_500_000, 5]
WINDOW = 256 * 1024


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    paths = []
    for i, size in enumerate(SIZES):
        path = tmp_path / f"src{i}.flac"
        path.write_bytes(audio(40 + i, size))
        paths.append(path)
    return paths


def pack(
    out: Path, sources: list[Path], *, hybrid: bool = False
) -> tuple[bytes, bytes, list[PackedMember]]:
    """Pack the sources into one volume; return its bytes, the piece hashes and the members."""
    out.mkdir()
    sink = RecordingSink()
    hasher = PieceHasher(64 * 1024, hybrid=hybrid)

    class Both:
        def start_file(self, path: str) -> None:
            sink.start_file(path)
            hasher.start_file(path)

        def update(self, data: bytes | memoryview, *, stable: bool = False) -> None:
            sink.update(data, stable=stable)
            hasher.update(data, stable=stable)

        def end_file(self) -> None:
            sink.end_file()
            hasher.end_file()

    with VolumeWriter(out, "k", mtime=MTIME, sink=Both()) as writer:
        members = [
            writer.add(f"{p.stem}.flac", p.stat().st_size, p, sha256=_sha(p)) for p in sources
        ]
    [volume] = writer.volumes
    raw = (out / volume.name).read_bytes()
    assert bytes(sink.files[f"data/{volume.name}"]) == raw
    assert volume.sha256 == hashlib.sha256(raw).hexdigest()
    pieces = hasher.finish()
    v2 = b"".join((f.pieces_root or b"") + f.piece_layer for f in pieces.files)
    return raw, pieces.pieces + v2, members


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows smaller than most members, so members span windows and windows members."""
    monkeypatch.setattr(volumewindow, "WINDOW", WINDOW)


@pytest.mark.parametrize("hybrid", [False, True])
def test_direct_and_page_cache_writes_give_the_same_bytes_and_hashes(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch, hybrid: bool
) -> None:
    direct = pack(tmp_path / "direct", sources, hybrid=hybrid)
    monkeypatch.setattr(volumeio._Methods, "direct", False)
    assert pack(tmp_path / "cached", sources, hybrid=hybrid) == direct
    raw, _, members = direct
    for path, member in zip(sources, members, strict=True):
        assert raw[member.offset : member.offset + member.length] == path.read_bytes()
        assert member.sha256 == _sha(path)


def test_volumes_are_written_with_direct_io_where_the_filesystem_has_it(tmp_path: Path) -> None:
    fd = volumeio.open_volume(tmp_path / "v.tar")
    try:
        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            pytest.skip("this filesystem has no direct I/O")
        block = mmap.mmap(-1, 4096)  # page aligned, as direct I/O wants
        block[:5] = b"hello"
        volumeio.write_at(fd, memoryview(block)[:512], 512)
    finally:
        os.close(fd)
    assert (tmp_path / "v.tar").read_bytes() == bytes(512) + b"hello" + bytes(507)


def test_a_refused_direct_write_goes_on_through_the_page_cache(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device with 4 KiB sectors refuses 512-byte aligned direct writes (EINVAL)."""
    expected = pack(tmp_path / "expected", sources)
    real_pwrite = os.pwrite
    refused: list[int] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(volumeio.os, "pwrite", pwrite)
    assert pack(tmp_path / "refused", sources) == expected
    if volumeio._Methods.direct and not refused:
        pytest.skip("this filesystem has no direct I/O")


@pytest.mark.parametrize("actual", [299_999, 300_001])
def test_a_source_of_another_size_fails_its_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, actual: int
) -> None:
    source = tmp_path / "src.flac"
    source.write_bytes(audio(3, actual))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PackError) as caught, VolumeWriter(out, "t", mtime=MTIME) as writer:
        writer.add("a.flac", 300_000, source)
    assert caught.value.member == "a.flac"
    assert "ended after" in str(caught.value) or "longer than" in str(caught.value)
    assert list(out.iterdir()) == []


def test_a_changed_source_is_caught_by_the_member_digest(tmp_path: Path) -> None:
    source = tmp_path / "src.flac"
    source.write_bytes(audio(3, 600_000))
    out = tmp_path / "out"
    out.mkdir()
    with (
        pytest.raises(PackError, match="did the source change") as caught,
        VolumeWriter(out, "t", mtime=MTIME) as writer,
    ):
        writer.add("a.flac", 600_000, source, sha256=hashlib.sha256(b"other").hexdigest())
    assert caught.value.member == "a.flac"
    assert list(out.iterdir()) == []


def test_map_range_views_unaligned_offsets(tmp_path: Path) -> None:
    data = audio(5, 3 * 4096 + 77)
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        for offset, length in ((0, len(data)), (513, 5000), (4096, 1), (4095, 4098)):
            view = filemap.map_range(f.fileno(), offset, length)
            assert bytes(view) == data[offset : offset + length]
            assert view.readonly
            view.release()


def test_start_writeback_accepts_any_range(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10_000)
    with open(path, "rb+") as f:
        volumeio.start_writeback(f.fileno(), 0, 10_000)
        volumeio.start_writeback(f.fileno(), 4096, 0)
    assert path.read_bytes() == b"x" * 10_000


def test_preallocate_reserves_blocks_that_read_as_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumeio._Methods, "fallocate", True)
    path = tmp_path / "f"
    path.write_bytes(b"head")
    with open(path, "rb+") as f:
        volumeio.preallocate(f.fileno(), 4, 1 << 20)
        volumeio.preallocate(f.fileno(), 0, 0)  # nothing to reserve
    if not volumeio._Methods.fallocate:
        pytest.skip("this filesystem cannot preallocate")
    assert path.stat().st_size == 4 + (1 << 20)
    assert path.stat().st_blocks * 512 >= 1 << 20, "the blocks are reserved, not a hole"
    assert path.read_bytes() == b"head" + bytes(1 << 20)


class _FailingFallocate:
    """Stands in for the C library's fallocate, failing with ``err`` as it would."""

    def __init__(self, err: int) -> None:
        self.err = err
        self.calls: list[tuple[int, int, int, int]] = []

    def __call__(self, fd: int, mode: int, offset: int, length: int) -> int:
        self.calls.append((fd, mode, offset, length))
        ctypes.set_errno(self.err)
        return -1


def test_preallocate_is_a_hint_where_unsupported_and_stops_asking(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = pack(tmp_path / "plain", sources)
    monkeypatch.setattr(volumeio._Methods, "fallocate", True)
    unsupported = _FailingFallocate(errno.EOPNOTSUPP)
    monkeypatch.setattr(volumeio, "_fallocate", unsupported)
    assert pack(tmp_path / "unsupported", sources) == expected
    assert len(unsupported.calls) == 1, "asked once, then never again"
    assert volumeio._Methods.fallocate is False


def test_a_full_disk_fails_the_volume_before_writing(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumeio._Methods, "fallocate", True)
    monkeypatch.setattr(volumeio, "_fallocate", _FailingFallocate(errno.ENOSPC))
    out = tmp_path / "out"
    out.mkdir()
    with (
        pytest.raises(OSError, match="No space left") as caught,
        VolumeWriter(out, "k", mtime=MTIME) as writer,
    ):
        writer.add("a.flac", sources[0].stat().st_size, sources[0])
    assert caught.value.errno == errno.ENOSPC
    assert list(out.iterdir()) == [], "the unfinished volume is gone"


def test_preallocated_and_plain_volumes_are_identical(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumeio._Methods, "fallocate", True)
    reserved: list[tuple[int, int]] = []
    real = volumeio.preallocate

    def recording(fd: int, offset: int, length: int) -> None:
        reserved.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(volumewindow, "preallocate", recording)
    with_reservation = pack(tmp_path / "reserved", sources)
    assert reserved and all(length <= WINDOW for _, length in reserved)
    monkeypatch.setattr(volumewindow, "preallocate", lambda fd, offset, length: None)
    assert pack(tmp_path / "plain", sources) == with_reservation


class KeepingSink:
    """Keeps every stable view it is given, reading them only at the end, as a piece
    hasher running behind may; copies the rest."""

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = []

    def start_file(self, path: str) -> None:
        pass

    def update(self, data: bytes | memoryview, *, stable: bool = False) -> None:
        self.chunks.append(data if stable else bytes(data))

    def end_file(self) -> None:
        pass


def test_windows_held_by_the_sink_are_not_reused_and_the_others_are(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[volumewindow.Window] = []
    real_init = volumewindow.Window.__post_init__

    def counting(self: volumewindow.Window) -> None:
        real_init(self)
        created.append(self)

    monkeypatch.setattr(volumewindow.Window, "__post_init__", counting)
    keeping = KeepingSink()
    out = tmp_path / "kept"
    out.mkdir()
    with VolumeWriter(out, "k", mtime=MTIME, sink=keeping) as writer:
        for i, p in enumerate(sources * 3):
            writer.add(f"{i}.flac", p.stat().st_size, p, sha256=_sha(p))
    [volume] = writer.volumes
    assert any(isinstance(c, memoryview) for c in keeping.chunks)
    assert b"".join(keeping.chunks) == (out / volume.name).read_bytes()
    kept_windows = len(created)
    assert kept_windows * WINDOW >= volume.size, "every window was held, none reused"

    created.clear()
    out = tmp_path / "copied"
    out.mkdir()
    with VolumeWriter(out, "k", mtime=MTIME, sink=RecordingSink()) as writer:
        for i, p in enumerate(sources * 3):
            writer.add(f"{i}.flac", p.stat().st_size, p, sha256=_sha(p))
    bound = volumewindow.DIGEST_QUEUE + volumewindow.WRITE_QUEUE + 4
    assert len(created) <= bound < kept_windows, "windows reused"
