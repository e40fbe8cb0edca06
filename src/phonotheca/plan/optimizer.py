"""Choose a tier per track under a byte budget: the multiple-choice knapsack of the plan.

Each *item* (a track, or one group of tracks sharing an ISRC) can be kept as metadata only
(0 bytes, value 0), re-encoded to Opus (estimated size, value ``listens × opus_quality``) or
kept as its original file (its size, value ``listens``). The planner solves the LP relaxation
greedily: it takes the upper convex hull of each item's (size, value) choices, cuts it into
*steps* (metadata→opus, opus→original, or metadata→original when opus is not on the hull)
and buys steps in decreasing order of value per byte until the next step does not fit.
Within an item the steps' efficiencies decrease, so the bought steps always form a valid
choice, and the result is within one item's value of the optimum (the LP optimum is at
most the result plus a fraction of the first step not bought). A dominated choice (Opus
larger than the original, or under the hull) is never taken. The greedy stops at the first
step that does not fit instead of filling the last bytes with smaller steps: that wastes
at most one step of the budget, and a bigger budget never covers fewer listens.

Nothing is sorted globally: one pass histograms the steps' efficiencies into log-spaced
bins weighted by bytes, value and listens, which gives both the threshold bin at the budget
and the coverage curve; a second pass assigns tiers and sorts only the threshold bin
(O(N) unless a large share of all steps have the very same efficiency). Per-track work is
chunked NumPy in threads. Beyond its inputs the planner holds 5 bytes per track (float32
listens, later reused for the uint32 planned sizes, and the uint8 tier) and 16–20 bytes
per ISRC group id; bench/plan.py measures 256 M tracks in 23–40 s and 6.2 GB
peak RSS (4.35 GB of it the inputs) on 2 shared cores.

The greedy order, used to break ties, is: efficiency descending, then track index ascending
(a group's index is its representative's), then metadata→opus before opus→original.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from phonotheca.plan.model import (
    OPUS_HEADER_BYTES,
    OPUS_OGG_OVERHEAD,
    CoverageCurve,
    PlanInfeasible,
    PlanOptions,
    PlanResult,
    PlanTotals,
    Tier,
    TrackArrays,
    _opus_bytes,
    estimate_listens,
    estimate_opus_size,
)
from phonotheca.plan.sizes import format_size

__all__ = [
    "OPUS_HEADER_BYTES",
    "OPUS_OGG_OVERHEAD",
    "CoverageCurve",
    "PlanInfeasible",
    "PlanOptions",
    "PlanResult",
    "PlanTotals",
    "Tier",
    "TrackArrays",
    "estimate_listens",
    "estimate_opus_size",
    "plan_tiers",
]

_FREE = np.uint8(255)  # provisional: the optimiser chooses this track's tier
_TIER_NAMES = tuple(t.name.lower() for t in Tier)
_NBINS = 1 << 15
_BIN_SHIFT = 16


_T = TypeVar("_T")


@dataclass(eq=False)
class _Work:
    """Arrays and derived settings shared by the passes."""

    tracks: TrackArrays
    options: PlanOptions
    values: NDArray[np.float32]
    tier: NDArray[np.uint8]
    chunk: int
    workers: int
    opus_allowed: bool
    original_allowed: bool

    @property
    def n(self) -> int:
        return len(self.tier)

    def ranges(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.n, self.chunk):
            yield start, min(start + self.chunk, self.n)

    def map(self, fn: Callable[[int, int], _T]) -> Iterator[_T]:
        """Run ``fn(start, stop)`` on every chunk, in threads (NumPy releases the GIL)."""
        if self.workers <= 1 or self.n <= self.chunk:
            return (fn(a, b) for a, b in self.ranges())
        pool = ThreadPoolExecutor(self.workers)
        results = pool.map(lambda r: fn(*r), self.ranges())
        pool.shutdown(wait=False)
        return results

    def opus(self, duration: NDArray[Any]) -> NDArray[np.float64]:
        o = self.options
        if not self.opus_allowed:
            return np.zeros(len(duration))
        return _opus_bytes(duration, o.opus_kbps, o.opus_overhead, o.opus_header_bytes)

    def kept_sizes(
        self, index: slice | NDArray[np.intp], tier: NDArray[np.uint8]
    ) -> NDArray[np.float64]:
        """Bytes of the tracks at ``index`` (a chunk or a few indices) in their ``tier``."""
        t = self.tracks
        o = self.options
        size = np.zeros(len(tier))
        original = np.flatnonzero(tier == Tier.ORIGINAL)
        size[original] = np.maximum(t.original_size[index][original], 0)
        opus = np.flatnonzero(tier == Tier.OPUS)
        size[opus] = _opus_bytes(
            t.duration_s[index][opus], o.opus_kbps, o.opus_overhead, o.opus_header_bytes
        )
        if t.packed_size is not None and t.packed is not None:
            pk = t.packed[index] & ((tier == Tier.ORIGINAL) | (tier == Tier.OPUS))
            size[pk] = t.packed_size[index][pk]
        return size


@dataclass(eq=False)
class _Steps:
    """Hull steps of some free items, one row per step."""

    item: NDArray[np.intp]
    second: NDArray[np.bool_]  # opus→original
    size: NDArray[np.float64]
    value: NDArray[np.float64]
    cover: NDArray[np.float64]  # listens newly covered
    opus_delta: NDArray[np.float64]  # change of the bytes held as Opus
    tier: NDArray[np.uint8]  # tier after the step
    eff: NDArray[np.float64]
    bin: NDArray[np.intp]


def _steps(
    work: _Work,
    item: NDArray[np.intp],
    value: NDArray[Any],
    original: NDArray[Any],
    duration: NDArray[Any],
) -> _Steps:
    """Cut the upper convex hull of each item's choices into steps.

    Opus is on the hull when it is cheaper per value than the original:
    ``opus_size / (q·v) < original_size / v``, i.e. ``opus_size < q · original_size``;
    otherwise the item goes straight from metadata to original.
    """
    q = work.options.opus_quality
    v = value.astype(np.float64)
    sr = original.astype(np.float64)
    so = work.opus(duration)
    has_opus = so > 0
    if work.original_allowed:
        two = has_opus & (v > 0) & (so < q * sr)
        first_opus = two
    else:
        two = np.zeros(len(v), dtype=np.bool_)
        first_opus = np.ones(len(v), dtype=np.bool_)
    size1 = np.where(first_opus, so, sr)
    opus_v = q * v
    step_item = np.concatenate([item, item[two]])
    size = np.concatenate([size1, sr[two] - so[two]])
    gain = np.concatenate([np.where(first_opus, opus_v, v), v[two] - opus_v[two]])
    eff = gain / size
    return _Steps(
        item=step_item,
        second=np.concatenate([np.zeros(len(v), np.bool_), np.ones(int(two.sum()), np.bool_)]),
        size=size,
        value=gain,
        cover=np.concatenate([v, np.zeros(int(two.sum()))]),
        opus_delta=np.concatenate([np.where(first_opus, so, 0.0), -so[two]]),
        tier=np.concatenate(
            [
                np.where(first_opus, np.uint8(Tier.OPUS), np.uint8(Tier.ORIGINAL)),
                np.full(int(two.sum()), Tier.ORIGINAL, np.uint8),
            ]
        ),
        eff=eff,
        # For non-negative floats the IEEE bit pattern orders like the value: the top bits
        # of the float32 are a log-spaced bin (128 per power of two), no logarithm needed.
        bin=(eff.astype(np.float32).view(np.uint32) >> _BIN_SHIFT).astype(np.intp),
    )


def _chunk_steps(work: _Work, start: int, stop: int, tier: NDArray[np.uint8]) -> _Steps:
    free = np.flatnonzero(tier == _FREE)
    t = work.tracks
    return _steps(
        work,
        free + start,
        work.values[start:stop][free],
        t.original_size[start:stop][free],
        t.duration_s[start:stop][free],
    )


@dataclass(eq=False)
class _Histogram:
    """Sums over the steps of each efficiency bin, and the forced (fixed) figures."""

    size: NDArray[np.float64] = field(default_factory=lambda: np.zeros(_NBINS))
    value: NDArray[np.float64] = field(default_factory=lambda: np.zeros(_NBINS))
    cover: NDArray[np.float64] = field(default_factory=lambda: np.zeros(_NBINS))
    opus: NDArray[np.float64] = field(default_factory=lambda: np.zeros(_NBINS))
    listens_total: float = 0.0
    listens_missing: float = 0.0
    fixed_opus: float = 0.0
    fixed_original: float = 0.0
    fixed_cover: float = 0.0
    fixed_value: float = 0.0
    packed_bytes: float = 0.0
    pinned_bytes: float = 0.0
    pinned_tracks: int = 0

    def add(self, other: _Histogram) -> None:
        for name in ("size", "value", "cover", "opus"):
            getattr(self, name).__iadd__(getattr(other, name))
        for name in (
            "listens_total",
            "listens_missing",
            "fixed_opus",
            "fixed_original",
            "fixed_cover",
            "fixed_value",
            "packed_bytes",
            "pinned_bytes",
            "pinned_tracks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _histogram_chunk(work: _Work, start: int, stop: int) -> _Histogram:
    h = _Histogram()
    t = work.tier[start:stop]
    v = work.values[start:stop]
    listens = np.bincount(t, weights=v, minlength=256)  # by tier code, _FREE included
    h.listens_total = float(listens.sum())
    h.listens_missing = float(listens[Tier.MISSING])
    h.fixed_cover = float(listens[Tier.OPUS] + listens[Tier.ORIGINAL])
    h.fixed_value = float(listens[Tier.ORIGINAL] + work.options.opus_quality * listens[Tier.OPUS])
    kept = np.flatnonzero((t == Tier.OPUS) | (t == Tier.ORIGINAL))  # packed or pinned
    if len(kept):
        kept_tier = t[kept]
        size = work.kept_sizes(kept + start, kept_tier)
        h.fixed_opus = float(size[kept_tier == Tier.OPUS].sum())
        h.fixed_original = float(size[kept_tier == Tier.ORIGINAL].sum())
        pinned = kept_tier == Tier.ORIGINAL
        packed = work.tracks.packed
        if packed is not None:
            pk = packed[start:stop][kept]
            h.packed_bytes = float(size[pk].sum())
            pinned &= ~pk
        h.pinned_bytes = float(size[pinned].sum())
        h.pinned_tracks = int(np.count_nonzero(pinned))
    s = _chunk_steps(work, start, stop, t)
    for name, weights in (
        ("size", s.size),
        ("value", s.value),
        ("cover", s.cover),
        ("opus", s.opus_delta),
    ):
        setattr(h, name, np.bincount(s.bin, weights=weights, minlength=_NBINS))
    return h


def plan_tiers(
    tracks: TrackArrays,
    options: PlanOptions,
    *,
    curve_points: int = 256,
    chunk_size: int = 1 << 18,
    workers: int | None = None,
) -> PlanResult:
    """Choose a tier for every track so that the most listens are kept within the budget.

    Forced bytes come first: packed tracks keep their tier, then tracks (or groups) with
    popularity ≥ ``min_original_popularity`` and a source keep their original. The rest
    of the budget is spent by the greedy described in the module docstring. Packed tracks
    that alone pass the budget are kept and nothing more is bought (``used_bytes`` then
    exceeds ``budget``). Raises :class:`PlanInfeasible` when pinned originals do not fit
    beside the packed tracks or a pin needs an excluded tier, ``ValueError`` for
    inconsistent inputs. ``workers`` threads (default: CPUs, at
    most 4) share the chunked passes.
    """
    if curve_points < 2:
        raise ValueError("curve_points must be >= 2")
    pin = options.min_original_popularity
    if pin is not None and "original" in options.exclude_tiers:
        raise PlanInfeasible(
            f"tracks with popularity >= {pin:g} are pinned to their original, but the "
            "'original' tier is excluded: drop one of the two settings"
        )
    if pin is not None and tracks.popularity is None:
        raise ValueError("min_original_popularity needs the popularity column")
    n = len(tracks)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    values, estimated = _item_values(tracks, chunk_size)
    work = _Work(
        tracks=tracks,
        options=options,
        values=values,
        tier=np.empty(n, dtype=np.uint8),
        chunk=chunk_size,
        workers=max(1, workers),
        opus_allowed="opus" not in options.exclude_tiers,
        original_allowed="original" not in options.exclude_tiers,
    )
    representative = _prepare(work)

    hist = _Histogram()
    for part in work.map(lambda a, b: _histogram_chunk(work, a, b)):
        hist.add(part)
    fixed = int(hist.fixed_opus + hist.fixed_original)
    # Packed tracks are published and never change: if they alone take more than the
    # budget (a build whose Opus files came out larger than estimated, a smaller budget),
    # the plan keeps them, buys nothing more and says so. Only pins that cannot fit in
    # what is left make a plan impossible.
    room_for_pins = max(0, options.budget - round(hist.packed_bytes))
    if fixed > options.budget and round(hist.pinned_bytes) > room_for_pins:
        short = fixed - options.budget
        needs = []
        if hist.packed_bytes:
            needs.append(f"packed tracks need {format_size(round(hist.packed_bytes))}")
        needs.append(
            f"{hist.pinned_tracks} originals pinned by popularity >= {pin:g} "
            f"need {format_size(round(hist.pinned_bytes))}"
        )
        raise PlanInfeasible(
            f"the budget of {format_size(options.budget)} is {format_size(short)} "
            f"({short} bytes) short: {' and '.join(needs)}; raise the budget"
            " or min_original_popularity",
            shortfall=short,
        )

    # Bins in decreasing efficiency; the threshold bin is the first one that overflows.
    free_budget = float(max(0, options.budget - fixed))
    cum = np.cumsum(hist.size[::-1])
    pos = int(np.searchsorted(cum, free_budget, side="right"))
    threshold = _NBINS - 1 - pos if pos < _NBINS else -1
    above = slice(threshold + 1, None)
    spent_above = float(cum[pos - 1]) if pos > 0 else 0.0

    size_dtype = _size_dtype(tracks, options)
    if values is not tracks.listens and size_dtype == np.uint32:
        # Saves 1 GB at 256 M tracks: the last pass reads a chunk's listens, then writes
        # its planned sizes over them (the threshold bin's listens are kept aside first).
        planned: NDArray[Any] = values.view(np.uint32)
    else:
        planned = np.empty(n, dtype=size_dtype)
    bucket = list(work.map(lambda a, c: _assign_chunk(work, a, c, threshold, planned)))
    del values, work.values
    bucket_items = np.concatenate([b[0] for b in bucket] or [np.zeros(0, np.intp)])
    bucket_values = np.concatenate([b[1] for b in bucket] or [np.zeros(0, np.float32)])
    taken, split_eff, split_size = _resolve_bucket(
        work, bucket_items, bucket_values, threshold, free_budget - spent_above, planned
    )

    opus_bytes = hist.fixed_opus + float(hist.opus[above].sum()) + taken["opus"]
    total_bytes = fixed + float(hist.size[above].sum()) + taken["size"]
    value = hist.fixed_value + float(hist.value[above].sum()) + taken["value"]
    counts = np.zeros(len(Tier), dtype=np.int64)
    for part_counts in work.map(
        lambda a, b: np.bincount(work.tier[a:b], minlength=len(Tier))[: len(Tier)]
    ):
        counts += part_counts
    remaining = free_budget - spent_above - taken["size"]
    totals = PlanTotals(
        budget=options.budget,
        used_bytes=round(total_bytes),
        full_bytes=round(fixed + float(hist.size.sum())),
        bytes_by_tier={
            "metadata": 0,
            "opus": round(opus_bytes),
            "original": round(total_bytes - opus_bytes),
            "duplicate": 0,
            "missing": 0,
        },
        tracks_by_tier={name: int(c) for name, c in zip(_TIER_NAMES, counts, strict=True)},
        listens_total=hist.listens_total,
        listens_covered=hist.fixed_cover + float(hist.cover[above].sum()) + taken["cover"],
        value=value,
        value_bound=value + (split_eff * min(remaining, split_size) if split_size else 0.0),
        listens_missing=hist.listens_missing,
        marginal_value_per_gb=split_eff * 1e9,
        estimated_listens_tracks=estimated,
        packed_bytes=round(hist.packed_bytes),
        pinned_bytes=round(hist.pinned_bytes),
        pinned_tracks=hist.pinned_tracks,
    )
    return PlanResult(
        tier=work.tier,
        planned_size=planned,
        group_representative=representative,
        totals=totals,
        curve=_curve(hist, fixed, curve_points),
        options=options,
    )


def _prepare(work: _Work) -> NDArray[np.int32] | None:
    """Fold ISRC groups into items and set the tiers that are not the optimiser's choice."""
    groups = _group_tables(work)
    for _ in work.map(lambda a, b: _prepare_chunk(work, a, b, groups)):
        pass
    return None if groups is None else groups.representative


def _item_values(tracks: TrackArrays, chunk: int) -> tuple[NDArray[np.float32], int]:
    """Listens per track as float32, estimated from popularity where unknown, plus the
    tracks' bonus listens (:class:`TrackArrays`).

    Returns the caller's array itself when it is float32, complete, without bonus and no
    grouping will rewrite it (saves 1 GB at 256 M tracks); otherwise a new array.
    """
    values, estimated = _listens(tracks, chunk)
    if tracks.bonus_index is not None and tracks.bonus_listens is not None:
        if values is tracks.listens:
            values = values.copy()
        values[tracks.bonus_index] += tracks.bonus_listens.astype(np.float32)
    return values, estimated


def _listens(tracks: TrackArrays, chunk: int) -> tuple[NDArray[np.float32], int]:
    n = len(tracks)
    listens, pop = tracks.listens, tracks.popularity
    if listens is None:
        if pop is None:
            raise ValueError("give listens or popularity (or both)")
        out = np.empty(n, dtype=np.float32)
        for a in range(0, n, chunk):
            out[a : a + chunk] = estimate_listens(pop[a : a + chunk])
        return out, n
    unknown = 0
    for a in range(0, n, chunk):
        part = listens[a : a + chunk]
        unknown += len(part) - int(np.count_nonzero(np.isfinite(part) & (part >= 0)))
    if unknown and pop is None:
        raise ValueError(
            f"{unknown} tracks have no listen count (NaN or negative) and no "
            "popularity column was given to estimate them"
        )
    if not unknown and listens.dtype == np.float32 and tracks.group is None:
        return listens, 0
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, chunk):
        part = listens[a : a + chunk]
        known = np.isfinite(part) & (part >= 0)
        if pop is None or known.all():
            out[a : a + chunk] = part
        else:
            out[a : a + chunk] = np.where(known, part, estimate_listens(pop[a : a + chunk]))
    return out, unknown


@dataclass(eq=False)
class _Groups:
    """Tables indexed by ISRC group id."""

    representative: NDArray[np.int32]  # track index, -1 when no member has a source
    listens: NDArray[np.float32]  # sum over the members
    popularity: NDArray[np.float32] | None  # max over the members, for the pin


_LOW32 = np.uint64(0xFFFFFFFF)


def _group_tables(work: _Work) -> _Groups | None:
    """Pick each ISRC group's representative and sum the group's listens.

    The representative is the member already packed as opus/original (best tier, then
    lowest index) if any; else, among members not packed and with a source, the one with
    the largest original file (then the lowest index). Groups without any source have
    none: their members are all MISSING and keep their own listens.
    """
    t = work.tracks
    group = t.group
    if group is None:
        return None
    n_groups = 0
    for a, b in work.ranges():
        part = group[a:b]
        if int(part.min()) < -1:
            raise ValueError(f"group ids must be >= -1, found {int(part.min())}")
        n_groups = max(n_groups, int(part.max()) + 1)
    if n_groups == 0:
        return None
    if work.n >= 2**31 - 1:
        raise ValueError("at most 2**31 - 2 tracks are supported")
    # One pass of unbuffered ufunc.at (serial: concurrent .at on one table would race).
    # The best source is the maximum of the key (size << 32 | ~index): the largest file,
    # then the lowest index (sizes above 4 GiB rank as 4 GiB).
    best = np.zeros(n_groups, dtype=np.uint64)
    listens = np.zeros(n_groups, dtype=np.float32)
    pinning = work.options.min_original_popularity is not None and t.popularity is not None
    popularity = np.zeros(n_groups, dtype=np.float32) if pinning else None
    for a, b in work.ranges():
        g = group[a:b]
        members = np.flatnonzero(g >= 0)
        gm = g[members]
        np.add.at(listens, gm, work.values[a:b][members])
        if popularity is not None and t.popularity is not None:
            np.maximum.at(popularity, gm, t.popularity[a:b][members].astype(np.float32))
        size = t.original_size[a:b][members]
        cand = size > 0
        if t.packed is not None:
            cand &= ~t.packed[a:b][members]
        np.maximum.at(
            best, gm[cand], _rank_key(np.minimum(size[cand], 2**32 - 1), members[cand] + a)
        )
    if t.packed is not None and t.packed_tier is not None:
        published = np.zeros(n_groups, dtype=np.uint64)
        for a, b in work.ranges():
            g, tier = group[a:b], t.packed_tier[a:b]
            members = np.flatnonzero(
                (g >= 0) & t.packed[a:b] & ((tier == Tier.OPUS) | (tier == Tier.ORIGINAL))
            )
            np.maximum.at(published, g[members], _rank_key(tier[members], members + a))
        best = np.where(published > 0, published, best)
        del published
    representative = np.empty(n_groups, dtype=np.int32)
    for a in range(0, n_groups, work.chunk):
        key = best[a : a + work.chunk]
        representative[a : a + work.chunk] = np.where(key > 0, (_LOW32 - (key & _LOW32)), -1)
    return _Groups(representative=representative, listens=listens, popularity=popularity)


def _rank_key(rank: NDArray[Any], index: NDArray[np.intp]) -> NDArray[np.uint64]:
    """``rank << 32 | (2**32 - 1 - index)``: ordered by rank, then by lowest index."""
    return (rank.astype(np.uint64) << np.uint64(32)) | (_LOW32 - index.astype(np.uint64))


def _prepare_chunk(work: _Work, start: int, stop: int, groups: _Groups | None) -> None:
    """Move group listens onto representatives; set the tiers the optimiser does not
    choose (duplicate, missing, pinned, packed) and mark the others ``_FREE``."""
    t = work.tracks
    o = work.options
    tier = work.tier[start:stop]
    tier[:] = _FREE
    has_source = t.original_size[start:stop] > 0
    pop = t.popularity[start:stop] if t.popularity is not None else None
    if groups is not None and t.group is not None:
        g = t.group[start:stop]
        members = np.flatnonzero(g >= 0)
        gm = g[members]
        rep = groups.representative[gm]
        is_rep = rep == members + start
        duplicate = (rep >= 0) & ~is_rep
        values = work.values[start:stop]
        values[members[duplicate]] = 0.0
        values[members[is_rep]] = groups.listens[gm[is_rep]]
        tier[members[duplicate]] = Tier.DUPLICATE
        tier[members[rep < 0]] = Tier.MISSING
        np.copyto(tier, np.uint8(Tier.MISSING), where=(g < 0) & ~has_source)
        if groups.popularity is not None and pop is not None:
            item_pop = pop.astype(np.float32)
            item_pop[members] = groups.popularity[gm]
            pop = item_pop
    else:
        np.copyto(tier, np.uint8(Tier.MISSING), where=~has_source)
    if o.min_original_popularity is not None and pop is not None:
        np.copyto(
            tier,
            np.uint8(Tier.ORIGINAL),
            where=(tier == _FREE) & (pop >= o.min_original_popularity),
        )
    if not work.original_allowed:
        no_opus = work.opus(t.duration_s[start:stop]) == 0
        np.copyto(tier, np.uint8(Tier.METADATA), where=(tier == _FREE) & no_opus)
    if t.packed is not None and t.packed_tier is not None:
        pk = t.packed[start:stop]
        if pk.any():
            packed_tier = t.packed_tier[start:stop][pk]
            bad = (
                (packed_tier != Tier.METADATA)
                & (packed_tier != Tier.OPUS)
                & (packed_tier != Tier.ORIGINAL)
            )
            if bad.any():
                raise ValueError(
                    f"packed_tier must be 0, 1 or 2 for packed tracks; track "
                    f"{start + int(np.flatnonzero(pk)[np.argmax(bad)])} has "
                    f"{int(packed_tier[np.argmax(bad)])}"
                )
            tier[pk] = packed_tier


def _assign_chunk(
    work: _Work, start: int, stop: int, threshold: int, planned: NDArray[Any]
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Buy every step above the threshold bin; return the items with a step inside it and
    their listens (``planned`` may overwrite ``work.values``)."""
    tier = work.tier[start:stop]
    s = _chunk_steps(work, start, stop, tier)
    np.copyto(tier, np.uint8(Tier.METADATA), where=tier == _FREE)
    taken = s.bin > threshold
    first = taken & ~s.second
    tier[s.item[first] - start] = s.tier[first]
    second = taken & s.second
    tier[s.item[second] - start] = Tier.ORIGINAL
    bucket = np.unique(s.item[s.bin == threshold])
    bucket_values = work.values[bucket]
    planned[start:stop] = work.kept_sizes(slice(start, stop), tier)
    return bucket, bucket_values


def _resolve_bucket(
    work: _Work,
    items: NDArray[np.intp],
    values: NDArray[np.float32],
    threshold: int,
    room: float,
    planned: NDArray[Any],
) -> tuple[dict[str, float], float, float]:
    """Sort the threshold bin's steps and buy the longest prefix that fits in ``room``.

    Returns the bought sums, and the efficiency and size of the first step not bought.
    """
    taken = {"size": 0.0, "value": 0.0, "cover": 0.0, "opus": 0.0}
    if len(items) == 0:
        return taken, 0.0, 0.0
    t = work.tracks
    s = _steps(work, items, values, t.original_size[items], t.duration_s[items])
    keep = s.bin == threshold
    order = np.lexsort((s.second[keep], s.item[keep], -s.eff[keep]))
    size = s.size[keep][order]
    fits = np.cumsum(size) <= room
    n_taken = int(np.count_nonzero(fits))  # sizes are positive: ``fits`` is a prefix
    chosen = order[:n_taken]
    for name, array in (
        ("size", s.size),
        ("value", s.value),
        ("cover", s.cover),
        ("opus", s.opus_delta),
    ):
        taken[name] = float(array[keep][chosen].sum())
    item, tier = s.item[keep][chosen], s.tier[keep][chosen]
    first = ~s.second[keep][chosen]
    work.tier[item[first]] = tier[first]
    work.tier[item[~first]] = Tier.ORIGINAL
    bought = np.unique(item)
    planned[bought] = work.kept_sizes(bought, work.tier[bought])
    if n_taken == len(order):
        return taken, 0.0, 0.0
    split = order[n_taken]
    return taken, float(s.eff[keep][split]), float(s.size[keep][split])


def _curve(hist: _Histogram, fixed: int, points: int) -> CoverageCurve:
    """Sample the greedy coverage curve at ``points`` evenly spaced byte counts."""
    nonempty = np.flatnonzero(hist.size > 0)[::-1]
    total = hist.listens_total or 1.0
    edges_bytes = np.concatenate([[0.0, fixed], fixed + np.cumsum(hist.size[nonempty])])
    cover = np.concatenate(
        [[0.0, hist.fixed_cover], hist.fixed_cover + np.cumsum(hist.cover[nonempty])]
    )
    value = np.concatenate(
        [[0.0, hist.fixed_value], hist.fixed_value + np.cumsum(hist.value[nonempty])]
    )
    opus = np.concatenate(
        [[0.0, hist.fixed_opus], hist.fixed_opus + np.cumsum(hist.opus[nonempty])]
    )
    original = edges_bytes - opus
    x = np.linspace(0.0, float(edges_bytes[-1]), points)
    return CoverageCurve(
        bytes=x,
        listens_share=np.interp(x, edges_bytes, cover) / total,
        value_share=np.interp(x, edges_bytes, value) / total,
        opus_bytes=np.interp(x, edges_bytes, opus),
        original_bytes=np.interp(x, edges_bytes, original),
        fixed_bytes=fixed,
    )


def _size_dtype(tracks: TrackArrays, options: PlanOptions) -> type[np.unsignedinteger[Any]]:
    """uint32 when every planned size fits (always for sane audio), else uint64."""
    limit = 2**32 - 1
    arrays = [tracks.original_size] + (
        [tracks.packed_size] if tracks.packed_size is not None else []
    )
    for array in arrays:
        if array.dtype.itemsize > 4 and len(array) and int(array.max()) > limit:
            return np.uint64
    if len(tracks.duration_s):
        longest = float(np.fmax.reduce(tracks.duration_s))  # fmax skips NaN
        opus = _opus_bytes(
            np.array([longest]), options.opus_kbps, options.opus_overhead, options.opus_header_bytes
        )[0]
        if math.isfinite(opus) and opus > limit:
            return np.uint64
    return np.uint32
