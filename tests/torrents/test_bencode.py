"""Bencoding: round trips, the canonical form, and refusal of anything else."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonotheca.torrents.bencode import BencodeError, Bvalue, decode, encode

values: st.SearchStrategy[Bvalue] = st.recursive(
    st.integers() | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Bvalue) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.binary(max_size=8), st.integers(), max_size=10), st.randoms())
def test_key_order_does_not_change_the_bytes(d: dict[bytes, int], rnd: random.Random) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    data = encode(dict(items))
    assert data == encode(dict(sorted(items)))
    # Keys come out sorted by their raw bytes.
    assert list(decode(data)) == sorted(d)  # type: ignore[arg-type]


@given(st.dictionaries(st.text(max_size=6), st.integers(), max_size=8))
def test_str_keys_sort_by_utf8_bytes(d: dict[str, int]) -> None:
    decoded = decode(encode(d))
    assert isinstance(decoded, dict)
    assert list(decoded) == sorted(k.encode() for k in d)


def test_known_encodings() -> None:
    assert (
        encode({"b": [1, -2, "é"], "a": b"\x00", "": 0})
        == b"d0:i0e1:a1:\x001:bli1ei-2e2:\xc3\xa9ee"
    )
    assert encode(("x", [])) == b"l1:xlee"


@pytest.mark.parametrize(
    "data",
    [
        b"i03e",  # leading zero
        b"i-0e",  # negative zero
        b"ie",
        b"i1",  # unterminated
        b"03:abc",  # length with a leading zero
        b"4:abc",  # runs past the end
        b"d1:bi1e1:ai2ee",  # keys out of order
        b"d1:ai1e1:ai2ee",  # repeated key
        b"di1ei2ee",  # integer key
        b"l",
        b"i1ei2e",  # trailing data
        b"x",
        b"",
    ],
)
def test_rejects_non_canonical(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_rejects_deep_nesting() -> None:
    with pytest.raises(BencodeError, match="nested"):
        decode(b"l" * 100_000 + b"e" * 100_000)


def test_refuses_what_has_no_encoding() -> None:
    with pytest.raises(TypeError):
        encode(True)
    with pytest.raises(TypeError):
        encode(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate"):
        encode({"a": 1, b"a": 2})  # type: ignore[arg-type]
