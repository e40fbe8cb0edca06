"""Bencoding (BEP 3): a canonical encoder and a strict decoder.

The encoder writes the one canonical form (dictionary keys sorted by their raw bytes, integers
without leading zeros), so the same value always gives the same bytes, and the infohash of a
torrent depends only on its content. The decoder accepts only that canonical form: a torrent
that decodes here re-encodes to the identical bytes, so its infohash is unambiguous.
Tracker replies, which need not be canonical, go through the same decoder with
``canonical=False``; every error is a :class:`BencodeError`, however deep or long the input.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TypeAlias

Bencodable: TypeAlias = (
    "int | bytes | bytearray | str | Sequence[Bencodable]"
    " | Mapping[str, Bencodable] | Mapping[bytes, Bencodable]"
)
"""What :func:`encode` accepts: ``str`` is encoded as UTF-8, tuples and lists as lists."""

Bvalue: TypeAlias = "int | bytes | list[Bvalue] | dict[bytes, Bvalue]"
"""What :func:`decode` returns: every string as ``bytes``."""


class BencodeError(ValueError):
    """The bytes are not canonical bencoding; the message names the offset."""


def encode(value: Bencodable) -> bytes:
    """The canonical bencoding of ``value``."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    raise TypeError(f"bencode: dictionary key {key!r} is not bytes or str")


def _encode(value: Bencodable, out: list[bytes]) -> None:
    # bool is an int subclass; True would silently become i1e, which is never what we mean.
    if isinstance(value, bool):
        raise TypeError("bencode: bool has no bencoding")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, Mapping):
        items = sorted(((_key_bytes(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        for (a, _), (b, _) in itertools.pairwise(items):
            if a == b:
                raise ValueError(f"bencode: duplicate dictionary key {a!r}")
        out.append(b"d")
        for key, item in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"bencode: cannot encode {type(value).__name__}")


def decode(data: bytes, *, canonical: bool = True) -> Bvalue:
    """Decode bencoding; raise :class:`BencodeError` (and nothing else) on bad input.

    ``canonical=True`` (torrents) accepts only the canonical form. ``canonical=False``
    (tracker replies, which need not be canonical) also accepts dictionary keys in any
    order and integers with leading zeros; a repeated key is refused either way.
    Lists and dictionaries nest at most :data:`MAX_DEPTH` deep, so that a hostile
    reply costs a clear error rather than the stack.
    """
    value, end = _Decoder(bytes(data), canonical).value(0, 0)
    if end != len(data):
        raise BencodeError(f"trailing bytes at offset {end}")
    return value


MAX_DEPTH = 64
"""Deepest nesting of lists and dictionaries :func:`decode` accepts. A torrent needs
about 5 levels (a v2 ``file tree`` one more per directory level of its paths)."""
_MAX_DIGITS = 64
"""Longest integer or string length accepted: more digits than any real value has, far
fewer than Python's limit on converting digits to an int."""


class _Decoder:
    def __init__(self, data: bytes, canonical: bool) -> None:
        self.data = data
        self.canonical = canonical

    def value(self, pos: int, depth: int) -> tuple[Bvalue, int]:
        data = self.data
        if pos >= len(data):
            raise BencodeError(f"unexpected end of data at offset {pos}")
        lead = data[pos : pos + 1]
        if lead == b"i":
            end = data.find(b"e", pos + 1, pos + 2 + _MAX_DIGITS)
            if end < 0:
                raise BencodeError(f"unterminated or too long integer at offset {pos}")
            return self.integer(data[pos + 1 : end], pos + 1), end + 1
        if lead.isdigit():
            return self.string(pos)
        if lead in (b"l", b"d"):
            if depth >= MAX_DEPTH:
                raise BencodeError(
                    f"lists or dictionaries nested more than {MAX_DEPTH} deep at offset {pos}"
                )
            if lead == b"l":
                return self.list_at(pos + 1, depth + 1)
            return self.dict_at(pos + 1, depth + 1)
        raise BencodeError(f"unexpected byte {lead!r} at offset {pos}")

    def list_at(self, pos: int, depth: int) -> tuple[Bvalue, int]:
        items: list[Bvalue] = []
        while self.data[pos : pos + 1] != b"e":
            item, pos = self.value(pos, depth)
            items.append(item)
        return items, pos + 1

    def dict_at(self, pos: int, depth: int) -> tuple[Bvalue, int]:
        data = self.data
        result: dict[bytes, Bvalue] = {}
        previous: bytes | None = None
        while data[pos : pos + 1] != b"e":
            if not data[pos : pos + 1].isdigit():
                raise BencodeError(f"dictionary key is not a string at offset {pos}")
            key_pos = pos
            key, pos = self.string(pos)
            if key in result:
                raise BencodeError(f"repeated dictionary key at offset {key_pos}")
            if self.canonical and previous is not None and key < previous:
                raise BencodeError(f"dictionary keys not sorted at offset {key_pos}")
            result[key], pos = self.value(pos, depth)
            previous = key
        return result, pos + 1

    def integer(self, digits: bytes, pos: int) -> int:
        body = digits[1:] if digits.startswith(b"-") else digits
        if not body.isdigit() or digits == b"-0" or (body != digits and body.strip(b"0") == b""):
            raise BencodeError(f"malformed integer {digits[:_MAX_DIGITS]!r} at offset {pos}")
        if self.canonical and body.startswith(b"0") and body != b"0":
            raise BencodeError(f"non-canonical integer {digits!r} at offset {pos}")
        return int(digits)

    def string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos, pos + 1 + _MAX_DIGITS)
        if colon < 0:
            raise BencodeError(f"unterminated or too long string length at offset {pos}")
        digits = data[pos:colon]
        if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
            raise BencodeError(f"non-canonical string length {digits!r} at offset {pos}")
        start = colon + 1
        end = start + int(digits)
        if end > len(data):
            raise BencodeError(f"string at offset {pos} runs past the end of the data")
        return data[start:end], end
