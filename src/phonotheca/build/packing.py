"""Pack one collection and make its torrent: one task, run in a worker or on a cluster.

The bag is written into ``torrents/<collection>.partial/``, every file hashed for the
torrent as it is written (one pass over the data); the directory is renamed into place
and then the ``.torrent`` written atomically. A task that is killed leaves at most a
``.partial`` directory, which the next attempt reuses and overwrites with the same bytes.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from phonotheca.build.bag import BagInfo, PackItem, bag_size, pack_collection, plan_payload
from phonotheca.build.index import CoverEntry, IndexEntry
from phonotheca.build.tarvolume import PackError
from phonotheca.durable import sync_directory
from phonotheca.torrents.make import assemble_torrent, write_torrent
from phonotheca.torrents.pieces import PieceHasher, piece_length_for

PARTIAL_DIR_SUFFIX = ".partial"


@dataclass(frozen=True)
class PackJob:
    """Everything a worker needs to pack a collection; plain values, picklable."""

    collection: str
    torrents_dir: str
    items: list[PackItem]
    covers: bool
    bagging_date: dt.date
    mtime: int
    volume_size: int
    hybrid: bool
    trackers: tuple[tuple[str, ...], ...] = ()
    web_seeds: tuple[str, ...] = ()
    description: str | None = None
    hash_workers: int = 2


@dataclass(frozen=True)
class PackedEntry:
    public_id: str
    volume: str
    offset: int
    length: int
    sha256: str


@dataclass(frozen=True)
class PackResult:
    """What was published, or which track stopped the pack (its source changed)."""

    collection: str
    entries: list[PackedEntry] = field(default_factory=list)
    files: int = 0
    payload_bytes: int = 0
    piece_length: int = 0
    infohash_v1: str | None = None
    infohash_v2: str | None = None
    failed_id: str | None = None
    message: str | None = None


def pack_job(job: PackJob) -> PackResult:
    """Pack, hash and publish ``job.collection``; deterministic for the same job."""
    torrents = Path(job.torrents_dir)
    final = torrents / job.collection
    partial = torrents / (job.collection + PARTIAL_DIR_SUFFIX)
    torrent_path = torrents / f"{job.collection}.torrent"
    # An earlier attempt may have got as far as the rename (and the .torrent) before it
    # was killed: the collection is not published until the catalog says so, so take the
    # directory back and write it again (the same bytes).
    if final.exists():
        if partial.exists():
            shutil.rmtree(partial)
        final.rename(partial)
    torrent_path.unlink(missing_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    entry_type = CoverEntry if job.covers else IndexEntry
    info = BagInfo(
        bagging_date=job.bagging_date,
        external_identifier=job.collection,
        external_description=job.description,
    )
    plan = plan_payload(
        job.collection, job.items, info, max_volume_size=job.volume_size, entry_type=entry_type
    )
    total = bag_size(job.collection, plan)
    piece_length = piece_length_for(total)
    by_name = {item.name: item for item in job.items}
    by_path = {str(item.data): item for item in job.items if isinstance(item.data, Path)}
    try:
        with PieceHasher(piece_length, hybrid=job.hybrid, workers=job.hash_workers) as hasher:
            packed = pack_collection(
                partial,
                job.collection,
                job.items,
                info=info,
                mtime=job.mtime,
                max_volume_size=job.volume_size,
                sink=hasher,
                entry_type=entry_type,
            )
            hashes = hasher.finish()
    except PackError as exc:
        if exc.member is None or exc.member not in by_name:
            raise
        return PackResult(job.collection, failed_id=by_name[exc.member].public_id, message=str(exc))
    except FileNotFoundError as exc:
        item = by_path.get(str(exc.filename))
        if item is None:
            raise
        return PackResult(
            job.collection, failed_id=item.public_id, message=f"{exc.filename}: the file is gone"
        )
    if not packed.torrent_order:  # every sha256 is known up front, so this cannot happen
        raise PackError(f"{job.collection}: files were not written in torrent order")
    torrent = assemble_torrent(
        hashes, job.collection, trackers=job.trackers, web_seeds=job.web_seeds
    )
    assert torrent.total_size == total, "bag size drift"
    os.replace(partial, final)
    sync_directory(torrents)
    write_torrent(torrent, torrent_path)
    return PackResult(
        job.collection,
        entries=[PackedEntry(e.id, e.volume, e.offset, e.length, e.sha256) for e in packed.entries],
        files=len(packed.files),
        payload_bytes=total,
        piece_length=piece_length,
        infohash_v1=torrent.infohash_v1,
        infohash_v2=torrent.infohash_v2,
    )
