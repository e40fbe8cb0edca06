"""HTTP Range requests (RFC 9110 §14): which bytes of a representation to send.

Shared by every server that hands out archive bytes: the track streams of the web
server and the Subsonic API, and the web seed (BEP 19) for the torrents directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RANGES = 16
"""More ranges than this in one request are answered with the whole body: a client
that needs them all is better served so, and it bounds the work a request can cause."""

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


class RangeNotSatisfiable(Exception):
    """No range of the request overlaps the representation: answer ``416``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range is within the {size} bytes")
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

    ``None`` also when the header is absent, not in bytes, malformed, or asks for more
    than :data:`MAX_RANGES` ranges: RFC 9110 lets a server ignore such a header and send
    ``200``. Satisfiable ranges are clamped to the representation and returned in
    request order, with overlapping or adjacent ones merged (RFC 9110 §14.2 allows it;
    it stops a request from asking for the same bytes many times). Raises
    :class:`RangeNotSatisfiable` when none is satisfiable.
    """
    if header is None:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[ByteRange] = []
    for part in parts:
        match = _SPEC.fullmatch(part)
        if match is None:
            return None
        first_text, last_text = match.groups()
        if not first_text:
            if not last_text:
                return None
            suffix = int(last_text)  # "-N": the last N bytes
            if suffix == 0 or size == 0:
                continue
            ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
        if last_text and last < first:
            return None  # invalid spec: the whole header is ignored
        if first >= size:
            continue
        ranges.append(ByteRange(first, min(last, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable(size)
    return _merge(ranges)


def _merge(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping or adjacent ranges, keeping the order of first appearance."""
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
