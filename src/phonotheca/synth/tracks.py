"""One chunk of the synthetic catalog: a run of albums and their tracks as JSONL lines.

Values are drawn with NumPy for the whole chunk; per track, Python only joins title
words and builds one msgspec struct whose album and credit are pre-encoded JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
import numpy as np

from phonotheca.synth import names
from phonotheca.synth.albums import (
    COMPILATION,
    TWO_DISCS_ABOVE,
    album_json,
    album_kinds,
    album_sizes,
    explicit_genre,
    padded,
)
from phonotheca.synth.artists import SCRIPT_WEIGHTS, Artists, artist_scripts
from phonotheca.synth.codes import ALNUM, ascii_rows, decimal, uuids
from phonotheca.synth.draws import I64, U64, Draws, Mask, exp, log2
from phonotheca.synth.words import titles as draw_titles

GROUP_ALBUMS: Final = 1024
"""Albums per group; a re-release copies a track from an earlier album of its group."""

# Listens: log(listens) = _LOG_LISTENS + artist + album + track terms (natural log).
_LOG_LISTENS = 5.75
_NULL_LISTENS = 0.05
# ISRC status shares.
_ISRC_MISSING = 0.05
_ISRC_INVALID = 0.01
_DUP_ON_COMPILATION = 0.04
_DUP_ELSEWHERE = 0.0025
_FEATURING = 0.15

_ENCODER = msgspec.json.Encoder()


class TrackLine(msgspec.Struct, omit_defaults=True, gc=False):
    """One output line: a :class:`TrackRecord` whose album and credit are pre-encoded.

    Album and credit JSON are the same for every track of an album, so they are
    encoded once and spliced in as ``Raw``. ``listens`` has no default so that an
    unknown count is written as ``null`` rather than left out. ``gc=False`` (no
    field can form a cycle) makes building a line 3x cheaper.
    """

    id: str
    title: str
    artists: msgspec.Raw
    album: msgspec.Raw
    disc_number: int
    track_number: int
    duration_ms: int
    popularity: int
    listens: int | None
    isrc: str | None = None
    explicit: bool | None = None
    external_ids: dict[str, str] = {}


@dataclass
class Chunk:
    """Encoded lines for a run of albums (or one zstd frame of them), with what they hold."""

    data: bytes
    tracks: int
    albums: int
    artists: I64
    """Distinct artists credited in the chunk."""


def build_chunk(
    d: Draws, artists: Artists, k0: int, n_albums: int, i0: int, remaining: int
) -> Chunk:
    """Albums ``k0 .. k0 + n_albums - 1`` from track ``i0``, cut after ``remaining`` tracks."""
    # --- album shapes, cut so that the chunk ends at the requested track count
    k = np.arange(k0, k0 + n_albums, dtype=np.uint64)
    kind = album_kinds(d, k)
    sizes = album_sizes(d, k, kind)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keep = int(np.searchsorted(starts, remaining, side="left"))
    k, kind, sizes, starts = k[:keep], kind[:keep], sizes[:keep], starts[:keep]
    sizes[-1] = min(int(sizes[-1]), remaining - int(starts[-1]))
    n = int(sizes.sum())

    # --- album artists: pools grow with the album index, so early artists are reused more
    pool = np.uint64(64) + (k * np.uint64(2)) // np.uint64(5)
    is_comp = kind == COMPILATION
    a1 = np.where(is_comp, 0, d.zipf_pick("album.artist", k, pool))
    a2 = d.zipf_pick("album.artist2", k, pool)
    a2 = np.where(~is_comp & d.chance("album.duo", k, 0.04) & (a2 != a1), a2, -1)
    album_script = np.where(
        is_comp, d.choice("album.script", k, SCRIPT_WEIGHTS), artist_scripts(d, a1)
    )

    # --- tracks
    t = np.arange(i0, i0 + n, dtype=np.uint64)
    alb = np.repeat(np.arange(keep), sizes)
    pos = np.arange(n) - starts[alb]
    n_of = sizes[alb]
    disc = 1 + ((n_of > TWO_DISCS_ABOVE) & (pos >= (n_of + 1) // 2)).astype(np.int64)
    comp_t = is_comp[alb]
    t_pool = pool[alb]
    lead = np.where(comp_t, d.zipf_pick("track.artist", t, t_pool), a1[alb])
    feat = d.chance("track.feat", t, _FEATURING)
    feat_kind = d.choice("track.feat.kind", t, (0.6, 0.25, 0.15))
    f1 = d.zipf_pick("track.feat1", t, t_pool)
    f2 = d.zipf_pick("track.feat2", t, t_pool)
    track_script = artist_scripts(d, lead)
    track_script = np.where(comp_t, track_script, album_script[alb])
    english = (track_script != names.LATIN) & d.chance("track.english", t, 0.15)
    track_script = np.where(english, names.LATIN, track_script)

    # titles: 1-5 Zipf words, a few with a version suffix
    count = d.choice("title.words", t, (0.2, 0.35, 0.25, 0.13, 0.07)) + 1
    titles = draw_titles(d, "title.word", t, track_script, count)
    with_suffix = np.flatnonzero(d.chance("title.suffix", t, 0.05))
    suffix = d.below("title.suffix.kind", t, len(names.TITLE_SUFFIXES))[with_suffix]
    for i, s in zip(with_suffix.tolist(), suffix.tolist(), strict=True):
        titles[i] += names.TITLE_SUFFIXES[s]

    # durations: lognormal around 3.5 min, 1-10 min
    duration = np.clip(
        np.floor(210_000.0 * exp(0.33 * d.normal("track.duration", t))), 60_000, 600_000
    ).astype(np.int64)

    # labels, years and genres, needed by ISRCs and explicit flags
    u = d.unit("album.label", k)  # a few big labels, many small ones
    label = 1 + np.floor((np.uint64(8) + k // np.uint64(16)).astype(np.float64) * (u * u * u))
    label = label.astype(np.int64)
    u = d.unit("album.year", k)  # recent years more often
    year = 2025 - np.floor(75.0 * (u * u)).astype(np.int64)
    genre_base = np.where(
        is_comp, d.bits("album.genre", k), d.bits("artist.genre", a1.astype(np.uint64))
    )

    # ISRC status: missing, invalid, re-release (copies an earlier track of its group)
    status = d.unit("isrc.status", t)
    missing = status < _ISRC_MISSING
    invalid = (status >= _ISRC_MISSING) & (status < _ISRC_MISSING + _ISRC_INVALID)
    normal = ~missing & ~invalid
    dup = normal & d.chance("track.dup", t, np.where(comp_t, _DUP_ON_COMPILATION, _DUP_ELSEWHERE))
    src = _pick_sources(d, t, k0, k, alb, starts, normal & ~dup, dup)
    dup = src >= 0
    dst = np.flatnonzero(dup)
    srcs = src[dst]

    # canonical ISRCs: country by script, registrant by label, year, designation
    cc_table = np.array(
        [
            [list(padded(names.ISRC_COUNTRIES[s], 12)[j].encode()) for j in range(12)]
            for s in names.SCRIPTS
        ],
        dtype=np.uint8,
    )
    cc = cc_table[track_script, d.below("isrc.country", t, cc_table.shape[1])]
    reg_bits = d.bits("label.registrant", label.astype(np.uint64))[alb]
    reg = ALNUM[
        ((reg_bits[:, None] >> np.array([0, 8, 16], np.uint64)) % np.uint64(36)).astype(np.int64)
    ]
    isrc_rows = np.concatenate(
        [cc, reg, decimal(year[alb] % 100, 2), decimal(d.below("isrc.code", t, 100_000), 5)],
        axis=1,
    )
    isrc_rows[dst] = isrc_rows[srcs]
    isrc = _isrc_texts(d, t, ascii_rows(isrc_rows), missing, invalid)

    # explicit flags and MusicBrainz recording ids, shared with the re-released track
    has_mbid = d.chance("track.mbid", t, 0.4)
    mb_hi, mb_lo = d.bits("track.mbid.hi", t), d.bits("track.mbid.lo", t)
    explicit_p = np.where(explicit_genre(album_script, genre_base)[alb], 0.45, 0.08)
    explicit = np.where(d.chance("track.explicit", t, explicit_p), 1, 0)
    explicit = np.where(d.chance("track.explicit.known", t, 0.8), explicit, -1)
    for arr in (duration, has_mbid, mb_hi, mb_lo, explicit):
        arr[dst] = arr[srcs]
    empty: dict[str, str] = {}
    external_ids = [empty] * n
    rows = np.flatnonzero(has_mbid)
    for i, mbid in zip(rows.tolist(), uuids(mb_hi[rows], mb_lo[rows]), strict=True):
        external_ids[i] = {"musicbrainz_recording": mbid}

    # listens: artist, album and track terms; popularity follows log listens
    log_listens = (
        _LOG_LISTENS
        + 2.0 * d.normal("artist.listens", lead.astype(np.uint64))
        + 0.15 * (log2(t_pool.astype(np.float64)) - log2(lead.astype(np.float64)))
        + (0.9 * d.normal("album.listens", k) + np.choose(kind, [0.0, 0.3, 0.0, -0.6]))[alb]
        + 1.2 * d.normal("track.listens", t)
        - 0.25 * log2(pos.astype(np.float64) + 1.0)
        + np.where(d.chance("track.hit", t, 0.08), 1.2, 0.0)
    )
    listens = np.floor(exp(log_listens)).astype(np.int64)
    popularity = np.clip(
        np.floor((log_listens - 3.0) * 5.8 + d.unit("track.popularity", t) * 6.0 - 3.0), 0, 100
    ).astype(np.int64)
    listens_or_null: list[int | None] = listens.tolist()
    for i in np.flatnonzero(d.chance("track.listens.null", t, _NULL_LISTENS)).tolist():
        listens_or_null[i] = None

    # credits: the album's for most tracks, built for compilations and featuring
    artists.prepare(np.concatenate([a1, a2[a2 > 0], lead, f1[feat], f2[feat]]))
    album_people = [[x, y] if y > 0 else [x] for x, y in zip(a1.tolist(), a2.tolist(), strict=True)]
    album_raw = [artists.credit_json(p) for p in album_people]
    alb_list = alb.tolist()
    credit_raw = [album_raw[a] for a in alb_list]
    # re-releases (dup) copy their source's credit below
    solo = np.flatnonzero(comp_t & ~feat & ~dup)  # compilation tracks: the track's own artist
    for i, ld in zip(solo.tolist(), lead[solo].tolist(), strict=True):
        credit_raw[i] = artists.credit_json((ld,))
    credited: list[int] = []
    own = np.flatnonzero(feat & ~dup)
    # up to four people per credit: lead, album duo partner, one or two featured (-1: none)
    people = np.stack(
        [
            lead[own],
            np.where(comp_t[own], -1, a2[alb[own]]),
            f1[own],
            np.where(feat_kind[own] == 2, f2[own], -1),
        ],
        axis=1,
    )
    for i, row, featuring in zip(
        own.tolist(), people.tolist(), (feat_kind[own] == 0).tolist(), strict=True
    ):
        unique = tuple(dict.fromkeys(p for p in row if p >= 0))
        credit_raw[i] = artists.credit_json(unique, featuring and len(unique) > 1)
        credited += unique
    for i, s in zip(dst.tolist(), srcs.tolist(), strict=True):
        titles[i] = titles[s]
        credit_raw[i] = credit_raw[s]
    credited_ids = np.unique(
        np.concatenate([a1, a2[a2 > 0], lead[solo], np.asarray(credited, np.int64)])
    )

    # albums, encoded once each
    first_titles = [titles[s] for s in starts.tolist()]
    album_raws = album_json(
        d,
        k,
        kind,
        sizes,
        album_script,
        year,
        label,
        genre_base,
        album_raw,
        [artists.name(a) for a in a1.tolist()],
        first_titles,
    )
    explicit_list: list[bool | None] = [None if e < 0 else bool(e) for e in explicit.tolist()]

    lines = [
        TrackLine(f"syn:track:{i}", ti, ar, al, dn, tn, du, po, li, isr, ex, ei)
        for i, ti, ar, al, dn, tn, du, po, li, isr, ex, ei in zip(
            range(i0, i0 + n),
            titles,
            credit_raw,
            [album_raws[a] for a in alb_list],
            disc.tolist(),
            (pos + 1).tolist(),
            duration.tolist(),
            popularity.tolist(),
            listens_or_null,
            isrc,
            explicit_list,
            external_ids,
            strict=True,
        )
    ]
    return Chunk(_ENCODER.encode_lines(lines), n, keep, credited_ids)


def _pick_sources(
    d: Draws, t: U64, k0: int, k: U64, alb: I64, starts: I64, eligible: Mask, dup: Mask
) -> I64:
    """For each re-release, an eligible track of an earlier album of its group, or -1."""
    before = np.concatenate([[0], np.cumsum(eligible)])  # eligible tracks before position p
    candidates = np.flatnonzero(eligible)
    if not len(candidates):
        return np.full(len(t), -1, dtype=np.int64)
    group_first_album = ((k // np.uint64(GROUP_ALBUMS)) * np.uint64(GROUP_ALBUMS)).astype(
        np.int64
    ) - k0
    lo = before[starts[group_first_album[alb]]]
    hi = before[starts[alb]]
    count = np.where(dup, hi - lo, 0)
    pick = lo + d.below("track.dup.source", t, np.maximum(count, 1).astype(np.uint64))
    src: I64 = np.where(count > 0, candidates[np.minimum(pick, len(candidates) - 1)], -1)
    return src


def _isrc_texts(
    d: Draws, t: U64, canonical: list[str], missing: Mask, invalid: Mask
) -> list[str | None]:
    """ISRCs as sources write them: hyphenated, lower case, broken or absent."""
    out: list[str | None] = list(canonical)
    style = d.choice("isrc.style", t, (0.88, 0.07, 0.03, 0.02))
    for i, s in zip(np.flatnonzero(style > 0).tolist(), style[style > 0].tolist(), strict=True):
        c = canonical[i]
        hyphenated = f"{c[:2]}-{c[2:5]}-{c[5:7]}-{c[7:]}"
        out[i] = (hyphenated, c.lower(), hyphenated.lower())[s - 1]
    breakage = d.below("isrc.invalid.kind", t, 4)
    for i in np.flatnonzero(invalid).tolist():
        c, b = canonical[i], int(breakage[i])
        out[i] = (c[:11], c + "7", c[:8] + "O" + c[9:], c[:6] + "#" + c[7:])[b]
    for i in np.flatnonzero(missing).tolist():
        out[i] = None
    return out
