"""PieceHasher against straightforward reference hashing, the piece length table, misuse."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca.torrents.pieces import (
    BLOCK_SIZE,
    PieceHasher,
    PieceHashes,
    merkle_root,
    piece_length_for,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0, 32 * KiB),
        (1, 32 * KiB),
        (32 * MiB, 32 * KiB),
        (64 * MiB, 32 * KiB),
        (64 * MiB + 1, 64 * KiB),
        (512 * MiB, 256 * KiB),
        (1 * GiB, 512 * KiB),
        (2 * GiB, 1 * MiB),
        (2 * GiB + 1, 2 * MiB),
        (16 * GiB, 8 * MiB),
        (32 * GiB, 16 * MiB),
        (300 * GiB, 16 * MiB),
    ],
)
def test_piece_length_table(total: int, expected: int) -> None:
    assert piece_length_for(total) == expected


@given(st.integers(min_value=0, max_value=1 << 50))
def test_piece_length_gives_at_most_2048_pieces_unless_capped(total: int) -> None:
    length = piece_length_for(total)
    assert length & (length - 1) == 0 and 32 * KiB <= length <= 16 * MiB
    pieces = -(-total // length)
    assert pieces <= 2048 or length == 16 * MiB
    assert length == 32 * KiB or pieces > 1024


def _reference_root(data: bytes) -> bytes:
    """The BEP 52 root built the plain way: the whole tree over a power of two of leaves."""
    leaves = [
        hashlib.sha256(data[i : i + BLOCK_SIZE]).digest() for i in range(0, len(data), BLOCK_SIZE)
    ]
    width = 1
    while width < len(leaves):
        width *= 2
    layer = leaves + [bytes(32)] * (width - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def _reference_layer(data: bytes, piece_length: int) -> bytes:
    if len(data) <= piece_length:
        return b""
    per_piece = piece_length // BLOCK_SIZE
    nodes = []
    for start in range(0, len(data), piece_length):
        piece = data[start : start + piece_length]
        leaves = [
            hashlib.sha256(piece[i : i + BLOCK_SIZE]).digest()
            for i in range(0, len(piece), BLOCK_SIZE)
        ]
        leaves += [bytes(32)] * (per_piece - len(leaves))
        while len(leaves) > 1:
            leaves = [
                hashlib.sha256(leaves[i] + leaves[i + 1]).digest() for i in range(0, len(leaves), 2)
            ]
        nodes.append(leaves[0])
    return b"".join(nodes)


def _reference_pieces(contents: list[bytes], piece_length: int, hybrid: bool) -> bytes:
    if hybrid:
        stream = b"".join(c + bytes(-len(c) % piece_length) for c in contents)
    else:
        stream = b"".join(contents)
    return b"".join(
        hashlib.sha1(stream[i : i + piece_length]).digest()
        for i in range(0, len(stream), piece_length)
    )


def _feed(
    contents: list[bytes], piece_length: int, hybrid: bool, workers: int, rng: random.Random
) -> PieceHashes:
    with PieceHasher(piece_length, hybrid=hybrid, workers=workers) as hasher:
        for i, content in enumerate(contents):
            hasher.start_file(f"f{i:03d}")
            pos = 0
            while pos < len(content):  # chunks of random sizes, across piece boundaries
                n = rng.randint(1, 3 * piece_length)
                hasher.update(content[pos : pos + n])
                pos += n
            hasher.end_file()
        return hasher.finish()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(
        st.sampled_from([0, 1, 100, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 65_536, 70_000])
        | st.integers(0, 300_000),
        min_size=1,
        max_size=5,
    ),
    piece_length=st.sampled_from([16 * KiB, 32 * KiB, 64 * KiB]),
    hybrid=st.booleans(),
    workers=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 1000),
)
def test_hashes_equal_the_reference(
    sizes: list[int], piece_length: int, hybrid: bool, workers: int, seed: int
) -> None:
    rng = random.Random(seed)
    contents = [rng.randbytes(size) for size in sizes]
    _check(_feed(contents, piece_length, hybrid, workers, rng), contents)


@pytest.mark.parametrize("piece_length", [16 * KiB, 256 * KiB, 2 * MiB])
@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("lead", [0, 8 * MiB])
def test_large_and_small_writes(piece_length: int, hybrid: bool, lead: int) -> None:
    # Writes of whole batches (hashed in place) among small ones and mutable buffers, with
    # enough data that batch buffers are reused; with a lead, many batches wait at once.
    rng = random.Random(piece_length)
    contents = [rng.randbytes(n) for n in (400, 3 * MiB + 5, 0, 2 * MiB, 5 * MiB + 16 * KiB + 3)]
    with PieceHasher(piece_length, hybrid=hybrid, workers=2, lead=lead) as hasher:
        for i, content in enumerate(contents):
            hasher.start_file(f"f{i:03d}")
            pos = 0
            while pos < len(content):
                n = rng.choice([512, 1000, 16 * KiB, MiB + 17, 2 * MiB, 5 * MiB])
                chunk = content[pos : pos + n]
                hasher.update(chunk if rng.random() < 0.7 else bytearray(chunk))
                pos += n
            hasher.end_file()
        _check(hasher.finish(), contents)


def _check(hashes: PieceHashes, contents: list[bytes]) -> None:
    piece_length, hybrid = hashes.piece_length, hashes.hybrid
    assert hashes.pieces == _reference_pieces(contents, piece_length, hybrid)
    assert [f.length for f in hashes.files] == [len(c) for c in contents]
    assert hashes.total_size == sum(len(c) for c in contents)
    for f, content in zip(hashes.files, contents, strict=True):
        if not hybrid:
            assert f.pieces_root is None and f.padding == 0
        elif not content:
            assert f.pieces_root is None and f.padding == 0 and f.piece_layer == b""
        else:
            assert f.padding == -len(content) % piece_length
            assert f.pieces_root == _reference_root(content)
            assert f.piece_layer == _reference_layer(content, piece_length)


def test_stream_and_update_agree() -> None:
    rng = random.Random(7)
    contents = [rng.randbytes(n) for n in (50_000, 0, 123_457)]
    with PieceHasher(32 * KiB, hybrid=True) as a:
        for i, content in enumerate(contents):
            a.hash_stream(f"f{i:03d}", io.BytesIO(content))
        streamed = a.finish()
    assert streamed == _feed(contents, 32 * KiB, True, 2, rng)


def test_write_makes_the_hasher_a_file_sink() -> None:
    with PieceHasher(16 * KiB, workers=0) as hasher:
        hasher.start_file("x")
        assert hasher.write(b"abc") == 3
        hasher.end_file()
        assert hasher.finish().pieces == hashlib.sha1(b"abc").digest()


def test_small_roots() -> None:
    block = b"\x01" * BLOCK_SIZE
    assert merkle_root([hashlib.sha256(block).digest()], 0) == hashlib.sha256(block).digest()
    with PieceHasher(64 * KiB, hybrid=True, workers=0) as hasher:
        hasher.start_file("one-block")
        hasher.update(block)
        hasher.end_file()
        (f,) = hasher.finish().files
    # One block, one leaf: the root is that block's hash, not a tree padded to the piece.
    assert f.pieces_root == hashlib.sha256(block).digest()


def test_refuses_files_out_of_torrent_order() -> None:
    with PieceHasher(16 * KiB) as hasher:
        hasher.start_file("b")
        hasher.end_file()
        with pytest.raises(ValueError, match="torrent order"):
            hasher.start_file("a")
        with pytest.raises(ValueError, match="already"):
            hasher.start_file("b")
    # v1 sorts whole paths (mktorrent): "a-c" before "a/b"; hybrid sorts components.
    with PieceHasher(16 * KiB) as v1:
        v1.start_file("a-c")
        v1.end_file()
        v1.start_file("a/b")
        v1.end_file()
    with PieceHasher(16 * KiB, hybrid=True) as hybrid:
        hybrid.start_file("a/b")
        hybrid.end_file()
        hybrid.start_file("a-c")
        hybrid.end_file()
        with pytest.raises(ValueError, match="both a file and a directory"):
            hybrid.start_file("a-c/d")


@pytest.mark.parametrize("path", ["", "a//b", "../x", "./x", ".pad/3", "bad\udcff"])
def test_refuses_bad_paths(path: str) -> None:
    with PieceHasher(16 * KiB, hybrid=True, workers=0) as hasher, pytest.raises(ValueError):
        hasher.start_file(path)


def test_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="power of two"):
        PieceHasher(3 * 16 * KiB)
    with pytest.raises(ValueError, match="power of two"):
        PieceHasher(8 * KiB)
    with PieceHasher(16 * KiB) as hasher:
        with pytest.raises(RuntimeError, match="start_file"):
            hasher.update(b"x")
        hasher.start_file("a")
        with pytest.raises(RuntimeError, match="not ended"):
            hasher.start_file("b")
        with pytest.raises(RuntimeError, match="not ended"):
            hasher.finish()
        hasher.end_file()
        hasher.finish()
        with pytest.raises(RuntimeError, match="finished"):
            hasher.start_file("c")
