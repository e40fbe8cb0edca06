"""The files ``import playlists`` reads: JSPF documents (``.json``, ``.jspf``) and JSONL of
JSPF documents or playlist records (``.jsonl``), plain or compressed (§1.8)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from phonotheca.catalog.playlist_record import MAX_DOCUMENT_BYTES
from phonotheca.sources.compressed import CODECS, SourceError, open_input
from phonotheca.sources.jsonl import line_blocks

DOCUMENT_NAMES = tuple(f"{base}{codec}" for base in (".json", ".jspf") for codec in ("", *CODECS))
LINES_NAMES = tuple(f".jsonl{codec}" for codec in ("", *CODECS))
BLOCK_BYTES = 64 << 20
"""A block of lines closes at this many bytes, whatever its number of lines."""


def check_playlist_name(path: Path) -> None:
    """Refuse a file ``import playlists`` does not read (before anything is imported)."""
    if not path.name.lower().endswith(DOCUMENT_NAMES + LINES_NAMES):
        raise SourceError(
            f"{path}: not a file import playlists reads: one JSPF document is named .json"
            " or .jspf, JSONL (one playlist a line) .jsonl; plain or compressed"
            f" ({', '.join(CODECS)})"
        )


def read_playlist_blocks(
    path: Path, lines_per_block: int, skip_lines: int = 0
) -> Iterator[tuple[int, list[bytes], int]]:
    """(first line number, lines, input bytes read): a JSPF document is one "line",
    compacted (a pretty-printed document is kept on one line); JSONL is read by lines."""
    check_playlist_name(path)
    stream = open_input(path)
    with stream:
        if path.name.lower().endswith(LINES_NAMES):
            yield from line_blocks(
                stream, stream, lines_per_block, skip_lines, MAX_DOCUMENT_BYTES, BLOCK_BYTES
            )
            return
        data = stream.read(MAX_DOCUMENT_BYTES + 1)
        if skip_lines >= 1:
            return
        if len(data) <= MAX_DOCUMENT_BYTES:
            # Invalid JSON is left as it is: the parser rejects it with its reason.
            with contextlib.suppress(msgspec.DecodeError):
                data = msgspec.json.format(data, indent=0)
        yield 1, [data], stream.position
