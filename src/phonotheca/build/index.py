"""``data/index.jsonl``: one line per track, saying where its bytes are and what it is.

The index makes a collection usable without the catalog: a reader finds a track's
``length`` bytes at ``offset`` in ``data/<volume>`` and checks them against ``sha256``.
Keys come in the fixed order of :class:`IndexEntry` (docs/FORMAT.md, "Collections").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import msgspec

from phonotheca.build.tarvolume import PackedMember, PackError

INDEX_FILE = "index.jsonl"

METADATA_FIELDS = (
    "codec",
    "bitrate",
    "duration_ms",
    "tier",
    "title",
    "artists",
    "album",
    "isrc",
    "popularity",
    "loudness_lufs",
    "true_peak_dbtp",
    "loudness_range_lu",
)
"""The keys a caller may give per track; each one missing is written as null."""


class IndexEntry(msgspec.Struct):
    """One line of ``index.jsonl``; the field order is the key order on disk.

    Reading ignores keys it does not know, so a later minor version can add some.
    """

    id: str
    volume: str
    offset: int
    length: int
    sha256: str
    codec: str | None = None
    bitrate: int | None = None
    duration_ms: int | None = None
    tier: str | None = None
    title: str | None = None
    artists: list[str] | None = None
    album: str | None = None
    isrc: str | None = None
    popularity: int | None = None
    loudness_lufs: float | None = None
    """EBU R128 integrated loudness of the audio (the source's, for Opus)."""
    true_peak_dbtp: float | None = None
    loudness_range_lu: float | None = None


class CoverEntry(msgspec.Struct):
    """One line of a covers collection's index: an image, keyed by its sha256.

    ``id`` is the image's sha256 too, so that every index has the same first five keys
    and one validator reads both kinds; ``albums`` are the public ids of the albums that
    show the image.
    """

    id: str
    volume: str
    offset: int
    length: int
    sha256: str
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    albums: list[str] | None = None


COVER_FIELDS = ("mime", "width", "height", "albums")

_FIELDS: dict[type[msgspec.Struct], tuple[str, ...]] = {
    IndexEntry: METADATA_FIELDS,
    CoverEntry: COVER_FIELDS,
}
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(IndexEntry)


def index_entry(
    public_id: str,
    member: PackedMember,
    metadata: Mapping[str, object],
    entry_type: type[msgspec.Struct] = IndexEntry,
) -> IndexEntry:
    """The index line of a packed track (or, with ``CoverEntry``, image), checked."""
    unknown = sorted(set(metadata) - set(_FIELDS[entry_type]))
    if unknown:
        raise PackError(f"track {public_id}: unknown index field(s) {', '.join(unknown)}")
    fields: dict[str, object] = {
        "id": public_id,
        "volume": member.volume,
        "offset": member.offset,
        "length": member.length,
        "sha256": member.sha256,
    }
    fields.update(metadata)
    try:
        return msgspec.convert(fields, entry_type)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        raise PackError(f"track {public_id}: {exc}") from exc


def encode_entry(entry: IndexEntry) -> bytes:
    """One line: compact JSON, UTF-8 (no ``\\u`` escapes beyond JSON's), ending in LF."""
    return _encoder.encode(entry) + b"\n"


def encode_index(entries: Iterable[IndexEntry]) -> bytes:
    return b"".join(encode_entry(e) for e in entries)


@dataclass(frozen=True, slots=True)
class IndexLine:
    """A line of an index as read: its number (from 1), the entry, or why it is invalid."""

    number: int
    entry: IndexEntry | None
    error: str | None = None


def read_index(data: bytes) -> Iterator[IndexLine]:
    """Decode ``index.jsonl`` line by line; a bad line is reported, not raised."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        yield IndexLine(len(lines), None, "the last line does not end with a line feed")
    for number, raw in enumerate(lines, start=1):
        try:
            yield IndexLine(number, _decoder.decode(raw))
        except msgspec.DecodeError as exc:
            yield IndexLine(number, None, str(exc))
