"""Parse playlists: a JSPF document or a playlist record (a line of JSONL) into a
:class:`PlaylistRow`.

A bad playlist becomes a reject with its reason, never an exception. Entries are kept
whatever they hold (an entry with nothing to match it by is an unmatched entry), but an
entry whose fields have the wrong type rejects its playlist: a playlist is loaded whole
or not at all, never shortened.
"""

from __future__ import annotations

from typing import Any

import msgspec

from phonotheca.catalog.batch import Batch, Reject, fingerprint_bytes
from phonotheca.catalog.playlist_record import (
    MAX_DOCUMENT_BYTES,
    JspfPlaylist,
    PlaylistError,
    PlaylistRow,
    canonical_playlist,
    decode_jspf,
    decode_record,
    entry_tuple,
    extension_text,
    is_private,
    playlist_id,
)


class _Peek(msgspec.Struct):
    """What a line is: a record says its ``type``; a JSPF document has a ``playlist``."""

    type: Any = None
    playlist: msgspec.Raw = msgspec.Raw(b"")


_peek = msgspec.json.Decoder(_Peek)


def prepare_playlist_lines(first_line: int, lines: list[bytes]) -> Batch:
    """Parse a block of playlist lines (``import playlists``): a track record is a reject."""
    batch = Batch(first_line=first_line, last_line=first_line + len(lines) - 1, read=len(lines))
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            batch.read -= 1
            continue
        add_playlist_line(batch, n, line, tracks_elsewhere=True)
    return batch


def add_playlist_line(batch: Batch, n: int, line: bytes, *, tracks_elsewhere: bool) -> bool:
    """Add line ``n`` to ``batch`` as a playlist or a reject when it is one, or (with
    ``tracks_elsewhere`` False) return False for a track record, which the caller parses."""
    if len(line) > MAX_DOCUMENT_BYTES:
        batch.rejects.append(
            Reject(n, f"playlist longer than {MAX_DOCUMENT_BYTES} bytes", line[:4096])
        )
        return True
    try:
        peek = _peek.decode(line)
    except msgspec.ValidationError as exc:
        batch.rejects.append(Reject(n, f"invalid record: {exc}", line))
        return True
    except msgspec.DecodeError as exc:
        if tracks_elsewhere:
            batch.rejects.append(Reject(n, _json_reason(line, exc), line))
            return True
        return False
    if peek.type == "playlist":
        kind = "jsonl"
    elif peek.type is None and bytes(peek.playlist):
        kind = "jspf"
    elif peek.type is None or peek.type == "track":
        if not tracks_elsewhere:
            return False
        batch.rejects.append(
            Reject(
                n,
                'not a playlist: a JSPF document holds a "playlist" object, a playlist'
                ' record has "type": "playlist" (import jsonl loads tracks)',
                line,
            )
        )
        return True
    else:
        batch.rejects.append(Reject(n, f"unknown record type {peek.type!r}", line))
        return True
    row = parse_playlist(n, line, kind)
    if isinstance(row, Reject):
        batch.rejects.append(row)
    else:
        batch.playlists.append(row)
    return True


def parse_playlist(n: int, data: bytes, kind: str) -> PlaylistRow | Reject:
    """A JSPF document (``kind`` ``jspf``) or a playlist record (``jsonl``) as a row."""
    try:
        given: str | None = None
        playlist: JspfPlaylist
        if kind == "jspf":
            playlist = decode_jspf(data)
        else:
            playlist, given = decode_record(data)
        if is_private(playlist):
            return Reject(
                n,
                'a private playlist (its ListenBrainz extension says "public": false):'
                " the catalog is published, so it is not imported",
                data,
            )
        canonical = None
        if not given and not playlist.identifier:
            canonical = canonical_playlist(data, kind)
        public_id = playlist_id(given, playlist.identifier, canonical)
    except msgspec.ValidationError as exc:
        return Reject(n, f"invalid playlist: {exc}", data)
    except PlaylistError as exc:
        return Reject(n, f"invalid playlist: {exc}", data)
    except msgspec.DecodeError as exc:
        return Reject(n, _json_reason(data, exc), data)
    return PlaylistRow(
        line=n,
        public_id=public_id,
        title=playlist.title,
        creator=playlist.creator,
        annotation=playlist.annotation,
        created=playlist.date,
        identifier=playlist.identifier,
        extension=extension_text(playlist),
        kind=kind,
        record=data,
        fingerprint=fingerprint_bytes(data),
        entries=[entry_tuple(t) for t in playlist.track],
    )


def _json_reason(line: bytes, exc: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    return f"invalid JSON: {exc}"
