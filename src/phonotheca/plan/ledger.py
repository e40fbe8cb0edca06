"""The planner's side of the catalog: read the per-track columns, write the ledger.

``plan_catalog`` is what ``phonotheca plan`` runs: read tracks with their best source
file, ISRC group and packed state into compact NumPy arrays, solve (:func:`plan_tiers`),
and replace the ledger's plan in one transaction. Tracks already packed into a published
torrent keep their ledger rows untouched (immutability).
"""

from __future__ import annotations

import itertools
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
FETCH = 200_000

_VALID_ISRC = "'[A-Z][A-Z][A-Z0-9][A-Z0-9][A-Z0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'"
# Every track, in id order, with the columns the optimiser needs.
_TRACKS_SQL = """
SELECT id, coalesce(duration_ms, 0), coalesce(listens, -1), coalesce(popularity, 0)
FROM tracks ORDER BY id
"""
# The best source file of each track that has one: lossless first, then bitrate, size.
_SOURCES_SQL = """
SELECT track_id, id, size, coalesce(duration_ms, -1) FROM (
    SELECT track_id, id, size, duration_ms,
           row_number() OVER (PARTITION BY track_id
                              ORDER BY coalesce(lossless, 0) DESC, coalesce(bitrate, 0) DESC,
                                       size DESC, id) AS rn
    FROM source_files WHERE status = 'ok' AND track_id IS NOT NULL)
WHERE rn = 1
"""
# Tracks sharing a valid ISRC (read from the ISRC index: no table scan).
_ISRC_GROUPS_SQL = f"""
WITH shared AS (
    SELECT isrc, row_number() OVER (ORDER BY isrc) AS grp FROM (
        SELECT isrc FROM tracks WHERE isrc IS NOT NULL GROUP BY isrc HAVING count(*) > 1)
    WHERE isrc GLOB {_VALID_ISRC})
SELECT t.id, s.grp FROM shared s JOIN tracks t ON t.isrc = s.isrc
"""
# Tracks sharing a MusicBrainz recording id (the same recording on several releases).
_RECORDING_GROUPS_SQL = """
WITH shared AS (
    SELECT value, row_number() OVER (ORDER BY value) AS grp FROM external_ids
    WHERE entity = 'track' AND scheme = 'musicbrainz_recording'
    GROUP BY value HAVING count(*) > 1)
SELECT e.entity_id, s.grp, coalesce(t.isrc_valid, 0)
FROM shared s JOIN external_ids e
     ON e.entity = 'track' AND e.scheme = 'musicbrainz_recording' AND e.value = s.value
JOIN tracks t ON t.id = e.entity_id
"""
# How many public playlists hold each track (docs/FORMAT.md §4.8), read from the index of
# matched entries: no table scan, and nothing at all for a catalog without playlists.
_PLAYLISTS_SQL = """
SELECT track_id, count(DISTINCT playlist_id) FROM playlist_entries
WHERE track_id IS NOT NULL GROUP BY track_id
"""
_PACKED_SQL = f"""
SELECT track_id,
       CASE tier WHEN 'opus' THEN {int(Tier.OPUS)} WHEN 'original' THEN {int(Tier.ORIGINAL)}
                 ELSE {int(Tier.METADATA)} END,
       coalesce(size, planned_size, 0)
FROM ledger WHERE status = 'packed'
"""


def _rows(conn: sqlite3.Connection, sql: str, width: int) -> NDArray[np.int64]:
    """An integer query's result as a (rows, width) array, without Python tuples per row."""
    flat = np.fromiter(itertools.chain.from_iterable(conn.execute(sql)), dtype=np.int64)
    return flat.reshape(-1, width)


def _positions(track_id: NDArray[np.int64], ids: NDArray[np.int64]) -> NDArray[np.intp]:
    """Indexes in ``track_id`` (sorted) of ``ids`` (all present)."""
    return np.searchsorted(track_id, ids)


@dataclass(frozen=True)
class CatalogTracks:
    """The catalog's tracks as the optimiser sees them, plus what maps back to rows."""

    track_id: NDArray[np.int64]
    source_file_id: NDArray[np.int64]
    """Best source file of each track, 0 when it has none."""
    arrays: TrackArrays


def read_tracks(conn: sqlite3.Connection, playlist_weight: float = 0.0) -> CatalogTracks:
    """Read every track's planning columns into compact arrays.

    A few narrow queries instead of one wide join: each reads an index or a table in
    order, and rows go straight into NumPy (about 2 s a million tracks). With a
    ``playlist_weight`` W, a track held by k public playlists gains W × k listens
    (``TrackArrays.bonus_listens``).
    """
    main = _rows(conn, _TRACKS_SQL, 4)
    track_id = np.ascontiguousarray(main[:, 0])
    n = len(track_id)
    duration = main[:, 1].astype(np.float32) / np.float32(1000)
    listens = main[:, 2].astype(np.float32)
    popularity = np.clip(main[:, 3], 0, 100).astype(np.uint8)
    del main

    size = np.zeros(n, dtype=np.int64)
    source_id = np.zeros(n, dtype=np.int64)
    src = _rows(conn, _SOURCES_SQL, 4)
    if len(src):
        at = _positions(track_id, src[:, 0])
        source_id[at] = src[:, 1]
        size[at] = src[:, 2]
        # The Opus file is made from the source: its length, when known, is the one to
        # estimate from (the catalog's may describe another edit of the recording).
        known = src[:, 3] >= 0
        duration[at[known]] = src[known, 3].astype(np.float32) / np.float32(1000)
        if size.max() >= 1 << 32:
            raise ValueError("a source file of 4 GiB or more cannot be planned (uint32 sizes)")
    del src

    # Groups: tracks of one recording. A track's key is its valid ISRC when it has one,
    # else its MusicBrainz recording id; only keys shared by several tracks make a group.
    group = np.full(n, -1, dtype=np.int64)
    isrc = _rows(conn, _ISRC_GROUPS_SQL, 2)
    if len(isrc):
        group[_positions(track_id, isrc[:, 0])] = isrc[:, 1]
    rec = _rows(conn, _RECORDING_GROUPS_SQL, 3)
    rec = rec[rec[:, 2] == 0]  # tracks with a valid ISRC are keyed by it
    if len(rec):
        offset = int(isrc[:, 1].max()) + 1 if len(isrc) else 0
        group[_positions(track_id, rec[:, 0])] = rec[:, 1] + offset
    has_group = group >= 0
    group32: NDArray[np.int32] | None = None
    if has_group.any():
        # Dense ids over the groups that still have two members or more.
        _, dense, counts = np.unique(group[has_group], return_inverse=True, return_counts=True)
        keep = counts[dense] > 1
        group[:] = -1
        idx = np.flatnonzero(has_group)[keep]
        _, dense2 = np.unique(dense[keep], return_inverse=True)
        group[idx] = dense2
        group32 = group.astype(np.int32) if keep.any() else None
    del isrc, rec

    packed = np.zeros(n, dtype=np.bool_)
    packed_tier = np.zeros(n, dtype=np.uint8)
    packed_size = np.zeros(n, dtype=np.int64)
    done = _rows(conn, _PACKED_SQL, 3)
    done = done[np.isin(done[:, 0], track_id)]
    if len(done):
        at = _positions(track_id, done[:, 0])
        packed[at] = True
        packed_tier[at] = done[:, 1]
        packed_size[at] = done[:, 2]
    any_packed = bool(packed.any())
    bonus_index = bonus = None
    if playlist_weight > 0:
        held = _rows(conn, _PLAYLISTS_SQL, 2)
        held = held[np.isin(held[:, 0], track_id)]
        bonus_index = _positions(track_id, held[:, 0])
        bonus = (held[:, 1] * playlist_weight).astype(np.float32)
    return CatalogTracks(
        track_id=track_id,
        source_file_id=source_id,
        arrays=TrackArrays(
            original_size=size.astype(np.uint32),
            duration_s=duration,
            listens=listens,
            popularity=popularity,
            group=group32,
            packed=packed if any_packed else None,
            packed_tier=packed_tier if any_packed else None,
            packed_size=packed_size.astype(np.uint32) if any_packed else None,
            bonus_index=bonus_index,
            bonus_listens=bonus,
        ),
    )


@dataclass(frozen=True)
class Published:
    """What the builds so far wrote: the bytes of the published audio and covers
    collections (metadata releases aside), and the part of them that is track files.

    The plan's budget counts track files (``PlanTotals.packed_bytes`` is
    ``track_bytes``: the real sizes of the packed files, Opus included); the tar headers
    and padding, the bags' tag files and indexes (``overhead``) and the cover art
    (``covers_bytes``) are budgeted apart, and reported here exactly.
    """

    collections: int
    track_bytes: int
    audio_bytes: int
    covers_bytes: int

    @property
    def overhead(self) -> int:
        return self.audio_bytes - self.track_bytes

    @property
    def total(self) -> int:
        return self.audio_bytes + self.covers_bytes


def read_published(conn: sqlite3.Connection) -> Published:
    """Sum the published collections (one row each) and the packed ledger rows' sizes
    (an index on status)."""
    audio, covers, count = conn.execute(
        "SELECT coalesce(sum(CASE kind WHEN 'audio' THEN payload_bytes END), 0),"
        " coalesce(sum(CASE kind WHEN 'covers' THEN payload_bytes END), 0), count(*)"
        " FROM collections WHERE status = 'published' AND kind IN ('audio', 'covers')"
    ).fetchone()
    tracks = conn.execute(
        "SELECT coalesce(sum(coalesce(size, planned_size, 0)), 0) FROM ledger"
        " WHERE status = 'packed'"
    ).fetchone()[0]
    return Published(int(count), int(tracks), int(audio), int(covers))


@dataclass
class PlanRecord:
    plan_id: int
    result: PlanResult
    tracks: int
    written: int
    published: Published
    playlist_tracks: int = 0
    """Tracks that public playlists weighed (``--playlist-weight``)."""
    playlist_listens: float = 0.0
    """The listens they added, together."""


def write_ledger(
    conn: sqlite3.Connection, tracks: CatalogTracks, result: PlanResult, settings: dict[str, Any]
) -> tuple[int, int]:
    """Replace the plan in the ledger in one transaction; return (plan id, rows written).

    Packed rows are left as they are. Every other track read gets a row: the ones the
    plan keeps (and the duplicates, which point at the track that stands for their
    group) one by one, then all the others ("skipped_budget" or "missing_source") as
    plain lists of ids.
    """
    tier = result.tier
    n = len(tier)
    rep_track = np.zeros(n, dtype=np.int64)
    if result.group_representative is not None and tracks.arrays.group is not None:
        group = tracks.arrays.group
        has = (group >= 0) & (tier == Tier.DUPLICATE)
        rep_index = result.group_representative[group[has]]
        rep_track[has] = np.where(rep_index >= 0, tracks.track_id[np.maximum(rep_index, 0)], 0)
    keep = np.ones(n, dtype=np.bool_)
    if tracks.arrays.packed is not None:
        keep &= ~tracks.arrays.packed
    has_source = tracks.arrays.original_size > 0
    default = np.where(has_source, Tier.METADATA, Tier.MISSING).astype(np.uint8)
    changed = np.flatnonzero(keep & (tier != default))
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
        # Packed rows stay; the rest of the table is dropped wholesale (SQLite truncates a
        # table deleted without WHERE) and its status index rebuilt once at the end.
        # Its counts are set below from the arrays, not by a trigger per row.
        schema.stop_ledger_counts(conn)
        conn.execute("DROP TABLE IF EXISTS temp.packed_rows")
        conn.execute(
            "CREATE TEMP TABLE packed_rows AS SELECT * FROM ledger WHERE status = 'packed'"
        )
        conn.execute("DROP INDEX IF EXISTS ledger_status")
        conn.execute("DELETE FROM ledger")
        conn.execute("INSERT INTO ledger SELECT * FROM temp.packed_rows")
        conn.execute("DROP TABLE temp.packed_rows")
        for start in range(0, len(changed), FETCH):
            part = changed[start : start + FETCH]
            conn.executemany(
                "INSERT INTO ledger(status, tier, planned_size, source_file_id, duplicate_of,"
                f" track_id, plan_id) VALUES (?, ?, ?, nullif(?, 0), nullif(?, 0), ?, {plan_id})",
                zip(
                    status_of[tier[part]].tolist(),
                    tier_of[tier[part]].tolist(),
                    result.planned_size[part].tolist(),
                    source[part].tolist(),
                    rep_track[part].tolist(),
                    tracks.track_id[part].tolist(),
                    strict=True,
                ),
            )
        # The rest, by status: ids go in as one JSON array per million, which SQLite
        # unpacks in C (a third of the time of binding them one by one).
        unchanged = keep & (tier == default)
        for status, mask in (
            ("skipped_budget", unchanged & has_source),
            ("missing_source", unchanged & ~has_source),
        ):
            ids = tracks.track_id[mask]
            for start in range(0, len(ids), 1_000_000):
                conn.execute(
                    "INSERT INTO ledger(track_id, plan_id, status, tier, planned_size)"
                    " SELECT value, ?, ?, 'metadata', 0 FROM json_each(?)",
                    (plan_id, status, json.dumps(ids[start : start + 1_000_000].tolist())),
                )
        conn.execute("CREATE INDEX ledger_status ON ledger(status)")
        _set_counts(
            conn,
            status_of,
            tier_of,
            np.bincount(tier[changed], minlength=len(Tier)),
            [
                ("skipped_budget", int((unchanged & has_source).sum())),
                ("missing_source", int((unchanged & ~has_source).sum())),
            ],
        )
        schema.restart_ledger_counts(conn)
    assert plan_id is not None
    return plan_id, int(keep.sum())


def _set_counts(
    conn: sqlite3.Connection,
    status_of: NDArray[Any],
    tier_of: NDArray[Any],
    per_tier: NDArray[np.int64],
    metadata: list[tuple[str, int]],
) -> None:
    """``ledger_counts`` after :func:`write_ledger`: the packed rows' counts stay (those
    rows did), the others are the rows just written, counted from the plan's arrays (a
    count of the ledger would read all of it again)."""
    counts: dict[tuple[str, str], int] = {}
    for code, n in enumerate(per_tier.tolist()):
        key = (str(status_of[code]), str(tier_of[code]))
        counts[key] = counts.get(key, 0) + int(n)
    for status, n in metadata:
        counts[(status, "metadata")] = counts.get((status, "metadata"), 0) + n
    conn.execute("DELETE FROM ledger_counts WHERE status <> 'packed'")
    conn.executemany(
        "INSERT INTO ledger_counts(status, tier, n) VALUES (?, ?, ?)"
        " ON CONFLICT(status, tier) DO UPDATE SET n = n + excluded.n",
        [(status, tier, n) for (status, tier), n in counts.items() if n],
    )


def plan_catalog(
    conn: sqlite3.Connection,
    options: PlanOptions,
    progress: Callable[[str], None] | None = None,
    playlist_weight: float = 0.0,
) -> PlanRecord:
    """Read, optimise, write: the whole ``phonotheca plan``.

    ``playlist_weight`` W counts each public playlist holding a track as W listens of it
    (docs/FORMAT.md §4.5); 0 leaves playlists out, and the plan is what it was without.
    """
    if playlist_weight < 0:
        raise ValueError(f"playlist_weight must be >= 0, got {playlist_weight}")
    say = progress or (lambda _msg: None)
    say("reading the catalog")
    tracks = read_tracks(conn, playlist_weight)
    say(f"optimising {len(tracks.track_id):,} tracks")
    result = plan_tiers(tracks.arrays, options)
    say("writing the ledger")
    settings: dict[str, Any] = {
        k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in asdict(options).items()
    }
    if playlist_weight:
        settings["playlist_weight"] = playlist_weight
    plan_id, written = write_ledger(conn, tracks, result, settings)
    bonus = tracks.arrays.bonus_listens
    return PlanRecord(
        plan_id,
        result,
        len(tracks.track_id),
        written,
        read_published(conn),
        playlist_tracks=0 if bonus is None else len(bonus),
        playlist_listens=0.0 if bonus is None else float(bonus.sum(dtype=np.float64)),
    )
