"""The planner's side of the catalog: read the per-track columns, write the ledger.

``plan_catalog`` is what ``phonotheca plan`` runs: read tracks with their best source
file, ISRC group and packed state into compact NumPy arrays, solve (:func:`plan_tiers`),
and replace the ledger's plan in one transaction. Tracks already packed into a published
torrent keep their ledger rows untouched (immutability).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from phonotheca.catalog import schema
from phonotheca.plan.optimizer import PlanOptions, PlanResult, Tier, TrackArrays, plan_tiers
from phonotheca.plan.report import to_json

# Ledger status and tier written for each optimiser tier.
_STATUS = {
    Tier.METADATA: ("skipped_budget", "metadata"),
    Tier.OPUS: ("planned", "opus"),
    Tier.ORIGINAL: ("planned", "original"),
    Tier.DUPLICATE: ("skipped_duplicate", "metadata"),
    Tier.MISSING: ("missing_source", "metadata"),
}
_PACKED_TIER = {"metadata": Tier.METADATA, "opus": Tier.OPUS, "original": Tier.ORIGINAL}
FETCH = 200_000

# One row per track in id order: its best source file (lossless first, then bitrate), its
# ISRC group (only ISRCs shared by several tracks form one) and what the ledger says.
_READ_SQL = """
WITH best AS (
    SELECT track_id, id, size,
           row_number() OVER (PARTITION BY track_id
                              ORDER BY coalesce(lossless, 0) DESC, coalesce(bitrate, 0) DESC,
                                       size DESC, id) AS rn
    FROM source_files WHERE status = 'ok' AND track_id IS NOT NULL
), shared AS (
    SELECT isrc, row_number() OVER (ORDER BY isrc) - 1 AS grp
    FROM tracks WHERE isrc_valid = 1 GROUP BY isrc HAVING count(*) > 1
)
SELECT t.id, coalesce(b.id, 0), coalesce(b.size, 0), coalesce(t.duration_ms, 0),
       coalesce(t.listens, -1), coalesce(t.popularity, 0), coalesce(s.grp, -1),
       l.status = 'packed', coalesce(l.tier, ''), coalesce(l.size, l.planned_size, 0)
FROM tracks t
LEFT JOIN best b ON b.track_id = t.id AND b.rn = 1
LEFT JOIN shared s ON s.isrc = t.isrc AND t.isrc_valid = 1
LEFT JOIN ledger l ON l.track_id = t.id
ORDER BY t.id
"""


@dataclass(frozen=True)
class CatalogTracks:
    """The catalog's tracks as the optimiser sees them, plus what maps back to rows."""

    track_id: NDArray[np.int64]
    source_file_id: NDArray[np.int64]
    """Best source file of each track, 0 when it has none."""
    arrays: TrackArrays


def read_tracks(conn: sqlite3.Connection) -> CatalogTracks:
    """Read every track's planning columns (bounded per-row memory: compact arrays)."""
    columns: list[list[Any]] = [[] for _ in range(10)]
    cur = conn.execute(_READ_SQL)
    while rows := cur.fetchmany(FETCH):
        for col, values in zip(columns, zip(*rows, strict=True), strict=True):
            col.append(values)

    def arr(i: int, dtype: Any) -> NDArray[Any]:
        parts = [np.array(p, dtype=dtype) for p in columns[i]]
        columns[i] = []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    track_id = arr(0, np.int64)
    source_id = arr(1, np.int64)
    size = arr(2, np.int64)
    duration = arr(3, np.float32) / np.float32(1000)
    listens = arr(4, np.float32)
    popularity = np.clip(arr(5, np.int16), 0, 100).astype(np.uint8)
    group = arr(6, np.int32)
    packed = arr(7, np.bool_)
    packed_tier_names = arr(8, object)
    packed_size = arr(9, np.int64)
    packed_tier = np.zeros(len(track_id), dtype=np.uint8)
    for name, code in _PACKED_TIER.items():
        packed_tier[packed & (packed_tier_names == name)] = code
    if size.size and size.max() >= 1 << 32:
        raise ValueError("a source file of 4 GiB or more cannot be planned (uint32 sizes)")
    # Groups must be dense for the optimiser: only the groups present, renumbered.
    if group.size and group.max() >= 0:
        present = group >= 0
        _, dense = np.unique(group[present], return_inverse=True)
        group[present] = dense.astype(np.int32)
    return CatalogTracks(
        track_id=track_id,
        source_file_id=source_id,
        arrays=TrackArrays(
            original_size=size.astype(np.uint32),
            duration_s=duration,
            listens=listens,
            popularity=popularity,
            group=group if (group >= 0).any() else None,
            packed=packed if packed.any() else None,
            packed_tier=packed_tier if packed.any() else None,
            packed_size=packed_size.astype(np.uint32) if packed.any() else None,
        ),
    )


@dataclass
class PlanRecord:
    plan_id: int
    result: PlanResult
    tracks: int
    written: int


def write_ledger(
    conn: sqlite3.Connection, tracks: CatalogTracks, result: PlanResult, settings: dict[str, Any]
) -> tuple[int, int]:
    """Replace the plan in the ledger in one transaction; return (plan id, rows written).

    Packed rows are left as they are. A duplicate points at the track that stands for
    its ISRC group (``duplicate_of``).
    """
    tier = result.tier
    rep_track = np.zeros(len(tier), dtype=np.int64)
    if result.group_representative is not None and tracks.arrays.group is not None:
        group = tracks.arrays.group
        reps = result.group_representative
        has = (group >= 0) & (tier == Tier.DUPLICATE)
        rep_index = reps[group[has]]
        rep_track[has] = np.where(rep_index >= 0, tracks.track_id[np.maximum(rep_index, 0)], 0)
    keep = np.ones(len(tier), dtype=np.bool_)
    if tracks.arrays.packed is not None:
        keep &= ~tracks.arrays.packed
    uses_source = (tier == Tier.OPUS) | (tier == Tier.ORIGINAL)
    source = np.where(uses_source, tracks.source_file_id, 0)
    status_of = np.array([_STATUS[Tier(c)][0] for c in range(len(Tier))], dtype=object)
    tier_of = np.array([_STATUS[Tier(c)][1] for c in range(len(Tier))], dtype=object)
    with schema.transaction(conn):
        plan_id = conn.execute(
            "INSERT INTO plans(created_at, budget, settings, report) VALUES (?,?,?,?)",
            (
                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                result.totals.budget,
                json.dumps(settings, sort_keys=True),
                json.dumps(to_json(result)),
            ),
        ).lastrowid
        conn.execute("DELETE FROM ledger WHERE status != 'packed'")
        idx = np.flatnonzero(keep)
        for start in range(0, len(idx), FETCH):
            part = idx[start : start + FETCH]
            conn.executemany(
                "INSERT INTO ledger(track_id, plan_id, status, tier, planned_size,"
                " source_file_id, duplicate_of)"
                " VALUES (?,?,?,?,?,nullif(?, 0),nullif(?, 0))",
                zip(
                    tracks.track_id[part].tolist(),
                    [plan_id] * len(part),
                    status_of[tier[part]].tolist(),
                    tier_of[tier[part]].tolist(),
                    result.planned_size[part].tolist(),
                    source[part].tolist(),
                    rep_track[part].tolist(),
                    strict=True,
                ),
            )
    assert plan_id is not None
    return plan_id, len(idx)


def plan_catalog(
    conn: sqlite3.Connection,
    options: PlanOptions,
    progress: Callable[[str], None] | None = None,
) -> PlanRecord:
    """Read, optimise, write: the whole ``phonotheca plan``."""
    say = progress or (lambda _msg: None)
    say("reading the catalog")
    tracks = read_tracks(conn)
    say(f"optimising {len(tracks.track_id):,} tracks")
    result = plan_tiers(tracks.arrays, options)
    say("writing the ledger")
    settings = {
        k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in asdict(options).items()
    }
    plan_id, written = write_ledger(conn, tracks, result, settings)
    return PlanRecord(plan_id, result, len(tracks.track_id), written)
