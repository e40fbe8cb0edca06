"""The build's work queue: planned ledger rows, and the file each one packs.

A track of the plan is *staged* before it is packed: an original is checked against
what the scan recorded (it must still be there, with the same bytes); an Opus track is
transcoded into ``ARCHIVE/work/build/opus/``. Staging runs in worker processes (or on
a Dask cluster): :func:`stage` takes and returns plain, picklable values, and touches
no database.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from phonotheca.build.tarvolume import member_name
from phonotheca.durable import write_atomically

if TYPE_CHECKING:
    from phonotheca.audio.loudness import Loudness

HASH_CHUNK = 1 << 20

# Extensions of original files by (container, codec) as the scan records them.
_EXTENSIONS = {
    ("flac", "flac"): "flac",
    ("ogg", "flac"): "oga",
    ("ogg", "vorbis"): "ogg",
    ("ogg", "opus"): "opus",
    ("mp3", "mp3"): "mp3",
    ("mp4", "aac"): "m4a",
    ("mp4", "alac"): "m4a",
    ("wav", "pcm_s16le"): "wav",
}


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One planned track: what to stage and what to write into its index line and tags."""

    track_id: int
    public_id: str
    popularity: int
    tier: str  # "original" or "opus"
    source_path: str
    source_size: int
    source_mtime_ns: int
    source_sha256: str | None
    source_container: str | None
    source_codec: str | None
    source_bitrate: int | None
    duration_ms: int | None
    """The source file's length as the scan measured it (never the catalog's: the index
    and the ledger give the length of the file packed)."""
    kbps: int | None
    title: str
    artists: tuple[str, ...]
    album: str | None
    track_number: int | None
    disc_number: int | None
    date: str | None
    isrc: str | None
    source_loudness: LoudnessFacts | None = None
    """What ``import files --loudness`` measured, if it did: an original whose bytes are
    as scanned is not decoded again."""


@dataclass(frozen=True, slots=True)
class LoudnessFacts:
    """A track's EBU R128 measurement as stored: levels and the gating-block histogram."""

    lufs: float | None
    true_peak: float | None
    lra: float | None
    blocks: bytes

    @classmethod
    def of(cls, loudness: Loudness) -> LoudnessFacts:
        return cls(
            loudness.integrated_lufs,
            loudness.true_peak_dbtp,
            loudness.range_lu,
            loudness.histogram,
        )


@dataclass(frozen=True, slots=True)
class Staged:
    """A staged track: the file to pack and its facts, or why it cannot be packed."""

    item: WorkItem
    path: str | None = None
    size: int = 0
    sha256: str | None = None
    codec: str | None = None
    bitrate: int | None = None
    duration_ms: int | None = None
    """Length of the file to pack: the source's for an original, the re-encode's for Opus."""
    ext: str | None = None
    loudness: LoudnessFacts | None = None
    """The source's loudness (None when its audio could not be decoded: an original is
    still packed, bit-exact)."""
    error: str | None = None
    """``error_source_missing``, ``error_source_changed`` or ``error_transcode``."""
    message: str | None = None

    @property
    def name(self) -> str:
        assert self.ext is not None
        return member_name(self.item.public_id, self.ext)


class _StagedOpus(msgspec.Struct):
    """The sidecar of a staged Opus file: what it was made from and what it is."""

    source_sha256: str
    kbps: int
    size: int
    sha256: str
    duration_ms: int
    bitrate: int
    loudness_lufs: float | None
    true_peak_dbtp: float | None
    loudness_range_lu: float | None
    loudness_blocks: bytes


def original_extension(container: str | None, codec: str | None, path: str) -> str:
    ext = _EXTENSIONS.get((container or "", codec or ""))
    if ext is None:
        suffix = Path(path).suffix.lstrip(".").lower()
        ext = suffix if suffix.isalnum() and 1 <= len(suffix) <= 16 else "bin"
    return ext


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_source(item: WorkItem) -> tuple[str | None, str | None, str | None]:
    """``(sha256, error, message)``: the source's current sha256, or why it is unusable.

    A file whose size and mtime are as scanned keeps the scan's sha256 (the copy into
    the volume checks it again); otherwise it is hashed and compared.
    """
    try:
        st = os.stat(item.source_path)
    except FileNotFoundError:
        return None, "error_source_missing", f"{item.source_path}: the source file is gone"
    except OSError as exc:
        return None, "error_source_missing", f"{item.source_path}: {exc.strerror}"
    if st.st_size != item.source_size:
        return (
            None,
            "error_source_changed",
            f"{item.source_path}: size is {st.st_size} bytes, the scan saw {item.source_size};"
            " run 'phonotheca import files' again",
        )
    if st.st_mtime_ns == item.source_mtime_ns and item.source_sha256:
        return item.source_sha256, None, None
    try:
        sha = file_sha256(item.source_path)
    except OSError as exc:
        return None, "error_source_missing", f"{item.source_path}: {exc.strerror}"
    if item.source_sha256 and sha != item.source_sha256:
        return (
            None,
            "error_source_changed",
            f"{item.source_path}: content changed since the scan (sha256 differs);"
            " run 'phonotheca import files' again",
        )
    return sha, None, None


def opus_path(staging_dir: Path, item: WorkItem, source_sha256: str) -> Path:
    key = hashlib.sha256(f"{item.public_id}\0{source_sha256}\0{item.kbps}".encode()).hexdigest()
    return staging_dir / key[:2] / f"{key}.opus"


def _measure_original(item: WorkItem, sha256: str) -> LoudnessFacts | None:
    """The original's loudness: the scan's when the bytes are those it measured, else
    decoded and measured now; None when the audio does not decode."""
    import av

    from phonotheca.audio.loudness import measure_file

    if item.source_loudness is not None and sha256 == item.source_sha256:
        return item.source_loudness
    try:
        return LoudnessFacts.of(measure_file(Path(item.source_path)))
    except (av.FFmpegError, OSError, EOFError, ValueError):
        return None


def stage(item: WorkItem, staging_dir: str) -> Staged:
    """Check and measure (original) or transcode (opus) one track; never raises for bad
    sources."""
    sha, error, message = _check_source(item)
    if error is not None or sha is None:
        return Staged(item, error=error, message=message)
    if item.tier == "original":
        return Staged(
            item,
            path=item.source_path,
            size=item.source_size,
            sha256=sha,
            codec=item.source_codec,
            bitrate=item.source_bitrate,
            duration_ms=item.duration_ms,
            ext=original_extension(item.source_container, item.source_codec, item.source_path),
            loudness=_measure_original(item, sha),
        )
    return _stage_opus(item, Path(staging_dir), sha)


def _stage_opus(item: WorkItem, staging_dir: Path, source_sha256: str) -> Staged:
    from phonotheca.audio.transcode import OpusTags, TranscodeError, transcode_to_opus

    assert item.kbps is not None
    dest = opus_path(staging_dir, item, source_sha256)
    sidecar = dest.with_suffix(".json")
    done = _read_sidecar(sidecar, dest)
    if done is None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tags = OpusTags(
            title=item.title,
            artists=item.artists,
            album=item.album,
            track_number=item.track_number,
            disc_number=item.disc_number,
            date=item.date,
            isrc=item.isrc,
            track_id=item.public_id,
        )
        try:
            result = transcode_to_opus(Path(item.source_path), dest, kbps=item.kbps, tags=tags)
        except TranscodeError as exc:
            return Staged(item, error="error_transcode", message=str(exc))
        measured = result.loudness
        assert measured is not None
        done = _StagedOpus(
            source_sha256,
            item.kbps,
            result.size,
            result.sha256,
            result.duration_ms,
            result.bitrate,
            measured.integrated_lufs,
            measured.true_peak_dbtp,
            measured.range_lu,
            measured.histogram,
        )
        write_atomically(sidecar, msgspec.json.encode(done), unique=True)
    return Staged(
        item,
        path=str(dest),
        size=done.size,
        sha256=done.sha256,
        codec="opus",
        bitrate=done.bitrate,
        duration_ms=done.duration_ms,
        ext="opus",
        loudness=LoudnessFacts(
            done.loudness_lufs, done.true_peak_dbtp, done.loudness_range_lu, done.loudness_blocks
        ),
    )


def _read_sidecar(sidecar: Path, dest: Path) -> _StagedOpus | None:
    """A finished staged file, or None (a killed transcode leaves no sidecar)."""
    try:
        done = msgspec.json.decode(sidecar.read_bytes(), type=_StagedOpus)
        if dest.stat().st_size == done.size:
            return done
    except (OSError, msgspec.DecodeError):
        pass
    return None


_ITEM_SQL = """
    SELECT l.track_id, t.public_id, coalesce(t.popularity, 0), l.tier,
           s.path, s.size, s.mtime_ns, s.sha256, s.container, s.codec, s.bitrate,
           s.duration_ms, t.title,
           (SELECT json_group_array(coalesce(ta.credited_as, ar.name))
              FROM (SELECT * FROM track_artists WHERE track_id = t.id ORDER BY position) ta
              JOIN artists ar ON ar.id = ta.artist_id),
           al.title, t.track_number, t.disc_number, al.release_date,
           CASE WHEN t.isrc_valid = 1 THEN t.isrc END,
           s.loudness_blocks IS NOT NULL, s.loudness_lufs, s.true_peak_dbtp,
           s.loudness_range_lu, s.loudness_blocks
    FROM ledger l
    JOIN tracks t ON t.id = l.track_id
    JOIN source_files s ON s.id = l.source_file_id
    LEFT JOIN albums al ON al.id = t.album_id
"""


def _item(row: tuple[object, ...], kbps: int | None) -> WorkItem:
    artists = msgspec.json.decode(str(row[13]), type=list[str]) if row[13] else []
    return WorkItem(
        track_id=int(row[0]),  # type: ignore[call-overload]
        public_id=str(row[1]),
        popularity=int(row[2]),  # type: ignore[call-overload]
        tier=str(row[3]),
        source_path=str(row[4]),
        source_size=int(row[5]),  # type: ignore[call-overload]
        source_mtime_ns=int(row[6]),  # type: ignore[call-overload]
        source_sha256=row[7],  # type: ignore[arg-type]
        source_container=row[8],  # type: ignore[arg-type]
        source_codec=row[9],  # type: ignore[arg-type]
        source_bitrate=row[10],  # type: ignore[arg-type]
        duration_ms=row[11],  # type: ignore[arg-type]
        kbps=kbps if row[3] == "opus" else None,
        title=str(row[12]),
        artists=tuple(artists),
        album=row[14],  # type: ignore[arg-type]
        track_number=row[15],  # type: ignore[arg-type]
        disc_number=row[16],  # type: ignore[arg-type]
        date=row[17],  # type: ignore[arg-type]
        isrc=row[18],  # type: ignore[arg-type]
        source_loudness=LoudnessFacts(
            row[20],  # type: ignore[arg-type]
            row[21],  # type: ignore[arg-type]
            row[22],  # type: ignore[arg-type]
            bytes(row[23]),  # type: ignore[call-overload]
        )
        if row[19]
        else None,
    )


def pending_items(
    conn: sqlite3.Connection, low: int, high: int, kbps: int | None
) -> Iterator[WorkItem]:
    """Planned, unassigned tracks of the popularity band, in pack order.

    Pack order is popularity, highest first, then public id (bytewise): the order of
    members in the volumes, fixed by the inputs alone.
    """
    rows = conn.execute(
        _ITEM_SQL + " WHERE l.status = 'planned' AND l.collection IS NULL"
        " AND l.tier IN ('original', 'opus')"
        " AND coalesce(t.popularity, 0) BETWEEN ? AND ?"
        " ORDER BY coalesce(t.popularity, 0) DESC, t.public_id",
        (low, high),
    )
    for row in rows:
        yield _item(row, kbps)


def assigned_items(conn: sqlite3.Connection, collection: str, kbps: int | None) -> list[WorkItem]:
    """The tracks a collection was given, in pack order."""
    rows = conn.execute(
        _ITEM_SQL + " WHERE l.collection = ? AND l.status = 'planned'"
        " ORDER BY coalesce(t.popularity, 0) DESC, t.public_id",
        (collection,),
    )
    return [_item(row, kbps) for row in rows]
