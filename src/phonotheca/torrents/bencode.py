"""Bencoding (BEP 3): a canonical encoder and a strict decoder.

The encoder writes the one canonical form (dictionary keys sorted by their raw bytes, integers
without leading zeros), so the same value always gives the same bytes, and the infohash of a
torrent depends only on its content. The decoder accepts only that canonical form: a torrent
that decodes here re-encodes to the identical bytes, so its infohash is unambiguous.
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


def decode(data: bytes) -> Bvalue:
    """Decode canonical bencoding; raise :class:`BencodeError` on anything else."""
    try:
        value, end = _decode(data, 0)
    except RecursionError:
        raise BencodeError("lists or dictionaries nested too deeply") from None
    if end != len(data):
        raise BencodeError(f"trailing bytes at offset {end}")
    return value


def _decode(data: bytes, pos: int) -> tuple[Bvalue, int]:
    if pos >= len(data):
        raise BencodeError(f"unexpected end of data at offset {pos}")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError(f"unterminated integer at offset {pos}")
        return _parse_int(data[pos + 1 : end], pos + 1), end + 1
    if lead.isdigit():
        return _decode_string(data, pos)
    if lead == b"l":
        items: list[Bvalue] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        result: dict[bytes, Bvalue] = {}
        previous: bytes | None = None
        pos += 1
        while data[pos : pos + 1] != b"e":
            if not data[pos : pos + 1].isdigit():
                raise BencodeError(f"dictionary key is not a string at offset {pos}")
            key_pos = pos
            key, pos = _decode_string(data, pos)
            if previous is not None and key <= previous:
                raise BencodeError(f"dictionary keys not sorted or repeated at offset {key_pos}")
            result[key], pos = _decode(data, pos)
            previous = key
        return result, pos + 1
    raise BencodeError(f"unexpected byte {lead!r} at offset {pos}")


def _parse_int(digits: bytes, pos: int) -> int:
    body = digits[1:] if digits.startswith(b"-") else digits
    if not body.isdigit() or (body.startswith(b"0") and digits != b"0"):
        raise BencodeError(f"non-canonical integer {digits!r} at offset {pos}")
    return int(digits)


def _decode_string(data: bytes, pos: int) -> tuple[bytes, int]:
    colon = data.find(b":", pos)
    if colon < 0:
        raise BencodeError(f"unterminated string length at offset {pos}")
    digits = data[pos:colon]
    if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
        raise BencodeError(f"non-canonical string length {digits!r} at offset {pos}")
    start = colon + 1
    end = start + int(digits)
    if end > len(data):
        raise BencodeError(f"string at offset {pos} runs past the end of the data")
    return data[start:end], end
