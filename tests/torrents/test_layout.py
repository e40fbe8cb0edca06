"""The one torrent-layout reader: what libtorrent sees, and a clear error for anything bad."""

from __future__ import annotations

import os
import re
from pathlib import Path

import libtorrent as lt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phonotheca
from phonotheca.torrents import bencode, make_torrent
from phonotheca.torrents.check import check_torrent
from phonotheca.torrents.layout import (
    MAX_TORRENT_BYTES,
    LayoutError,
    TorrentLayout,
    parse_layout,
    read_layout,
)
from tests.torrents import SIZES, make_tree


@pytest.fixture(scope="module", params=[False, True], ids=["v1", "hybrid"])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    directory = make_tree(tmp_path_factory.mktemp("layout") / "collection-0001", SIZES)
    return make_torrent(directory, hybrid=request.param, piece_length=32_768).data


def test_the_layout_is_what_libtorrent_reads(made: bytes) -> None:
    layout = parse_layout(made)
    info = lt.torrent_info(made)
    storage = info.layout()
    assert layout.name == info.name() == "collection-0001"
    assert layout.piece_length == info.piece_length()
    assert layout.num_pieces == info.num_pieces()
    assert layout.total == info.total_size()
    assert len(layout.files) == storage.num_files()
    for i, f in enumerate(layout.files):
        assert f.offset == storage.file_offset(i) and f.length == storage.file_size(i)
        assert f.pad == bool(storage.file_flags(i) & lt.file_storage.flag_pad_file)
        if not f.pad:
            assert f"{layout.name}/{f.path}" == storage.file_path(i).replace(os.sep, "/")
    for piece in range(layout.num_pieces):
        assert layout.piece_hash(piece) == info.hash_for_piece(piece)
        assert layout.piece_size(piece) == info.piece_size(piece)


def test_pieces_of_a_file_and_files_of_a_piece_agree(made: bytes) -> None:
    layout = parse_layout(made)
    volume = layout.file("data/vol.0001.tar")
    pieces = layout.file_pieces("data/vol.0001.tar")
    assert pieces.start == volume.offset // layout.piece_length
    for p in pieces:
        assert "data/vol.0001.tar" in layout.files_in(p)
    assert layout.find("data/no-such-file") is None
    with pytest.raises(KeyError, match="no-such-file"):
        layout.file("data/no-such-file")


def _torrent(info: dict[str, bencode.Bencodable]) -> bytes:
    return bencode.encode({"info": info})


def _info(**changes: bencode.Bencodable) -> dict[str, bencode.Bencodable]:
    info: dict[str, bencode.Bencodable] = {
        "name": "c",
        "piece length": 16_384,
        "pieces": b"\0" * 20,
        "files": [{"length": 10, "path": ["data", "x.tar"]}],
    }
    info.update(changes)
    return info


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not bencoding", "not a torrent"),
        (b"l" * 100_000 + b"e" * 100_000, "nested"),
        (bencode.encode([1]), "no info"),
        (_torrent(_info(pieces=b"\0" * 40)), "piece hashes"),
        (_torrent(_info(files=[{"length": 10, "path": ["..", "x"]}])), "unsafe file path"),
        (_torrent(_info(files=[{"length": 10, "path": ["data/../../x"]}])), "unsafe file path"),
        (_torrent(_info(files=[{"length": 10, "path": []}])), "no length or path"),
        (_torrent(_info(files=[{"length": -1, "path": ["x"]}])), "no length or path"),
        (_torrent(_info(files=[{"length": 10, "path": [b"\xff"]}])), "not UTF-8"),
        (_torrent(_info(name="..")), "unsafe name"),
        (_torrent(_info(**{"piece length": 0})), "piece length"),
    ],
)
def test_bad_torrents_are_one_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(LayoutError, match=re.escape(reason)) as caught:
        parse_layout(data, "bad.torrent")
    assert str(caught.value).startswith("bad.torrent: ")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_torrents_never_raise_anything_else(data: st.DataObject) -> None:
    good = _torrent(_info())
    at = data.draw(st.integers(0, len(good) - 1))
    damaged = good[:at] + data.draw(st.binary(min_size=0, max_size=8)) + good[at + 1 :]
    try:
        layout = parse_layout(damaged)
    except LayoutError:
        return
    assert isinstance(layout, TorrentLayout)


def test_a_torrent_file_past_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.torrent"
    with open(path, "wb") as f:
        f.truncate(MAX_TORRENT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(LayoutError, match="larger than 16 MiB"):
        read_layout(path)
    with pytest.raises(LayoutError, match="cannot read"):
        read_layout(tmp_path / "missing.torrent")


def test_check_reports_a_bad_torrent_as_a_problem(tmp_path: Path) -> None:
    directory = make_tree(tmp_path / "c", {"data/x.tar": 10})
    torrent = tmp_path / "c.torrent"
    torrent.write_bytes(_torrent(_info(files=[{"length": 10, "path": ["..", "x.tar"]}])))
    problems = check_torrent(directory, torrent)
    assert len(problems) == 1 and "unsafe file path" in problems[0].message


def test_no_other_bencode_decoder_in_the_package() -> None:
    """Mirror, server and check read torrents through torrents/layout.py, and the only
    decoder is torrents/bencode.py (libtorrent's bdecode included: never called)."""
    root = Path(phonotheca.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.relative_to(root).as_posix() == "torrents/bencode.py":
            continue
        if re.search(r"\bbdecode\b|def _?decode\w*\(\s*data: bytes, pos", text):
            offenders.append(path.relative_to(root).as_posix())
    assert offenders == []
