"""A deterministic synthetic catalog in the JSONL interchange format.

``write_catalog(out, tracks, seed)`` writes ``tracks`` lines that decode as
:class:`phonotheca.catalog.record.TrackRecord`, with realistic shapes: albums of
1-30 consecutive tracks, artists reused Zipf-wise, titles in five scripts drawn
from Zipf vocabularies, heavy-tailed listens, and ISRCs that are sometimes
hyphenated, lower case, missing, invalid or shared by a re-release.

Determinism: every value is a function of (seed, what it describes, its global
index) through a counter-based hash (SplitMix64), never of a sequential random
stream, so the bytes do not depend on how the work is chunked. Per-value
arithmetic uses only IEEE basic operations (+ - * / floor) and lookup tables;
``exp`` and the normal quantile come from tables built with Python's ``math``,
so a NumPy SIMD code path cannot change a digit on another machine.

Albums are generated in fixed groups of :data:`GROUP_ALBUMS`; a re-release
(shared ISRC) copies a track from an earlier album of its own group. The output
for N tracks is a prefix of the output for more tracks, except that the last
album is cut short (its ``total_tracks`` says so).

Speed: values are drawn with NumPy for a chunk of albums at a time; per track,
Python only joins title words and builds one msgspec struct whose album and
credit are pre-encoded JSON. A ``.zst`` output is one zstd frame per chunk, so
worker processes can generate *and* compress chunks and the parent only writes
them in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
import zstandard

from phonotheca.catalog.record import ArtistCredit, DatePrecision
from phonotheca.synth import names

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

GROUP_ALBUMS: Final = 1024
"""Albums per group; a re-release copies a track from an earlier album of its group."""
CHUNK_GROUPS: Final = 2
"""Groups generated, encoded and written at a time (about 16 k tracks, 12 MB of JSON)."""
ZSTD_LEVEL: Final = 3

# Album types and their share of albums. Track counts: single 1-3, ep 4-7, album 8-22,
# compilation 12-30; albums longer than 20 tracks have two discs.
ALBUM, SINGLE, EP, COMPILATION = 0, 1, 2, 3
_ALBUM_TYPES = ("album", "single", "ep", "compilation")
_ALBUM_TYPE_WEIGHTS = (0.44, 0.34, 0.14, 0.08)
_TWO_DISCS_ABOVE = 20
_SCRIPT_WEIGHTS = (0.76, 0.09, 0.06, 0.05, 0.04)  # LATIN, DIACRITICS, CYRILLIC, CJK, ARABIC

# Listens: log(listens) = _LOG_LISTENS + artist + album + track terms (natural log).
_LOG_LISTENS = 5.75
_NULL_LISTENS = 0.05
# ISRC status shares.
_ISRC_MISSING = 0.05
_ISRC_INVALID = 0.01
_DUP_ON_COMPILATION = 0.04
_DUP_ELSEWHERE = 0.0025
_FEATURING = 0.15

_PRECISIONS: tuple[DatePrecision, ...] = ("year", "month", "day")
_COVERS = "https://covers.phonotheca.invalid/syn"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What :func:`write_catalog` wrote."""

    tracks: int
    albums: int
    artists: int
    """Distinct artists credited on a track or an album (``Various Artists`` included)."""
    bytes_written: int
    """Size of the output file (compressed when it ends in ``.zst``)."""
    seconds: float


class _Line(msgspec.Struct, omit_defaults=True, gc=False):
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


class _Image(msgspec.Struct, gc=False):
    """An :class:`Image` of kind ``front`` (the default, so not written)."""

    url: str
    width: int
    height: int


class _Album(msgspec.Struct, omit_defaults=True, gc=False):
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
    images: list[_Image]
    markets: list[str]
    release_date_precision: str | None = None
    genres: list[str] = []
    external_ids: dict[str, str] = {}


# ---------------------------------------------------------------------------
# Counter-based random draws.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NORMAL_CELLS = 1 << 14
_EXP_LO, _EXP_HI, _EXP_STEPS = -40, 40, 256


def _mix(x: U64) -> U64:
    """SplitMix64 finaliser, in place."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@cache
def _normal_quantiles() -> F64:
    """The standard normal quantile at j / CELLS (ends pulled in to stay finite)."""
    nd = statistics.NormalDist()
    cells = _NORMAL_CELLS
    return np.array(
        [nd.inv_cdf(min(max(j, 0.25), cells - 0.25) / cells) for j in range(cells + 1)],
        dtype=np.float64,
    )


@cache
def _exp_table() -> F64:
    n = (_EXP_HI - _EXP_LO) * _EXP_STEPS
    return np.array([math.exp(_EXP_LO + k / _EXP_STEPS) for k in range(n + 1)], np.float64)


def _exp(x: F64) -> F64:
    """``exp`` from a table and a cubic Taylor step: the same bits on every machine."""
    t = (np.clip(x, _EXP_LO, _EXP_HI - 1) - _EXP_LO) * _EXP_STEPS
    k = np.floor(t)
    f = (t - k) / _EXP_STEPS
    return _exp_table()[k.astype(np.int64)] * (1.0 + f * (1.0 + f * (0.5 + f / 6.0)))


def _log2(x: F64) -> F64:
    """A piecewise-linear log2 (exact arithmetic via frexp); x >= 1."""
    m, e = np.frexp(x)
    return (e - 1).astype(np.float64) + (m - 0.5) * 2.0


class _Draws:
    """Independent uniform streams, each addressed by (seed, name, index)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._keys: dict[str, np.uint64] = {}

    def key(self, name: str) -> np.uint64:
        k = self._keys.get(name)
        if k is None:
            digest = hashlib.blake2b(f"{self.seed}\x1f{name}".encode(), digest_size=8).digest()
            k = self._keys[name] = np.uint64(int.from_bytes(digest, "little"))
        return k

    def bits(self, name: str, idx: U64) -> U64:
        x = idx * _GOLDEN
        x += self.key(name)
        return _mix(x)

    def unit(self, name: str, idx: U64) -> F64:
        """Uniform in (0, 1), 52 bits."""
        return ((self.bits(name, idx) >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52

    def below(self, name: str, idx: U64, n: int | U64) -> I64:
        """Uniform integers in [0, n), n < 2**32 (scalar or per index)."""
        hi = self.bits(name, idx) >> np.uint64(32)
        return ((hi * np.asarray(n, dtype=np.uint64)) >> np.uint64(32)).astype(np.int64)

    def chance(self, name: str, idx: U64, p: float | F64) -> Mask:
        return self.unit(name, idx) < p

    def choice(self, name: str, idx: U64, weights: Sequence[float]) -> I64:
        """Index into ``weights`` drawn with those weights."""
        total = sum(weights)
        acc, cuts = 0.0, []
        for w in weights[:-1]:
            acc += w
            cuts.append(min(int(acc / total * 2.0**64), 2**64 - 1))
        thresholds = np.array(cuts, dtype=np.uint64)
        return np.searchsorted(thresholds, self.bits(name, idx), side="right").astype(np.int64)

    def normal(self, name: str, idx: U64) -> F64:
        q = _normal_quantiles()
        t = self.unit(name, idx) * _NORMAL_CELLS
        j = np.floor(t)
        f = t - j
        ji = j.astype(np.int64)
        return q[ji] + f * (q[ji + 1] - q[ji])

    def zipf_pick(self, name: str, idx: U64, pool: U64) -> I64:
        """An artist-like index in [1, pool]: 60 % power law (p ~ r^-1/2), 40 % uniform."""
        u = self.unit(name, idx)
        x = np.where(self.chance(name + ".power", idx, 0.6), u * u, u)
        pool_f = pool.astype(np.float64)
        r = np.minimum(np.floor(x * pool_f), pool_f - 1.0)
        return r.astype(np.int64) + 1


# ---------------------------------------------------------------------------
# Vocabulary tables (seed-independent).


@dataclass(frozen=True)
class _Words:
    words: npt.NDArray[np.object_]
    """All scripts' title words, concatenated."""
    offset: tuple[int, ...]
    size: tuple[int, ...]


@cache
def _words() -> _Words:
    words: list[str] = []
    offset, size = [], []
    for script in names.SCRIPTS:
        vocab = names.vocabulary(script).words
        offset.append(len(words))
        size.append(len(vocab))
        words.extend(vocab)
    arr = np.empty(len(words), dtype=object)
    arr[:] = words
    return _Words(arr, tuple(offset), tuple(size))


@cache
def _zipf_thresholds(size: int) -> U64:
    """Cut points of a Zipf-Mandelbrot law over ranks 0..size-1, P(r) ~ 1 / (r + 2.7)."""
    acc = np.cumsum(1.0 / (np.arange(size, dtype=np.float64) + 2.7))  # sequential sum
    cuts: U64 = np.floor(acc[:-1] / acc[-1] * 2.0**63).astype(np.uint64) * np.uint64(2)
    return cuts


def _draw_words(d: _Draws, name: str, idx: U64, script: I64, *, skip: int = 0, top: int = 0) -> I64:
    """One Zipf word per index from its script's vocabulary, ranks in [skip, top)."""
    w = _words()
    bits = d.bits(name, idx)
    out = np.empty(len(idx), dtype=np.int64)
    for s in names.SCRIPTS:
        m = script == s
        if m.any():
            cuts = _zipf_thresholds((min(top, w.size[s]) if top else w.size[s]) - skip)
            out[m] = w.offset[s] + skip + np.searchsorted(cuts, bits[m], side="right")
    return out


def _titles(d: _Draws, name: str, idx: U64, script: I64, count: I64) -> list[str]:
    """Titles of ``count[i]`` Zipf words; word j of title i is drawn at (name + j, idx[i])."""
    words = _words().words
    word_idx = np.zeros((len(idx), int(count.max(initial=1))), dtype=np.int64)
    for j in range(word_idx.shape[1]):
        rows = np.flatnonzero(count > j)  # draw only the words a title has
        word_idx[rows, j] = _draw_words(d, f"{name}{j}", idx[rows], script[rows])
    out = np.empty(len(count), dtype=object)
    for n in range(1, word_idx.shape[1] + 1):
        rows = np.flatnonzero(count == n)
        if len(rows):
            cols = [words[word_idx[rows, c]].tolist() for c in range(n)]
            out[rows] = [" ".join(t) for t in zip(*cols, strict=True)]
    titles: list[str] = out.tolist()
    return titles


# ---------------------------------------------------------------------------
# Artists.


def _artist_scripts(d: _Draws, artist: I64) -> I64:
    script = d.choice("artist.script", artist.astype(np.uint64), _SCRIPT_WEIGHTS)
    script[artist == 0] = names.LATIN
    return script


_PERSON_SHARE = {
    names.LATIN: 35,
    names.LATIN_DIACRITICS: 45,
    names.CYRILLIC: 50,
    names.CJK: 50,
    names.ARABIC: 45,
}


class _Artists:
    """Names of artists by index, computed on demand (a pure function of seed and index)."""

    _LIMIT = 1 << 17

    def __init__(self, d: _Draws) -> None:
        self.draws = d
        self._cache: dict[int, ArtistCredit] = {}
        self._joined: dict[tuple[int, str], bytes] = {}
        self._solo: dict[int, msgspec.Raw] = {}
        self._clear()

    def _clear(self) -> None:
        self._cache = {0: ArtistCredit(names.VARIOUS_ARTISTS, "syn:artist:0")}
        self._joined = {}
        self._solo = {}

    def prepare(self, artist: I64) -> None:
        """Compute the names of these artists (vectorised) before :meth:`credit` asks."""
        if len(self._cache) > self._LIMIT:
            self._clear()  # bounded memory: names are recomputed, never remembered
        todo = np.unique(artist)
        todo = todo[[int(a) not in self._cache for a in todo.tolist()]]
        if len(todo):
            self._build(todo)

    def _entry(self, artist: int, join: str) -> bytes:
        key = (artist, join)
        entry = self._joined.get(key)
        if entry is None:
            c = self._cache[artist]
            credit = ArtistCredit(c.name, c.id, c.sort_name, join) if join else c
            entry = self._joined[key] = _ENCODER.encode(credit)
        return entry

    def name(self, artist: int) -> str:
        return self._cache[artist].name

    def credit_json(self, people: Sequence[int], featuring: bool = False) -> msgspec.Raw:
        """A credit as a JSON array, in order: "A", "A & B", "A, B & C", "A feat. B", ..."""
        if len(people) == 1:
            raw = self._solo.get(people[0])
            if raw is None:
                raw = self._solo[people[0]] = msgspec.Raw(b"[" + self._entry(people[0], "") + b"]")
            return raw
        parts = [
            self._entry(a, j) for a, j in zip(people, _joins(len(people), featuring), strict=True)
        ]
        return msgspec.Raw(b"[" + b",".join(parts) + b"]")

    def _build(self, ids: I64) -> None:
        d, u = self.draws, ids.astype(np.uint64)
        script = _artist_scripts(d, ids).tolist()
        pattern = d.below("artist.pattern", u, 100).tolist()
        first = d.bits("artist.first", u).tolist()
        last = d.bits("artist.last", u).tolist()
        with_sort = d.chance("artist.sort", u, 0.75).tolist()
        made_up = (d.bits("artist.madeup", u) >> np.uint64(34)).tolist()
        # frequent words but not the very top ("the", "you", "i"): "The Fire Foxes"
        scripts = np.asarray(script, np.int64)
        w1 = _draw_words(d, "artist.word1", u, scripts, skip=20, top=300).tolist()
        w2 = _draw_words(d, "artist.word2", u, scripts, skip=20, top=2000).tolist()
        words = _words().words
        for a, s, p, f, la, srt, mu, x1, x2 in zip(
            ids.tolist(), script, pattern, first, last, with_sort, made_up, w1, w2, strict=True
        ):
            sort_name: str | None = None
            if p < _PERSON_SHARE[s]:
                fn = names.FIRST_NAMES[s][f % len(names.FIRST_NAMES[s])]
                ln = names.LAST_NAMES[s][la % len(names.LAST_NAMES[s])]
                if s == names.CJK:
                    name = f"{ln} {fn}"  # family name first, space-separated
                elif s == names.ARABIC and p < 15:
                    name = fn  # known by one name
                else:
                    name = f"{fn} {ln}"
                    sort_name = f"{ln}, {fn}" if srt else None
            elif s == names.LATIN and p < 55:
                noun = names.BAND_NOUNS[la % len(names.BAND_NOUNS)]
                name = f"The {words[x1]} {noun}"
                sort_name = f"{words[x1]} {noun}, The" if srt else None
            elif s == names.LATIN and p < 67:
                prefix = names.ARTIST_PREFIXES[f % len(names.ARTIST_PREFIXES)]
                name = f"{prefix} {words[x2]}"
            elif s in (names.LATIN, names.LATIN_DIACRITICS) and p < 85:
                name = names.made_up_name(s, mu)  # "Motörhead"-like
            elif s == names.LATIN_DIACRITICS:
                name = f"{names.made_up_name(s, mu)} {names.made_up_name(s, mu + 1)}"
            elif s != names.LATIN and p < 75:
                name = str(words[x1])
            else:
                name = f"{words[x1]} {words[x2]}"
            self._cache[a] = ArtistCredit(name, f"syn:artist:{a}", sort_name)


@cache
def _joins(n: int, featuring: bool) -> tuple[str, ...]:
    if n == 1:
        return ("",)
    if featuring:
        return (" & ",) * (n - 2) + (" feat. ", "")
    return (", ",) * (n - 2) + (" & ", "")


# ---------------------------------------------------------------------------
# Formatting helpers (vectorised to fixed-width ASCII).


def _ascii(rows: npt.NDArray[np.uint8]) -> list[str]:
    width = rows.shape[1]
    strings: list[str] = (
        np.ascontiguousarray(rows).view(f"S{width}").ravel().astype(f"U{width}").tolist()
    )
    return strings


def _decimal(values: I64, width: int) -> npt.NDArray[np.uint8]:
    """Zero-padded decimal digits of ``values`` as an (n, width) byte array."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits: npt.NDArray[np.uint8] = _DIGITS[(values[:, None] // powers) % 10]
    return digits


def _uuids(hi: U64, lo: U64) -> list[str]:
    """Version-4-shaped UUIDs from 128 hashed bits."""
    hi = (hi & ~np.uint64(0xF000)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFF_FFFF_FFFF_FFFF)) | np.uint64(0x8000_0000_0000_0000)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = np.concatenate(
        [(hi[:, None] >> shifts) & np.uint64(15), (lo[:, None] >> shifts) & np.uint64(15)], axis=1
    )
    hexed = _HEX[nibbles.astype(np.int64)]
    dash = np.full((len(hi), 1), ord("-"), dtype=np.uint8)
    rows = np.concatenate(
        [
            hexed[:, :8],
            dash,
            hexed[:, 8:12],
            dash,
            hexed[:, 12:16],
            dash,
            hexed[:, 16:20],
            dash,
            hexed[:, 20:],
        ],
        axis=1,
    )
    return _ascii(rows)


def _upcs(d: _Draws, k: U64) -> list[str]:
    """UPC-A (12 digits) or EAN-13 codes with a correct check digit."""
    long = d.chance("album.upc.ean", k, 0.25)
    body = (d.bits("album.upc", k) >> np.uint64(8)).astype(np.int64) % 10**12
    body = np.where(long, body, body % 10**11)
    digits = (body[:, None] // 10 ** np.arange(11, -1, -1, dtype=np.int64)) % 10
    weights = np.where(np.arange(12) % 2 == 1, 3, 1)  # rightmost body digit weighs 3
    check = (10 - (digits * weights).sum(axis=1) % 10) % 10
    rows = np.concatenate([_DIGITS[digits], _DIGITS[check][:, None]], axis=1)
    full = _ascii(rows)
    return [c if lg else c[1:] for c, lg in zip(full, long.tolist(), strict=True)]


# ---------------------------------------------------------------------------
# One chunk of albums.


@dataclass
class _Chunk:
    data: bytes
    tracks: int
    albums: int
    artists: I64
    """Distinct artists credited in the chunk."""


def _album_sizes(d: _Draws, k: U64, kind: I64) -> I64:
    single = d.choice("album.size.single", k, (0.6, 0.3, 0.1)) + 1
    ep = d.below("album.size.ep", k, 4) + 4
    u1, u2 = d.unit("album.size.a", k), d.unit("album.size.b", k)
    album = 8 + np.floor(15.0 * u1 * u2).astype(np.int64)
    comp = d.below("album.size.comp", k, 19) + 12
    sizes: I64 = np.choose(kind, [album, single, ep, comp])
    return sizes


def _build_chunk(
    d: _Draws, artists: _Artists, k0: int, n_albums: int, i0: int, remaining: int
) -> _Chunk:
    # --- album shapes, cut so that the chunk ends at the requested track count
    k = np.arange(k0, k0 + n_albums, dtype=np.uint64)
    kind = d.choice("album.type", k, _ALBUM_TYPE_WEIGHTS)
    sizes = _album_sizes(d, k, kind)
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
        is_comp, d.choice("album.script", k, _SCRIPT_WEIGHTS), _artist_scripts(d, a1)
    )

    # --- tracks
    t = np.arange(i0, i0 + n, dtype=np.uint64)
    alb = np.repeat(np.arange(keep), sizes)
    pos = np.arange(n) - starts[alb]
    n_of = sizes[alb]
    disc = 1 + ((n_of > _TWO_DISCS_ABOVE) & (pos >= (n_of + 1) // 2)).astype(np.int64)
    comp_t = is_comp[alb]
    t_pool = pool[alb]
    lead = np.where(comp_t, d.zipf_pick("track.artist", t, t_pool), a1[alb])
    feat = d.chance("track.feat", t, _FEATURING)
    feat_kind = d.choice("track.feat.kind", t, (0.6, 0.25, 0.15))
    f1 = d.zipf_pick("track.feat1", t, t_pool)
    f2 = d.zipf_pick("track.feat2", t, t_pool)
    track_script = _artist_scripts(d, lead)
    track_script = np.where(comp_t, track_script, album_script[alb])
    english = (track_script != names.LATIN) & d.chance("track.english", t, 0.15)
    track_script = np.where(english, names.LATIN, track_script)

    # titles: 1-5 Zipf words, a few with a version suffix
    count = d.choice("title.words", t, (0.2, 0.35, 0.25, 0.13, 0.07)) + 1
    titles = _titles(d, "title.word", t, track_script, count)
    with_suffix = np.flatnonzero(d.chance("title.suffix", t, 0.05))
    suffix = d.below("title.suffix.kind", t, len(names.TITLE_SUFFIXES))[with_suffix]
    for i, s in zip(with_suffix.tolist(), suffix.tolist(), strict=True):
        titles[i] += names.TITLE_SUFFIXES[s]

    # durations: lognormal around 3.5 min, 1-10 min
    duration = np.clip(
        np.floor(210_000.0 * _exp(0.33 * d.normal("track.duration", t))), 60_000, 600_000
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
            [list(_padded(names.ISRC_COUNTRIES[s], 12)[j].encode()) for j in range(12)]
            for s in names.SCRIPTS
        ],
        dtype=np.uint8,
    )
    cc = cc_table[track_script, d.below("isrc.country", t, cc_table.shape[1])]
    reg_bits = d.bits("label.registrant", label.astype(np.uint64))[alb]
    reg = _ALNUM[
        ((reg_bits[:, None] >> np.array([0, 8, 16], np.uint64)) % np.uint64(36)).astype(np.int64)
    ]
    isrc_rows = np.concatenate(
        [cc, reg, _decimal(year[alb] % 100, 2), _decimal(d.below("isrc.code", t, 100_000), 5)],
        axis=1,
    )
    isrc_rows[dst] = isrc_rows[srcs]
    isrc = _isrc_texts(d, t, _ascii(isrc_rows), missing, invalid)

    # explicit flags and MusicBrainz recording ids, shared with the re-released track
    has_mbid = d.chance("track.mbid", t, 0.4)
    mb_hi, mb_lo = d.bits("track.mbid.hi", t), d.bits("track.mbid.lo", t)
    explicit_p = np.where(_explicit_genre(album_script, genre_base)[alb], 0.45, 0.08)
    explicit = np.where(d.chance("track.explicit", t, explicit_p), 1, 0)
    explicit = np.where(d.chance("track.explicit.known", t, 0.8), explicit, -1)
    for arr in (duration, has_mbid, mb_hi, mb_lo, explicit):
        arr[dst] = arr[srcs]
    empty: dict[str, str] = {}
    external_ids = [empty] * n
    rows = np.flatnonzero(has_mbid)
    for i, mbid in zip(rows.tolist(), _uuids(mb_hi[rows], mb_lo[rows]), strict=True):
        external_ids[i] = {"musicbrainz_recording": mbid}

    # listens: artist, album and track terms; popularity follows log listens
    log_listens = (
        _LOG_LISTENS
        + 2.0 * d.normal("artist.listens", lead.astype(np.uint64))
        + 0.15 * (_log2(t_pool.astype(np.float64)) - _log2(lead.astype(np.float64)))
        + (0.9 * d.normal("album.listens", k) + np.choose(kind, [0.0, 0.3, 0.0, -0.6]))[alb]
        + 1.2 * d.normal("track.listens", t)
        - 0.25 * _log2(pos.astype(np.float64) + 1.0)
        + np.where(d.chance("track.hit", t, 0.08), 1.2, 0.0)
    )
    listens = np.floor(_exp(log_listens)).astype(np.int64)
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
    album_raws = _albums(
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
        _Line(f"syn:track:{i}", ti, ar, al, dn, tn, du, po, li, isr, ex, ei)
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
    return _Chunk(_ENCODER.encode_lines(lines), n, keep, credited_ids)


_ENCODER = msgspec.json.Encoder()


def _pick_sources(
    d: _Draws, t: U64, k0: int, k: U64, alb: I64, starts: I64, eligible: Mask, dup: Mask
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
    d: _Draws, t: U64, canonical: list[str], missing: Mask, invalid: Mask
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


def _explicit_genre(script: I64, genre_base: U64) -> Mask:
    flags = np.array(
        [[g in names.EXPLICIT_GENRES for g in _genre_row(s)] for s in names.SCRIPTS], np.bool_
    )
    idx = (genre_base % np.uint64(flags.shape[1])).astype(np.int64)
    out: Mask = flags[script, idx]
    return out


def _padded(items: tuple[str, ...], width: int) -> tuple[str, ...]:
    """``items`` repeated to a fixed width (so that one modulus fits every script)."""
    return tuple(items[i % len(items)] for i in range(width))


@cache
def _genre_row(script: int) -> tuple[str, ...]:
    return _padded(names.GENRES[script], 32)


def _label_names(d: _Draws, labels: I64) -> dict[int, str]:
    u = labels.astype(np.uint64)
    script = np.where(d.chance("label.script", u, 0.1), names.LATIN_DIACRITICS, names.LATIN)
    word = (d.bits("label.word", u) >> np.uint64(40)).tolist()
    suffix = d.below("label.suffix", u, len(names.LABEL_SUFFIXES)).tolist()
    return {
        a: f"{names.made_up_name(s, w)} {names.LABEL_SUFFIXES[x]}"
        for a, s, w, x in zip(labels.tolist(), script.tolist(), word, suffix, strict=True)
    }


@cache
def _markets(script: int, first: int, count: int) -> list[str]:
    """``count`` markets of the script's region (shared list: encoded, never changed)."""
    region = names.MARKETS[script]
    return sorted({region[(first + j) % len(region)] for j in range(count)})


def _albums(
    d: _Draws,
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
    mbids = _uuids(d.bits("album.mbid.hi", k), d.bits("album.mbid.lo", k))
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
        _upcs(d, k),
        sizes.tolist(),
        (2 if n > _TWO_DISCS_ABOVE else 1 for n in sizes.tolist()),
        _images(d, k),
        _album_markets(d, k, script),
        precisions,
        _genres(d, k, script, genre_base),
        external_ids,
        strict=True,
    )
    return [msgspec.Raw(_ENCODER.encode(_Album(*row))) for row in columns]


def _album_titles(
    d: _Draws, k: U64, kind: I64, script: I64, year: I64, first_titles: list[str]
) -> list[str]:
    """Singles are named after their first track; compilations follow a few patterns."""
    count = d.choice("album.words", k, (0.4, 0.35, 0.15, 0.1)) + 1
    plain = _titles(d, "album.word", k, script, count)
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


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _release_dates(d: _Draws, k: U64, year: I64) -> tuple[list[str], list[DatePrecision | None]]:
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


def _label_texts(d: _Draws, k: U64, kind: I64, label: I64, lead_names: list[str]) -> list[str]:
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


def _images(d: _Draws, k: U64) -> list[list[_Image]]:
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
        images = [_Image(f"{_COVERS}/{h:016x}/{px}.jpg", px, px)]
        if two:
            images.append(_Image(f"{_COVERS}/{h:016x}/300.jpg", 300, 300))
        out.append(images)
    return out


def _album_markets(d: _Draws, k: U64, script: I64) -> list[list[str]]:
    count = (d.below("album.markets", k, 5) + 1).tolist()
    first = d.below("album.market0", k, 6).tolist()
    return [_markets(s, f, c) for s, f, c in zip(script.tolist(), first, count, strict=True)]


def _genres(d: _Draws, k: U64, script: I64, genre_base: U64) -> list[list[str]]:
    """0-3 genres: the artist's own first, then others of the script's region."""
    count = d.choice("album.genres", k, (0.15, 0.55, 0.22, 0.08)).tolist()
    more = d.bits("album.genre2", k).tolist()
    out = []
    for s, n, base, extra in zip(script.tolist(), count, genre_base.tolist(), more, strict=True):
        row = _genre_row(s)
        picked = (row[base % 32], row[extra % 32], row[(extra >> 8) % 32])
        out.append(list(dict.fromkeys(picked[:n])))
    return out


# ---------------------------------------------------------------------------
# Public API.


def iter_jsonl(tracks: int, seed: int, *, chunk_groups: int = CHUNK_GROUPS) -> Iterator[bytes]:
    """The catalog as JSONL byte chunks (each ends with a newline); ``b"".join`` is the file.

    ``chunk_groups`` only changes how much is generated at a time, never the bytes.
    """
    artists = _Artists(_Draws(seed))
    for k0, i0 in _plan(tracks, seed, chunk_groups):
        yield _build_chunk(
            artists.draws, artists, k0, chunk_groups * GROUP_ALBUMS, i0, tracks - i0
        ).data


def iter_track_records(tracks: int, seed: int) -> Iterator[dict[str, Any]]:
    """The catalog's records as plain dicts (decoded JSON), for tests and small tools."""
    for data in iter_jsonl(tracks, seed):
        for line in data.splitlines():
            record: dict[str, Any] = msgspec.json.decode(line)
            yield record


def _plan(tracks: int, seed: int, chunk_groups: int) -> Iterator[tuple[int, int]]:
    """(first album, first track) of each chunk; only album sizes are drawn, which is cheap."""
    if tracks < 0:
        raise ValueError(f"tracks must be >= 0, not {tracks}")
    if chunk_groups < 1:
        raise ValueError(f"chunk_groups must be >= 1, not {chunk_groups}")
    d = _Draws(seed)
    n_albums = chunk_groups * GROUP_ALBUMS
    k0 = i0 = 0
    while i0 < tracks:
        yield k0, i0
        k = np.arange(k0, k0 + n_albums, dtype=np.uint64)
        i0 += int(_album_sizes(d, k, d.choice("album.type", k, _ALBUM_TYPE_WEIGHTS)).sum())
        k0 += n_albums


def _compressed(chunk: _Chunk) -> _Chunk:
    """The chunk as one zstd frame (single-threaded zstd: the same bytes on any machine)."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return dataclasses.replace(chunk, data=cctx.compress(chunk.data))


# Worker processes keep one artist-name cache each; chunks do not depend on it.
_worker_artists: _Artists | None = None


def _worker_start(seed: int) -> None:
    global _worker_artists
    _worker_artists = _Artists(_Draws(seed))


def _worker_chunk(k0: int, i0: int, tracks: int, compress: bool) -> _Chunk:
    assert _worker_artists is not None
    d = _worker_artists.draws
    chunk = _build_chunk(d, _worker_artists, k0, CHUNK_GROUPS * GROUP_ALBUMS, i0, tracks - i0)
    return _compressed(chunk) if compress else chunk


def _chunks(tracks: int, seed: int, workers: int, compress: bool) -> Iterator[_Chunk]:
    """The chunks in order (as zstd frames if ``compress``), built here or by ``workers``."""
    plan = _plan(tracks, seed, CHUNK_GROUPS)
    pending: deque[Future[_Chunk]] = deque()
    if workers <= 1:
        # Compress in a thread: zstd releases the GIL, so it overlaps the next chunk.
        artists = _Artists(_Draws(seed))
        with ThreadPoolExecutor(1) as thread:
            for k0, i0 in plan:
                chunk = _build_chunk(
                    artists.draws, artists, k0, CHUNK_GROUPS * GROUP_ALBUMS, i0, tracks - i0
                )
                if not compress:
                    yield chunk
                    continue
                pending.append(thread.submit(_compressed, chunk))
                if len(pending) > 1:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        return
    # "spawn" rather than fork: the caller may run threads (a progress bar) that fork
    # would copy in an unknown state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _worker_start, (seed,)) as pool:
        for k0, i0 in plan:
            pending.append(pool.submit(_worker_chunk, k0, i0, tracks, compress))
            if len(pending) > 2 * workers:  # bounded memory: a few chunks in flight
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _default_workers(tracks: int) -> int:
    """Processes worth starting: none below ~10 chunks (start-up costs about 0.5 s)."""
    if tracks < 150_000:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def write_catalog(
    out: Path,
    tracks: int,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic catalog of ``tracks`` lines to ``out`` (zstd when it ends in ``.zst``).

    The file appears atomically: it is written to ``OUT.partial``, synced and renamed.
    A ``.zst`` file is a sequence of zstd frames, one per chunk of
    ``CHUNK_GROUPS * GROUP_ALBUMS`` albums, each with its content size and checksum.
    ``progress`` is called after each chunk with the number of tracks just written.
    ``workers`` processes generate and compress chunks (default: one below 150 k
    tracks, else up to 4 by CPU count); the bytes are the same for any number. They
    are started with "spawn", so a calling *script* needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    started = time.perf_counter()
    workers = _default_workers(tracks) if workers is None else workers
    partial = out.with_name(out.name + ".partial")
    n_tracks = n_albums = 0
    seen = np.zeros(1 << 12, dtype=np.bool_)
    try:
        with partial.open("wb") as raw:
            for chunk in _chunks(tracks, seed, workers, out.name.endswith(".zst")):
                raw.write(chunk.data)
                n_tracks += chunk.tracks
                n_albums += chunk.albums
                if len(chunk.artists) and chunk.artists[-1] >= len(seen):
                    grown = np.zeros(max(int(chunk.artists[-1]) + 1, 2 * len(seen)), np.bool_)
                    grown[: len(seen)] = seen
                    seen = grown
                seen[chunk.artists] = True
                if progress is not None:
                    progress(chunk.tracks)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return SynthSummary(
        tracks=n_tracks,
        albums=n_albums,
        artists=int(seen.sum()),
        bytes_written=out.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
