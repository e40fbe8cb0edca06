"""Public playlists as records: JSPF documents and the interchange format's playlist record.

JSPF is the JSON form of XSPF that ListenBrainz and other services export:
``{"playlist": {"title", "creator", "annotation", "date", "identifier", "track": [...],
"extension": {...}}}``. The interchange format's playlist record (docs/FORMAT.md §1.9) is
that ``playlist`` object with ``"type": "playlist"`` (and optionally ``version`` and
``id``) beside its fields, so a JSPF document becomes a record without any field
renamed. The structs below are the format: msgspec validates while it decodes, so a
document either becomes a :class:`PlaylistRow` or fails with a message naming the field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import msgspec

from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.record import DurationMs, Id, Url

RECORD_VERSION = 1
"""Version of the playlist record (§1.9); a record of a newer version is rejected."""
MAX_DOCUMENT_BYTES = 16 << 20
"""A playlist's document or line may hold this many bytes (~50,000 entries)."""
MAX_ENTRIES = 100_000
LISTENBRAINZ_PLAYLIST = "https://musicbrainz.org/doc/jspf#playlist"
"""The key of ListenBrainz's extension data on a playlist (``public``, ``creator``, ...)."""

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Name = Annotated[str, msgspec.Meta(max_length=2000)]
Text = Annotated[str, msgspec.Meta(max_length=65536)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Identifiers = Url | Annotated[list[Url], msgspec.Meta(max_length=100)]

_MB_RECORDING = re.compile(
    r"https?://(?:www\.|beta\.)?musicbrainz\.org/recording/"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/?",
    re.IGNORECASE,
)
_ISRC_URI = re.compile(r"(?:urn:)?isrc:(.+)", re.IGNORECASE)
_LISTENBRAINZ = re.compile(
    r"https?://(?:www\.|beta\.)?listenbrainz\.org/playlist/"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/?",
    re.IGNORECASE,
)


class JspfTrack(msgspec.Struct):
    """One entry of a playlist. Other JSPF fields (``location``, ``extension``, ...) are
    not read: they stay in the kept source record."""

    identifier: Identifiers | None = None
    title: Name | None = None
    creator: Name | None = None
    album: Name | None = None
    duration: DurationMs | None = None


class JspfPlaylist(msgspec.Struct):
    title: Title
    creator: Name | None = None
    annotation: Text | None = None
    date: ShortText | None = None
    identifier: Url | None = None
    track: Annotated[list[JspfTrack], msgspec.Meta(max_length=MAX_ENTRIES)] = []
    extension: msgspec.Raw = msgspec.Raw(b"null")


class JspfDocument(msgspec.Struct):
    playlist: JspfPlaylist


class PlaylistLine(JspfPlaylist, kw_only=True):
    """The interchange format's playlist record: a JSPF playlist object and its type."""

    type: Literal["playlist"]
    version: Annotated[int, msgspec.Meta(ge=1)] = RECORD_VERSION
    id: Id | None = None


# (identifier as given: several separated by spaces, MusicBrainz recording id, valid
#  ISRC, title, creator, album, duration ms)
EntryTuple = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, int | None
]


class PlaylistRow(msgspec.Struct, array_like=True):
    """A playlist ready to be matched and written (docs/FORMAT.md §4.8)."""

    line: int
    public_id: str
    title: str
    creator: str | None
    annotation: str | None
    created: str | None
    identifier: str | None
    extension: str | None
    """The playlist's extension data, JSON as given (None when it has none)."""
    kind: str
    """Format of ``record``: ``jspf`` (a JSPF document) or ``jsonl`` (a playlist record)."""
    record: bytes
    """The source record as kept for export."""
    fingerprint: int
    entries: list[EntryTuple]


@dataclass
class PlaylistCounts:
    """What a playlist import loaded: playlists, their entries, how entries matched."""

    playlists: int = 0
    entries: int = 0
    mbid: int = 0
    isrc: int = 0
    name: int = 0
    unmatched: int = 0

    def add(self, other: PlaylistCounts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class PlaylistError(ValueError):
    """A playlist document that decodes but breaks a rule of the format."""


_document = msgspec.json.Decoder(JspfDocument)
_line = msgspec.json.Decoder(PlaylistLine)
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode_jspf(data: bytes) -> JspfPlaylist:
    return _document.decode(data).playlist


def decode_record(data: bytes) -> tuple[PlaylistLine, str | None]:
    """A playlist record and its given id; a newer record version is an error."""
    rec = _line.decode(data)
    if rec.version > RECORD_VERSION:
        raise PlaylistError(
            f"playlist record version {rec.version} is newer than this program reads"
            f" ({RECORD_VERSION}): upgrade phonotheca"
        )
    return rec, rec.id


def canonical_playlist(data: bytes, kind: str) -> bytes:
    """The playlist object of a document or record, compact and without the record's own
    keys: the same bytes for a JSPF document and the record export makes of it."""
    value: Any = _any.decode(data)
    if kind == "jspf":
        value = value["playlist"]
    else:
        value = {k: v for k, v in value.items() if k not in ("type", "version", "id")}
    return _encoder.encode(value)


class _Document(msgspec.Struct):
    playlist: msgspec.Raw


_raw_document = msgspec.json.Decoder(_Document)


def playlist_record_of_jspf(document: bytes) -> bytes:
    """The playlist record (§1.9) of a JSPF document: its ``playlist`` object as it is,
    with ``"type":"playlist"`` first, so that both give the same playlist."""
    inner = bytes(_raw_document.decode(document).playlist).strip()
    body = inner[1:].lstrip()
    return b'{"type":"playlist"' + (b"," if body != b"}" else b"") + body


def playlist_id(given: str | None, identifier: str | None, canonical: bytes | None) -> str:
    """The public id: the one given, else ``pl:lb:<mbid>`` for a ListenBrainz playlist,
    else ``pl:h:`` and a hash of its identifier, else of the playlist itself."""
    if given:
        return given
    if identifier:
        m = _LISTENBRAINZ.fullmatch(identifier.strip())
        if m:
            return f"pl:lb:{m.group(1).lower()}"
        return "pl:h:" + _hash(identifier.strip().encode())
    assert canonical is not None
    return "pl:h:" + _hash(canonical)


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=10).hexdigest()


def is_private(playlist: JspfPlaylist) -> bool:
    """ListenBrainz marks a private playlist ``"public": false`` in its extension data."""
    raw = bytes(playlist.extension)
    if b"public" not in raw:
        return False
    ext = _any.decode(raw)
    if not isinstance(ext, dict):
        return False
    lb = ext.get(LISTENBRAINZ_PLAYLIST)
    return isinstance(lb, dict) and lb.get("public") is False


def entry_tuple(track: JspfTrack) -> EntryTuple:
    """What an entry is matched by (§4.8): its MusicBrainz recording URL, its ISRC
    (``isrc:`` URI), its title, creator and duration."""
    ids = [track.identifier] if isinstance(track.identifier, str) else track.identifier or []
    mbid = isrc = None
    for value in ids:
        value = value.strip()
        if mbid is None and (m := _MB_RECORDING.fullmatch(value)):
            mbid = m.group(1).lower()
        elif isrc is None and (i := _ISRC_URI.fullmatch(value)):
            code, valid = parse_isrc(i.group(1))
            if valid:
                isrc = code
    return (
        " ".join(ids) or None,
        mbid,
        isrc,
        track.title,
        track.creator,
        track.album,
        track.duration,
    )


def extension_text(playlist: JspfPlaylist) -> str | None:
    raw = bytes(playlist.extension)
    return None if raw == b"null" else raw.decode()
