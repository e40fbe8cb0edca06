"""make_torrent against the real tools: mktorrent, transmission-show, libtorrent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import libtorrent as lt
import pytest

from phonotheca.torrents import (
    PieceHasher,
    Torrent,
    assemble_torrent,
    list_payload,
    make,
    make_torrent,
    piece_length_for,
    write_torrent,
)
from phonotheca.torrents.bencode import Bvalue, decode
from tests.torrents import SIZES, TRICKY_SIZES, libtorrent_make, make_tree

needs_mktorrent = pytest.mark.skipif(not shutil.which("mktorrent"), reason="needs mktorrent")
needs_transmission = pytest.mark.skipif(
    not shutil.which("transmission-show"), reason="needs transmission-show"
)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("c") / "collection-0001", SIZES)


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("t") / "tricky ☃", TRICKY_SIZES, seed=2)


def _info(torrent: Torrent) -> dict[bytes, Bvalue]:
    meta = decode(torrent.data)
    assert isinstance(meta, dict)
    info = meta[b"info"]
    assert isinstance(info, dict)
    return info


def _mktorrent(directory: Path, piece_length: int, out: Path) -> str:
    log2 = piece_length.bit_length() - 1
    subprocess.run(
        ["mktorrent", "-d", "-t", "2", "-l", str(log2), "-o", str(out), str(directory)],
        check=True,
        capture_output=True,
    )
    return str(lt.torrent_info(str(out)).info_hashes().v1)


@needs_mktorrent
# mktorrent 1.1 takes -l 15 to 28 only: 16 KiB pieces are compared with libtorrent below.
@pytest.mark.parametrize("piece_length", [32 * 1024, 64 * 1024, 256 * 1024])
@pytest.mark.parametrize("tree", ["collection", "tricky"])
def test_v1_infohash_equals_mktorrent(
    tree: str, piece_length: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    directory: Path = request.getfixturevalue(tree)
    ours = make_torrent(directory, piece_length=piece_length)
    assert ours.infohash_v1 == _mktorrent(directory, piece_length, tmp_path / "m.torrent")
    # mktorrent keeps empty files, and so do we.
    assert any(f.length == 0 for f in ours.files)


@needs_transmission
def test_transmission_reads_v1(collection: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.torrent"
    torrent = make_torrent(collection, output=path, trackers=["http://127.0.0.1:1/announce"])
    shown = subprocess.run(
        ["transmission-show", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert f"Hash: {torrent.infohash_v1}" in shown
    assert "Name: collection-0001" in shown
    assert "Ünïcødé/日本語.ogg" in shown
    assert "http://127.0.0.1:1/announce" in shown


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("tree", ["collection", "tricky"])
def test_libtorrent_reads_ours_with_the_same_hashes(
    tree: str, hybrid: bool, request: pytest.FixtureRequest
) -> None:
    directory: Path = request.getfixturevalue(tree)
    ours = make_torrent(directory, hybrid=hybrid)
    hashes = lt.torrent_info(ours.data).info_hashes()
    assert str(hashes.v1) == ours.infohash_v1
    if hybrid:
        assert str(hashes.v2) == ours.infohash_v2
    else:
        assert ours.infohash_v2 is None and not hashes.has_v2()


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("piece_length", [16 * 1024, 64 * 1024])
def test_libtorrent_makes_the_same_torrent(
    collection: Path, piece_length: int, hybrid: bool
) -> None:
    ours = make_torrent(collection, piece_length=piece_length, hybrid=hybrid)
    theirs = decode(libtorrent_make(collection, piece_length, hybrid=hybrid))
    assert isinstance(theirs, dict)
    meta = decode(ours.data)
    assert isinstance(meta, dict)
    # Same info dictionary, byte for byte, so the same v1 and v2 infohashes.
    assert meta[b"info"] == theirs[b"info"]
    assert meta.get(b"piece layers") == theirs.get(b"piece layers")


@pytest.mark.parametrize("hybrid", [False, True])
def test_mapped_files_give_libtorrents_torrent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hybrid: bool
) -> None:
    # Large files are hashed through mappings, window after window: windows that end
    # inside pieces and blocks, files that do not start on a piece, small files between.
    monkeypatch.setattr(make, "MAP_MIN", 50_000)
    monkeypatch.setattr(make, "MAP_WINDOW", 40_000)
    sizes = {"a.tar": 300_001, "b.txt": 49_999, "c.tar": 50_000, "d/e.tar": 131_072}
    directory = make_tree(tmp_path / "mapped", sizes, seed=3)
    ours = make_torrent(directory, piece_length=32 * 1024, hybrid=hybrid)
    theirs = libtorrent_make(directory, 32 * 1024, hybrid=hybrid)
    meta, their_meta = decode(ours.data), decode(theirs)
    assert isinstance(meta, dict) and isinstance(their_meta, dict)
    assert meta[b"info"] == their_meta[b"info"]
    assert meta.get(b"piece layers") == their_meta.get(b"piece layers")
    hashes = lt.torrent_info(theirs).info_hashes()
    assert ours.infohash_v1 == str(hashes.v1)
    assert ours.infohash_v2 == (str(hashes.v2) if hybrid else None)


def test_hybrid_layout(tricky: Path) -> None:
    torrent = make_torrent(tricky, hybrid=True, piece_length=32 * 1024)
    info = _info(torrent)
    assert info[b"meta version"] == 2
    files = info[b"files"]
    assert isinstance(files, list)
    offset = 0
    for entry in files:
        assert isinstance(entry, dict)
        length = entry[b"length"]
        assert isinstance(length, int)
        if length:  # every non-empty file, pad files included, starts on a piece boundary
            assert offset % torrent.piece_length == 0 or entry.get(b"attr") == b"p"
        if entry.get(b"attr") == b"p":
            assert entry[b"path"] == [b".pad", str(length).encode()]
        offset += length
    assert offset % torrent.piece_length == 0  # the last file is padded too, as libtorrent does
    # v1 list follows the file tree order: components, so "a/…" before "a-c" and "a.txt".
    names = [e[b"path"] for e in files if isinstance(e, dict) and b"attr" not in e]
    assert names == [
        [b"a", b"b", b"x"],
        [b"a", b"empty2"],
        [b"a-c", b"y"],
        [b"a.txt"],
        [b"empty"],
        [b"zz"],
        ["é".encode(), "ü.txt".encode()],
    ]
    tree = info[b"file tree"]
    assert isinstance(tree, dict)
    assert tree[b"empty"] == {b"": {b"length": 0}}


def test_metainfo_keys(collection: Path) -> None:
    torrent = make_torrent(
        collection,
        trackers=[
            "udp://127.0.0.1:6969/announce",
            ["http://a.example/announce", "http://b.example/announce"],
        ],
        web_seeds=["https://mirror.example/torrents/"],
        comment="Phonotheca test collection",
    )
    meta = decode(torrent.data)
    assert isinstance(meta, dict)
    assert sorted(meta) == [
        b"announce",
        b"announce-list",
        b"comment",
        b"created by",
        b"info",
        b"url-list",
    ]
    assert meta[b"created by"] == b"phonotheca"
    assert meta[b"announce"] == b"udp://127.0.0.1:6969/announce"
    assert meta[b"announce-list"] == [
        [b"udp://127.0.0.1:6969/announce"],
        [b"http://a.example/announce", b"http://b.example/announce"],
    ]
    assert meta[b"url-list"] == [b"https://mirror.example/torrents/"]
    assert sorted(_info(torrent)) == [b"files", b"name", b"piece length", b"pieces"]
    assert _info(torrent)[b"name"] == b"collection-0001"
    total = sum(SIZES.values())
    assert torrent.total_size == total
    assert torrent.piece_length == piece_length_for(total)
    assert torrent.num_pieces == -(-total // torrent.piece_length)
    assert [f.path for f in torrent.files] == sorted(SIZES, key=lambda p: p.encode())
    assert torrent.magnet == f"magnet:?xt=urn:btih:{torrent.infohash_v1}&dn=collection-0001"


def test_deterministic(collection: Path, tmp_path: Path) -> None:
    # A copy elsewhere, made in another order with other times, gives the same bytes.
    copy = tmp_path / "collection-0001"
    for rel in reversed(sorted(SIZES)):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(collection / rel, copy / rel)
        os.utime(copy / rel, (1, 1))
    for hybrid in (False, True):
        a = make_torrent(collection, hybrid=hybrid, workers=2)
        b = make_torrent(copy, hybrid=hybrid, workers=0)
        assert a.data == b.data and a == b


@pytest.mark.parametrize("hybrid", [False, True])
def test_hashing_while_writing_gives_the_same_torrent(
    collection: Path, tmp_path: Path, hybrid: bool
) -> None:
    # The build stage's way: each file's bytes go to the disk and the hasher as produced.
    out = tmp_path / "collection-0001"
    with PieceHasher(64 * 1024, hybrid=hybrid) as hasher:
        for parts, source in list_payload(collection, hybrid=hybrid):
            target = out.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            hasher.start_file(parts)
            with open(target, "wb") as f:
                data = source.read_bytes()
                for start in range(0, len(data), 10_000):
                    chunk = data[start : start + 10_000]
                    f.write(chunk)
                    hasher.write(chunk)
            hasher.end_file()
        torrent = assemble_torrent(hasher.finish(), out.name, comment="x")
    assert torrent == make_torrent(out, hybrid=hybrid, piece_length=64 * 1024, comment="x")


def test_name_is_the_directory_name(collection: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(collection / "data")
    assert make_torrent(Path("..")).name == "collection-0001"


def test_write_is_atomic(collection: Path, tmp_path: Path) -> None:
    out = tmp_path / "collection-0001.torrent"
    torrent = make_torrent(collection, hybrid=True, output=out)
    assert out.read_bytes() == torrent.data
    assert not (tmp_path / "collection-0001.torrent.partial").exists()
    write_torrent(torrent, out)  # replacing works too
    assert os.listdir(tmp_path) == ["collection-0001.torrent"]


def test_refuses_what_a_torrent_cannot_hold(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "nothing").write_bytes(b"")
    with pytest.raises(ValueError, match="no data"):
        make_torrent(empty)
    linked = make_tree(tmp_path / "linked", {"a": 10})
    (linked / "b").symlink_to(linked / "a")
    with pytest.raises(ValueError, match="symbolic link"):
        make_torrent(linked)
    with pytest.raises(ValueError, match="not a directory"):
        make_torrent(linked / "a")
    plain = make_tree(tmp_path / "plain", {"a": 10})
    with pytest.raises(ValueError, match="ending in '/'"):
        make_torrent(plain, web_seeds=["https://mirror.example/x"])
    with pytest.raises(ValueError, match="tracker"):
        make_torrent(plain, trackers=["not a url"])
    with pytest.raises(ValueError, match="power of two"):
        make_torrent(plain, piece_length=100_000)


def test_refuses_names_that_are_not_utf8(tmp_path: Path) -> None:
    directory = tmp_path / "latin1"
    directory.mkdir()
    with open(os.path.join(os.fsencode(directory), b"caf\xe9"), "wb") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="UTF-8"):
        make_torrent(directory)
