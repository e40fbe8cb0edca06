"""HTTP Range requests (RFC 9110 §14): which bytes of a representation to send.

Shared by every server that hands out archive bytes: the track streams of the web
server and the Subsonic API, and the web seed (BEP 19) for the torrents directory.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MAX_RANGES = 16
"""More ranges than this in one request are refused (``416``): no player or download
tool asks for so many, and it bounds the work a request can cause."""
MAX_DIGITS = 18
"""A position longer than this (10^18 bytes and up) lies past any file: it is read as
"beyond the end" without converting it, so a header of thousands of digits costs nothing."""
MAX_HEADER = 4096
"""A longer ``Range`` header is refused (``416``) before it is parsed."""

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")
_BEYOND = 1 << 62
"""Stands for any position of more than :data:`MAX_DIGITS` digits."""


class RangeNotSatisfiable(Exception):
    """No range of the request overlaps the representation, or the request is refused
    (too many ranges, overlapping ranges): answer ``416``."""

    def __init__(self, size: int, reason: str | None = None) -> None:
        super().__init__(reason or f"no requested range is within the {size} bytes")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``first`` to ``last`` inclusive, as HTTP counts them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def parse_ranges(header: str | None, size: int) -> list[ByteRange] | None:
    """The ranges to send for a ``Range`` header, or ``None`` for the whole body.

    ``None`` also when the header is absent, not in bytes or malformed: RFC 9110 lets a
    server ignore such a header and send ``200``. Satisfiable ranges are clamped to the
    representation and returned in request order, with adjacent ones merged.

    Raises :class:`RangeNotSatisfiable` when none is satisfiable, and when the request
    asks for more than :data:`MAX_RANGES` ranges, for overlapping ranges or with a
    header longer than :data:`MAX_HEADER`: RFC 9110 §14.2 lets a server reject those,
    the signs of a broken client or of an attempt to make it send the same bytes many
    times. Positions of any length are accepted (:data:`MAX_DIGITS`).
    """
    if header is None:
        return None
    if len(header) > MAX_HEADER:
        raise RangeNotSatisfiable(size, f"a Range header of more than {MAX_HEADER} characters")
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        raise RangeNotSatisfiable(size, f"more than {MAX_RANGES} ranges in one request")
    ranges: list[ByteRange] = []
    for part in parts:
        match = _SPEC.fullmatch(part)
        if match is None:
            return None
        first_text, last_text = match.groups()
        if not first_text:
            if not last_text:
                return None
            suffix = _position(last_text)  # "-N": the last N bytes
            if suffix == 0 or size == 0:
                continue
            ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        first = _position(first_text)
        last = _position(last_text) if last_text else size - 1
        if last_text and last < first:
            return None  # invalid spec: the whole header is ignored
        if first >= size:
            continue
        ranges.append(ByteRange(first, min(last, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable(size)
    ordered = sorted(ranges, key=lambda r: r.first)
    if any(b.first <= a.last for a, b in itertools.pairwise(ordered)):
        raise RangeNotSatisfiable(size, "overlapping ranges in one request")
    return _merge(ranges)


def _position(digits: str) -> int:
    """A byte position; :data:`_BEYOND` for one too long to be in any file."""
    return int(digits) if len(digits.lstrip("0")) <= MAX_DIGITS else _BEYOND


def _merge(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge adjacent ranges (none overlap), keeping the order of first appearance."""
    merged: list[ByteRange] = []
    for r in ranges:
        for i, m in enumerate(merged):
            if r.first <= m.last + 1 and m.first <= r.last + 1:
                merged[i] = ByteRange(min(m.first, r.first), max(m.last, r.last))
                break
        else:
            merged.append(r)
    # A merge may have made two earlier ranges touch; repeat until stable.
    return merged if len(merged) == len(ranges) else _merge(merged)


def if_range_matches(if_range: str | None, etag: str, last_modified: str | None = None) -> bool:
    """Whether a ``Range`` header applies given ``If-Range`` (RFC 9110 §13.1.5).

    A strong ETag comparison, or an exact match of an HTTP date; with no ``If-Range``
    the range applies.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return not value.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified
