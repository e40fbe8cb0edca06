"""Source records as columns: the lossless form the metadata release ships them in.

A block of JSON-object lines is split into one stream per top-level key (the values of
that key, in record order), so that one compression sees all the titles together, all
the albums together, and so on; a value equal to the previous one of its column (the
album of the next track of an album) is an empty entry. A line is stored this way only
when joining its keys and values back in its own style (compact or spaced separators,
non-ASCII escaped or not) gives exactly its bytes; any other line is kept whole in the
``raw`` stream. Decoding therefore reproduces every line byte for byte
(docs/FORMAT.md §12).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

LAYOUT = "layout"
"""Stream of one entry per line: ``-`` (the next ``raw`` line), empty (an object with
the keys and style of the previous object line), ``=n`` (those of the block's n-th
layout, from 0), or a style digit and the keys as a JSON array (the next layout)."""
RAW = "raw"
"""Stream of the lines that are not stored as columns, whole."""
STYLES = ((",", ":"), (", ", ": "))
"""Separators of the objects stored as columns: the style digit is the index here, plus
2 when non-ASCII characters are escaped (``\\uXXXX``, so the line is ASCII)."""


class ColumnsError(Exception):
    """Streams that do not decode (damaged or not from :func:`encode_block`)."""


_ENCODERS = [
    json.JSONEncoder(ensure_ascii=ascii_only, separators=separators).encode
    for ascii_only in (False, True)
    for separators in STYLES
]
"""By style digit: the encoder of the values of an object line in that style."""
_KEY = (json.encoder.encode_basestring, json.encoder.encode_basestring_ascii)
"""A key as a JSON string, non-ASCII as it is or escaped."""


def _dumps(value: object, ascii_only: bool) -> str:
    return _ENCODERS[2 * ascii_only](value)


def _split(line: bytes) -> tuple[int, list[str], list[bytes]] | None:
    """(style, keys, values as in the line) of an object line that joins back exactly."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8
        return None
    if not isinstance(obj, dict):
        return None
    ascii_only = line.isascii()
    keys = list(obj)
    quoted = [_KEY[ascii_only](k) for k in keys]
    for style, (item_sep, key_sep) in enumerate(STYLES, 2 * ascii_only):
        encode = _ENCODERS[style]
        values = [encode(v) for v in obj.values()]
        joined = item_sep.join(k + key_sep + v for k, v in zip(quoted, values, strict=True))
        if ("{" + joined + "}").encode() == line:
            return style, keys, [v.encode() for v in values]
    return None


def encode_block(lines: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """The streams of ``lines`` (none holds a newline) as (field, data): ``layout``,
    ``raw``, then one per key, named by the key as JSON, in order of first use. Each
    entry of a stream ends with a newline."""
    layout: list[bytes] = []
    raw: list[bytes] = []
    columns: dict[str, list[bytes]] = {}
    last: dict[str, bytes] = {}
    shapes: dict[tuple[int, tuple[str, ...]], int] = {}
    shape: tuple[int, tuple[str, ...]] | None = None
    for line in lines:
        split = _split(line)
        if split is None:
            layout.append(b"-")
            raw.append(line)
            continue
        style, keys, values = split
        if shape == (style, tuple(keys)):
            layout.append(b"")
        else:
            shape = (style, tuple(keys))
            if shape in shapes:
                layout.append(b"=%d" % shapes[shape])
            else:
                layout.append(f"{style}{_dumps(keys, False)}".encode())
                shapes[shape] = len(shapes)
        for key, value in zip(keys, values, strict=True):
            field = _dumps(key, False)
            columns.setdefault(field, []).append(b"" if last.get(field) == value else value)
            last[field] = value
    streams = [(LAYOUT, layout), (RAW, raw), *columns.items()]
    return [(field, b"".join(e + b"\n" for e in entries)) for field, entries in streams if entries]


def decode_block(streams: Sequence[tuple[str, bytes]]) -> Iterator[bytes]:
    """The lines of a block from its streams (:func:`encode_block`), in order; every
    entry of every stream used exactly once, or :class:`ColumnsError`."""
    found = {field: iter(_entries(data)) for field, data in streams}
    layout = found.pop(LAYOUT, iter(()))
    raw = found.pop(RAW, iter(()))
    last: dict[str, bytes] = {}
    shapes: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    shape: tuple[bytes, bytes, list[tuple[str, bytes]]] | None = None
    try:
        for entry in layout:
            if entry == b"-":
                yield next(raw)
                continue
            if entry.startswith(b"="):
                shape = shapes[int(entry[1:])]
            elif entry:
                style = int(entry[:1])
                if style >= 2 * len(STYLES):
                    raise ColumnsError(f"layout style {style} unknown")
                item_sep, key_sep = STYLES[style % 2]
                shape = (
                    item_sep.encode(),
                    key_sep.encode(),
                    [
                        (_dumps(k, False), _dumps(k, style >= 2).encode())
                        for k in json.loads(entry[1:])
                    ],
                )
                shapes.append(shape)
            elif shape is None:
                raise ColumnsError("an object line before any layout")
            items = []
            for field, key in shape[2]:
                value = next(found[field]) or last[field]
                last[field] = value
                items.append(key + shape[1] + value)
            yield b"{" + shape[0].join(items) + b"}"
    except (StopIteration, KeyError, ValueError, IndexError) as exc:
        raise ColumnsError(f"streams that do not decode ({type(exc).__name__})") from None
    if next(raw, None) is not None or any(next(s, None) is not None for s in found.values()):
        raise ColumnsError("streams longer than their layout")


def _entries(data: bytes) -> list[bytes]:
    if data and not data.endswith(b"\n"):
        raise ColumnsError("a stream that does not end with a newline")
    return data.split(b"\n")[:-1]
