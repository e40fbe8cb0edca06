"""The JSONL interchange format, version 1: one track per line (see docs/FORMAT.md).

The structs below *are* the format: msgspec validates types, lengths and ranges
while it decodes, so a line either becomes a :class:`TrackRecord` or raises a
``msgspec.ValidationError`` whose message names the field.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

import msgspec

FORMAT_VERSION = 1

# Limits that keep one hostile line from costing unbounded memory or disk.
MAX_LINE_BYTES = 1 << 20
# Ids are looked up by value in bulk, so they may hold no control characters.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Name = Annotated[str, msgspec.Meta(max_length=2000)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Url = Annotated[str, msgspec.Meta(max_length=4096)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
Popularity = Annotated[int, msgspec.Meta(ge=0, le=100)]
Count = Annotated[int, msgspec.Meta(ge=0, le=(1 << 62))]
DurationMs = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600 * 1000)]
Pixels = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
ShortList = Annotated[list[ShortText], msgspec.Meta(max_length=500)]

DatePrecision = Literal["year", "month", "day"]
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class ArtistCredit(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """One artist as credited on a track or an album, in credit order."""

    name: Name
    id: Id | None = None
    sort_name: Name | None = None
    join_phrase: ShortText = ""
    """Text printed after this artist's name, e.g. ``" feat. "``, ``" & "``."""
    credited_as: Name | None = None
    """The name as printed on this release when it differs from the artist's name."""


class Image(msgspec.Struct, omit_defaults=True):
    url: Url
    width: Pixels | None = None
    height: Pixels | None = None
    kind: ShortText = "front"


class AlbumRecord(msgspec.Struct, omit_defaults=True):
    title: Name
    id: Id | None = None
    artists: Annotated[list[ArtistCredit], msgspec.Meta(max_length=200)] = []
    album_type: ShortText | None = None
    release_date: ShortText | None = None
    release_date_precision: DatePrecision | None = None
    label: Name | None = None
    upc: ShortText | None = None
    total_tracks: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None
    total_discs: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    genres: ShortList = []
    images: Annotated[list[Image], msgspec.Meta(max_length=50)] = []
    markets: ShortList = []
    external_ids: dict[ShortText, ShortText] = {}


class Alias(msgspec.Struct, omit_defaults=True):
    """Another name of a track (a MusicBrainz recording's alias): search finds it by it."""

    name: Name
    sort_name: Name | None = None
    locale: ShortText | None = None


class TrackRecord(msgspec.Struct, omit_defaults=True):
    """One line of an interchange file: a track with its album and artists nested."""

    id: Id
    title: Name
    artists: Annotated[list[ArtistCredit], msgspec.Meta(max_length=200)]
    album: AlbumRecord | None = None
    disc_number: PositiveInt | None = None
    track_number: PositiveInt | None = None
    duration_ms: DurationMs | None = None
    isrc: ShortText | None = None
    explicit: bool | None = None
    popularity: Popularity | None = None
    listens: Count | None = None
    genres: ShortList = []
    markets: ShortList = []
    external_ids: dict[ShortText, ShortText] = {}
    updated_at: ShortText | None = None
    """RFC 3339 time of the source record; when two records share an id the newer wins."""
    aliases: Annotated[list[Alias], msgspec.Meta(max_length=500)] = []


class RecordError(ValueError):
    """A line that decodes as JSON but breaks a rule of the format."""


def parse_date(text: str, precision: str | None) -> tuple[str, str]:
    """Validate a ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` date; return (date, precision).

    Sources that only know the year often write ``1973-01-01`` with precision
    ``year``: the stated precision wins and the date is cut to it.
    """
    m = _DATE.fullmatch(text)
    if m is None:
        raise RecordError(f"release_date {text!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    _, month, day = m.groups()
    if month is not None and not 1 <= int(month) <= 12:
        raise RecordError(f"release_date {text!r} has month {month}")
    if day is not None and not 1 <= int(day) <= 31:
        raise RecordError(f"release_date {text!r} has day {day}")
    shown = "day" if day else "month" if month else "year"
    order = {"year": 0, "month": 1, "day": 2}
    if precision is None:
        return text, shown
    if order[precision] > order[shown]:
        raise RecordError(f"release_date {text!r} is less precise than {precision!r}")
    cut = {"year": 4, "month": 7, "day": 10}[precision]
    return text[:cut], precision


def derived_id(kind: str, *parts: str) -> str:
    """A stable public id for a record that came without one (an artist known by name only).

    Derived from the case-folded parts, so the same name always gives the same id
    on any machine; two different artists sharing a name share it too, which is
    the best a source without ids allows.
    """
    key = "\x1f".join(p.casefold().strip() for p in parts)
    return f"h:{kind}:" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def credit_text(artists: list[ArtistCredit]) -> str:
    """The credit as printed: names (or credited names) joined by their join phrases."""
    out: list[str] = []
    for a in artists:
        out.append(a.credited_as or a.name)
        out.append(a.join_phrase)
    if artists and not artists[-1].join_phrase:
        return "".join(out)
    # A trailing join phrase is unusual but kept so that the credit reads as sourced.
    return "".join(out).rstrip()
