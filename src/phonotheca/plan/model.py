"""The planner's data: tiers, inputs, options and results (see :mod:`.optimizer`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

OPUS_OGG_OVERHEAD = 0.008
"""Ogg framing as a share of the Opus payload.

Opus packets are 20 ms (50 a second). At ~75 kbit/s a packet is ~188 bytes and needs one
Ogg lacing byte, and encoders close a 27-byte page header about once a second, so Ogg adds
about (50 + 27) / 9375 ≈ 0.8 % on top of the audio bytes.
"""

OPUS_HEADER_BYTES = 4096
"""Fixed bytes per Opus file: the OpusHead page (47 bytes), the OpusTags page (vendor string,
title, artists, album, ISRC: usually well under 1 KiB) and a margin for longer tags."""


_ALLOWED_EXCLUSIONS = frozenset({"opus", "original"})


class Tier(IntEnum):
    """Per-track tier code, stored as ``uint8``."""

    METADATA = 0
    """Metadata only: skipped for the budget, excluded tiers, or no usable duration."""
    OPUS = 1
    """Re-encoded to Ogg Opus."""
    ORIGINAL = 2
    """The best source file, bit-exact."""
    DUPLICATE = 3
    """Same ISRC group as another track: covered by whatever tier its representative got."""
    MISSING = 4
    """No source file: can only be metadata (nothing to keep or to encode from)."""


class PlanInfeasible(ValueError):
    """The constraints cannot be met: forced bytes exceed the budget, or a pin needs an
    excluded tier. ``shortfall`` is the number of bytes missing (0 for a conflict)."""

    def __init__(self, message: str, shortfall: int = 0) -> None:
        super().__init__(message)
        self.shortfall = shortfall


@dataclass(frozen=True, slots=True, eq=False)
class TrackArrays:
    """Per-track columns of the catalog, all 1-D and of the same length.

    - ``original_size``: bytes of the track's best source file; 0 or negative = no source.
    - ``duration_s``: duration in seconds; 0, negative or NaN = unknown (no Opus estimate).
    - ``listens``: listen counts; NaN, ±inf or negative = unknown, estimated from
      ``popularity`` with :func:`estimate_listens`.
    - ``popularity``: 0–100; needed when listens are unknown or for the popularity pin.
    - ``group``: ISRC group id per track, ``-1`` = unique. Ids should be dense (0..G-1):
      the planner allocates about 10 bytes per possible id.
    - ``packed``, ``packed_tier``, ``packed_size``: tracks already in a published torrent
      keep ``packed_tier``; their bytes (``packed_size``, or the estimate of that tier when
      omitted) count against the budget first.
    - ``bonus_index``, ``bonus_listens``: listens added to the tracks at these indexes
      (distinct) once their own are known or estimated: what their appearances in public
      playlists are worth (``plan --playlist-weight``). Sparse: only those tracks.

    Compact dtypes keep 256 M tracks in memory: ``uint32`` sizes, ``float32`` durations and
    listens, ``uint8`` popularity and tiers, ``int32`` groups.
    """

    original_size: NDArray[np.integer[Any]]
    duration_s: NDArray[Any]
    listens: NDArray[Any] | None = None
    popularity: NDArray[Any] | None = None
    group: NDArray[np.integer[Any]] | None = None
    packed: NDArray[np.bool_] | None = None
    packed_tier: NDArray[np.integer[Any]] | None = None
    packed_size: NDArray[np.integer[Any]] | None = None
    bonus_index: NDArray[np.integer[Any]] | None = None
    bonus_listens: NDArray[Any] | None = None

    def __post_init__(self) -> None:
        if (self.bonus_index is None) != (self.bonus_listens is None) or (
            self.bonus_index is not None
            and self.bonus_listens is not None
            and len(self.bonus_index) != len(self.bonus_listens)
        ):
            raise ValueError("bonus_index and bonus_listens go together, of the same length")
        n = len(self.original_size)
        kinds = {
            "original_size": "iu",
            "duration_s": "iuf",
            "listens": "iuf",
            "popularity": "iuf",
            "group": "iu",
            "packed": "b",
            "packed_tier": "iu",
            "packed_size": "iu",
        }
        for name, allowed in kinds.items():
            array = getattr(self, name)
            if array is None:
                continue
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                raise ValueError(f"{name} must be a 1-D NumPy array")
            if array.dtype.kind not in allowed:
                raise ValueError(f"{name} has dtype {array.dtype}; expected kind {allowed!r}")
            if len(array) != n:
                raise ValueError(f"{name} has {len(array)} rows, original_size has {n}")
        if (self.packed is None) != (self.packed_tier is None):
            raise ValueError("packed and packed_tier must be given together")
        if self.packed_size is not None and self.packed is None:
            raise ValueError("packed_size needs packed and packed_tier")

    def __len__(self) -> int:
        return len(self.original_size)


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """What the plan may spend and choose.

    ``budget`` is in bytes. ``min_original_popularity`` pins tracks (or ISRC groups) whose
    popularity is at least this value to their original file. ``exclude_tiers`` removes
    ``"opus"`` and/or ``"original"`` from the choices of tracks not yet packed.
    """

    budget: int
    opus_kbps: float = 75.0
    opus_quality: float = 0.95
    min_original_popularity: float | None = None
    exclude_tiers: frozenset[str] = frozenset()
    opus_overhead: float = OPUS_OGG_OVERHEAD
    opus_header_bytes: int = OPUS_HEADER_BYTES

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0 bytes, got {self.budget}")
        if not 0.0 < self.opus_quality <= 1.0:
            raise ValueError(f"opus_quality must be in (0, 1], got {self.opus_quality}")
        if not self.opus_kbps > 0:
            raise ValueError(f"opus_kbps must be > 0, got {self.opus_kbps}")
        if self.opus_overhead < 0 or self.opus_header_bytes < 0:
            raise ValueError("opus_overhead and opus_header_bytes must be >= 0")
        unknown = set(self.exclude_tiers) - _ALLOWED_EXCLUSIONS
        if unknown:
            raise ValueError(
                f"cannot exclude tier(s) {sorted(unknown)}: "
                f"only 'opus' and 'original' can be excluded"
            )


@dataclass(frozen=True, slots=True, eq=False)
class CoverageCurve:
    """Share of listens kept against bytes, along the greedy order.

    Forced bytes (packed tracks and popularity pins) come first, drawn as one straight
    segment from (0, 0); then the free steps in greedy order. The planner knows the curve
    exactly at every histogram-bin edge (bins are 0.5 % wide in efficiency); the
    ``points`` evenly spaced samples interpolate linearly between those edges, so between
    edges they can exceed the integer greedy by at most one step. ``opus_bytes`` and
    ``original_bytes`` split ``bytes`` by tier at each point.
    """

    bytes: NDArray[np.float64]
    listens_share: NDArray[np.float64]
    value_share: NDArray[np.float64]
    opus_bytes: NDArray[np.float64]
    original_bytes: NDArray[np.float64]
    fixed_bytes: int


@dataclass(frozen=True, slots=True)
class PlanTotals:
    """Figures of a plan; listens are float sums, bytes exact integers.

    ``value`` is quality-weighted listens (Opus counts ``opus_quality``), ``value_bound``
    the LP-relaxation optimum, an upper bound on any plan's value. ``marginal_value_per_gb``
    is the value per GB (10⁹ bytes) of the next step the budget could not buy (0 when
    everything fits): what adding storage would bring.
    """

    budget: int
    used_bytes: int
    full_bytes: int
    bytes_by_tier: dict[str, int]
    tracks_by_tier: dict[str, int]
    listens_total: float
    listens_covered: float
    value: float
    value_bound: float
    listens_missing: float
    marginal_value_per_gb: float
    estimated_listens_tracks: int
    packed_bytes: int
    pinned_bytes: int
    pinned_tracks: int

    @property
    def listens_share(self) -> float:
        """Share of all listens whose track is kept in some tier."""
        return self.listens_covered / self.listens_total if self.listens_total else 0.0

    @property
    def value_share(self) -> float:
        """Quality-weighted share of all listens."""
        return self.value / self.listens_total if self.listens_total else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class PlanResult:
    """Per-track tiers (:class:`Tier` codes) and planned bytes, totals and coverage curve.

    ``group_representative[g]`` is the index of the track that stands for ISRC group ``g``
    (-1 when no member has a source), or ``None`` without groups.
    """

    tier: NDArray[np.uint8]
    planned_size: NDArray[np.unsignedinteger[Any]]
    group_representative: NDArray[np.int32] | None
    totals: PlanTotals
    curve: CoverageCurve
    options: PlanOptions


def estimate_listens(popularity: NDArray[Any]) -> NDArray[np.float32]:
    """Estimate listens from popularity 0–100 as ``10 ** (popularity / 20) - 1``.

    Popularity scores are roughly logarithmic in recent plays; this model gives 0 listens at
    popularity 0, ×10 listens per 20 points, ~10⁵ at 100. It is strictly increasing on
    [0, 100] (values outside are clipped). Only ratios matter to the plan, so mixing
    estimates with real counts of another scale should be avoided.
    """
    pop = np.asarray(popularity)
    if pop.dtype.kind in "iu":
        listens: NDArray[np.float32] = _LISTENS_BY_POPULARITY[np.clip(pop, 0, 100)]
        return listens
    clipped = np.clip(pop.astype(np.float64), 0.0, 100.0)
    return (np.power(10.0, clipped / 20.0) - 1.0).astype(np.float32)


_LISTENS_BY_POPULARITY = (np.power(10.0, np.arange(101) / 20.0) - 1.0).astype(np.float32)


def estimate_opus_size(
    duration_s: NDArray[Any],
    kbps: float = 75.0,
    *,
    overhead: float = OPUS_OGG_OVERHEAD,
    header_bytes: int = OPUS_HEADER_BYTES,
) -> NDArray[np.int64]:
    """Estimate Ogg Opus file sizes in bytes; 0 where the duration is unknown.

    ``bytes = header_bytes + ceil(duration_s × kbps × 1000 / 8 × (1 + overhead))``: the audio
    payload at the target bitrate, Ogg framing (:data:`OPUS_OGG_OVERHEAD`) and the fixed
    header and tag pages (:data:`OPUS_HEADER_BYTES`).
    """
    return _opus_bytes(np.asarray(duration_s), kbps, overhead, header_bytes).astype(np.int64)


def _opus_bytes(
    duration: NDArray[Any], kbps: float, overhead: float, header: int
) -> NDArray[np.float64]:
    d = duration.astype(np.float64)
    size = np.ceil(d * (kbps * 125.0 * (1.0 + overhead))) + header
    return np.where(np.isfinite(d) & (d > 0), size, 0.0)
