"""Synthetic albums: their types and sizes, and each album's record encoded once as JSON.

Album types and their share of albums. Track counts: single 1-3, ep 4-7, album 8-22,
compilation 12-30; albums longer than :data:`TWO_DISCS_ABOVE` tracks have two discs.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import msgspec
import numpy as np

from phonotheca.catalog.record import DatePrecision
from phonotheca.synth import names
from phonotheca.synth.codes import upcs, uuids
from phonotheca.synth.draws import I64, U64, Draws, Mask
from phonotheca.synth.words import titles

ALBUM, SINGLE, EP, COMPILATION = 0, 1, 2, 3
_ALBUM_TYPES = ("album", "single", "ep", "compilation")
_ALBUM_TYPE_WEIGHTS = (0.44, 0.34, 0.14, 0.08)
TWO_DISCS_ABOVE: Final = 20

_PRECISIONS: tuple[DatePrecision, ...] = ("year", "month", "day")
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_COVERS = "https://covers.phonotheca.invalid/syn"

_ENCODER = msgspec.json.Encoder()


class ImageJson(msgspec.Struct, gc=False):
    """An :class:`Image` of kind ``front`` (the default, so not written)."""

    url: str
    width: int
    height: int


class AlbumJson(msgspec.Struct, omit_defaults=True, gc=False):
    """An :class:`AlbumRecord` with its credit pre-encoded (fields named as there)."""

    title: str
    id: str
    artists: msgspec.Raw
    album_type: str
    release_date: str
    label: str
    upc: str
    total_tracks: int
    total_discs: int
    images: list[ImageJson]
    markets: list[str]
    release_date_precision: str | None = None
    genres: list[str] = []
    external_ids: dict[str, str] = {}


def album_kinds(d: Draws, k: U64) -> I64:
    """The type of each album: :data:`ALBUM`, :data:`SINGLE`, :data:`EP` or :data:`COMPILATION`."""
    return d.choice("album.type", k, _ALBUM_TYPE_WEIGHTS)


def album_sizes(d: Draws, k: U64, kind: I64) -> I64:
    """The number of tracks of each album, by its type."""
    single = d.choice("album.size.single", k, (0.6, 0.3, 0.1)) + 1
    ep = d.below("album.size.ep", k, 4) + 4
    u1, u2 = d.unit("album.size.a", k), d.unit("album.size.b", k)
    album = 8 + np.floor(15.0 * u1 * u2).astype(np.int64)
    comp = d.below("album.size.comp", k, 19) + 12
    sizes: I64 = np.choose(kind, [album, single, ep, comp])
    return sizes


def album_json(
    d: Draws,
    k: U64,
    kind: I64,
    sizes: I64,
    script: I64,
    year: I64,
    label: I64,
    genre_base: U64,
    credits: list[msgspec.Raw],
    lead_names: list[str],
    first_titles: list[str],
) -> list[msgspec.Raw]:
    """Encoded :class:`AlbumRecord` JSON for each album."""
    dates, precisions = _release_dates(d, k, year)
    mbids = uuids(d.bits("album.mbid.hi", k), d.bits("album.mbid.lo", k))
    empty: dict[str, str] = {}
    external_ids = [
        {"musicbrainz_release": m} if has else empty
        for m, has in zip(mbids, d.chance("album.mbid", k, 0.3).tolist(), strict=True)
    ]
    columns = zip(
        _album_titles(d, k, kind, script, year, first_titles),
        (f"syn:album:{a}" for a in k.tolist()),
        credits,
        (_ALBUM_TYPES[t] for t in kind.tolist()),
        dates,
        _label_texts(d, k, kind, label, lead_names),
        upcs(d, k),
        sizes.tolist(),
        (2 if n > TWO_DISCS_ABOVE else 1 for n in sizes.tolist()),
        _images(d, k),
        _album_markets(d, k, script),
        precisions,
        _genres(d, k, script, genre_base),
        external_ids,
        strict=True,
    )
    return [msgspec.Raw(_ENCODER.encode(AlbumJson(*row))) for row in columns]


def _album_titles(
    d: Draws, k: U64, kind: I64, script: I64, year: I64, first_titles: list[str]
) -> list[str]:
    """Singles are named after their first track; compilations follow a few patterns."""
    count = d.choice("album.words", k, (0.4, 0.35, 0.15, 0.1)) + 1
    plain = titles(d, "album.word", k, script, count)
    suffix = np.where(
        d.chance("album.suffix", k, 0.06),
        d.below("album.suffix.kind", k, len(names.ALBUM_SUFFIXES)),
        -1,
    ).tolist()
    pattern = d.below("album.comp.pattern", k, 4).tolist()
    out = []
    for a, kd, yr, words, first, sfx, pat in zip(
        k.tolist(), kind.tolist(), year.tolist(), plain, first_titles, suffix, pattern, strict=True
    ):
        if kd == SINGLE:
            out.append(first)
        elif kd == COMPILATION:
            compilation = (
                f"Greatest Hits {yr}",
                f"The Best of {words}",
                f"{words} Hits",
                f"{words} Vol. {1 + a % 9}",
            )
            out.append(compilation[pat])
        else:
            out.append(words + (names.ALBUM_SUFFIXES[sfx] if sfx >= 0 else ""))
    return out


def _release_dates(d: Draws, k: U64, year: I64) -> tuple[list[str], list[DatePrecision | None]]:
    """Dates of mixed precision (older releases more often by year only).

    The precision is stated for about two thirds of albums; a few year-only dates are
    written as ``YYYY-01-01`` with precision ``year``, as some sources do.
    """
    precision = np.where(
        year < 1990,
        d.choice("album.precision.old", k, (0.35, 0.10, 0.55)),
        d.choice("album.precision.new", k, (0.08, 0.07, 0.85)),
    )
    stated = d.chance("album.precision.stated", k, 0.65)
    padded = stated & (precision == 0) & d.chance("album.precision.padded", k, 0.2)
    month = d.below("album.month", k, 12) + 1
    days = np.array(_MONTH_DAYS, dtype=np.int64)[month - 1]
    day = 1 + d.below("album.day", k, days.astype(np.uint64))
    dates = []
    for yr, mo, dy, p, pad in zip(
        year.tolist(),
        month.tolist(),
        day.tolist(),
        precision.tolist(),
        padded.tolist(),
        strict=True,
    ):
        if pad:
            dates.append(f"{yr:04d}-01-01")
        elif p == 0:
            dates.append(f"{yr:04d}")
        elif p == 1:
            dates.append(f"{yr:04d}-{mo:02d}")
        else:
            dates.append(f"{yr:04d}-{mo:02d}-{dy:02d}")
    stated_list: list[DatePrecision | None] = [
        _PRECISIONS[p] if st else None
        for p, st in zip(precision.tolist(), stated.tolist(), strict=True)
    ]
    return dates, stated_list


def _label_texts(d: Draws, k: U64, kind: I64, label: I64, lead_names: list[str]) -> list[str]:
    """Label names; some albums are self-released under the artist's name."""
    by_label = _label_names(d, np.unique(label))
    self_released = d.chance("album.self", k, 0.08) & (kind != COMPILATION)
    suffix = d.below("album.self.suffix", k, len(names.LABEL_SUFFIXES)).tolist()
    return [
        f"{lead} {names.LABEL_SUFFIXES[x]}" if own else by_label[lb]
        for lb, own, lead, x in zip(
            label.tolist(), self_released.tolist(), lead_names, suffix, strict=True
        )
    ]


def _label_names(d: Draws, labels: I64) -> dict[int, str]:
    u = labels.astype(np.uint64)
    script = np.where(d.chance("label.script", u, 0.1), names.LATIN_DIACRITICS, names.LATIN)
    word = (d.bits("label.word", u) >> np.uint64(40)).tolist()
    suffix = d.below("label.suffix", u, len(names.LABEL_SUFFIXES)).tolist()
    return {
        a: f"{names.made_up_name(s, w)} {names.LABEL_SUFFIXES[x]}"
        for a, s, w, x in zip(labels.tolist(), script.tolist(), word, suffix, strict=True)
    }


def _images(d: Draws, k: U64) -> list[list[ImageJson]]:
    """A front cover in one of a few sizes, often with a 300 px thumbnail."""
    side = np.array([640, 1000, 1400, 3000])[
        d.choice("album.cover.size", k, (0.5, 0.3, 0.15, 0.05))
    ]
    out = []
    for h, px, two in zip(
        d.bits("album.cover", k).tolist(),
        side.tolist(),
        d.chance("album.images", k, 0.6).tolist(),
        strict=True,
    ):
        images = [ImageJson(f"{_COVERS}/{h:016x}/{px}.jpg", px, px)]
        if two:
            images.append(ImageJson(f"{_COVERS}/{h:016x}/300.jpg", 300, 300))
        out.append(images)
    return out


def _album_markets(d: Draws, k: U64, script: I64) -> list[list[str]]:
    count = (d.below("album.markets", k, 5) + 1).tolist()
    first = d.below("album.market0", k, 6).tolist()
    return [_markets(s, f, c) for s, f, c in zip(script.tolist(), first, count, strict=True)]


@cache
def _markets(script: int, first: int, count: int) -> list[str]:
    """``count`` markets of the script's region (shared list: encoded, never changed)."""
    region = names.MARKETS[script]
    return sorted({region[(first + j) % len(region)] for j in range(count)})


def _genres(d: Draws, k: U64, script: I64, genre_base: U64) -> list[list[str]]:
    """0-3 genres: the artist's own first, then others of the script's region."""
    count = d.choice("album.genres", k, (0.15, 0.55, 0.22, 0.08)).tolist()
    more = d.bits("album.genre2", k).tolist()
    out = []
    for s, n, base, extra in zip(script.tolist(), count, genre_base.tolist(), more, strict=True):
        row = _genre_row(s)
        picked = (row[base % 32], row[extra % 32], row[(extra >> 8) % 32])
        out.append(list(dict.fromkeys(picked[:n])))
    return out


def explicit_genre(script: I64, genre_base: U64) -> Mask:
    """Whether the first genre of each album (by script and genre draw) is often explicit."""
    flags = np.array(
        [[g in names.EXPLICIT_GENRES for g in _genre_row(s)] for s in names.SCRIPTS], np.bool_
    )
    idx = (genre_base % np.uint64(flags.shape[1])).astype(np.int64)
    out: Mask = flags[script, idx]
    return out


@cache
def _genre_row(script: int) -> tuple[str, ...]:
    return padded(names.GENRES[script], 32)


def padded(items: tuple[str, ...], width: int) -> tuple[str, ...]:
    """``items`` repeated to a fixed width (so that one modulus fits every script)."""
    return tuple(items[i % len(items)] for i in range(width))
