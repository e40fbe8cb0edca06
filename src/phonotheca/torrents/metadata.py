"""The metadata release: the catalog, minus the operator's own data, as a torrent of its own.

``<archive>_metadata_<seq:04d>/`` holds ``catalog-release.sqlite3.zst`` (the released
catalog, :mod:`phonotheca.catalog.release_db`: canonical, with nothing a reader can
derive), ``tracks.locator`` (where each packed track is, :mod:`phonotheca.torrents.locator`)
and ``FORMAT.md``, the specification a reader needs. The catalog is copied with SQLite's
backup API (a consistent snapshot while imports may run) and scrubbed of everything that
is only the operator's (:data:`SCRUB`); the released catalog is written from that copy and
compressed as one zstd frame with long-distance matching. A release is immutable: a new
one is made only when the released catalog differs from the last release's
(:func:`content_hash`), and the older one is then marked obsolete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

import phonotheca
from phonotheca.archive import Archive
from phonotheca.catalog import schema
from phonotheca.catalog.release_db import write_release
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.locator_catalog import build_locator
from phonotheca.torrents.make import Torrent, make_torrent, write_torrent

CATALOG_FILE = "catalog-release.sqlite3.zst"
"""The released catalog (:mod:`phonotheca.catalog.release_db`), zstd-compressed. Named
apart from format 1's ``catalog.sqlite3.zst`` so that a mirror from before refuses it."""
LEVEL = 9
"""zstd level of the release: long-distance matching finds most of what -19 would; -19
runs ~10x slower (days for a 256 M-track release on two cores)."""
WINDOW_LOG = 27
"""zstd window of the release (128 MiB): the largest any decoder accepts by default."""
FORMAT_FILE = "FORMAT.md"
HASH_KEY = "publish.metadata_hash"
"""``meta`` key: content hash of the latest metadata release (not part of the hash)."""

SCRUB: tuple[tuple[str, str], ...] = (
    (
        "source_files: path (replaced by 'redacted/<id>', the column is NOT NULL UNIQUE),"
        " mtime_ns (0), error (may quote paths), scanned_at",
        "UPDATE source_files SET path = 'redacted/' || id, mtime_ns = 0, error = NULL,"
        " scanned_at = NULL",
    ),
    (
        "imports: path of the input file or scanned folder (''), rejects_file, rejects_bytes",
        "UPDATE imports SET path = '', rejects_file = NULL, rejects_bytes = 0",
    ),
    (
        "meta: the publisher's bookkeeping (keys starting with 'publish.')",
        "DELETE FROM meta WHERE key LIKE 'publish.%'",
    ),
)
"""What the published catalog leaves out, with the SQL that does it. Never in the catalog
at all: ``state.sqlite3`` (users), ``rejects/``, ``work/``, ``blobs/`` (cover images are
published in covers collections), ``phonotheca.toml``."""


class MetadataError(Exception):
    """The metadata release cannot be made (FORMAT.md missing, a file in the way, ...)."""


@dataclass(frozen=True)
class MetadataRelease:
    """The current metadata release and whether this run made it."""

    name: str
    seq: int
    created: bool
    content_hash: str
    torrent: Path


def metadata_name(archive_name: str, seq: int) -> str:
    return f"{archive_name}_metadata_{seq:04d}"


def format_doc() -> Path:
    """``FORMAT.md``: package data when installed from a wheel, else the repository's docs/."""
    packaged = importlib.resources.files(phonotheca).joinpath(FORMAT_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    repo = Path(phonotheca.__file__).resolve().parents[2] / "docs" / FORMAT_FILE
    if repo.is_file():
        return repo
    raise MetadataError(
        f"cannot find {FORMAT_FILE} (neither package data nor {repo}): reinstall phonotheca"
    )


def snapshot_catalog(catalog_path: Path, dest: Path) -> None:
    """A consistent, scrubbed copy of the catalog at ``dest`` (rollback journal), from
    which the release is written (:func:`phonotheca.catalog.release_db.write_release`)."""
    source = schema.connect(catalog_path, readonly=True)
    target = sqlite3.connect(dest)
    try:
        # One step: the copy is of a single read transaction, whatever writers do meanwhile.
        source.backup(target)
        target.isolation_level = None
        target.execute("PRAGMA journal_mode=DELETE")
        target.execute("BEGIN IMMEDIATE")
        for _, sql in SCRUB:
            target.execute(sql)
        target.execute("COMMIT")
    finally:
        target.close()
        source.close()


def content_hash(release: Path) -> str:
    """SHA-256 of the released catalog's bytes: canonical, so two catalogs with the same
    content hash alike whatever their history."""
    h = hashlib.sha256()
    with open(release, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def compress_release(source: Path, out: BinaryIO, *, level: int, threads: int) -> None:
    """``source`` as one zstd frame with long-distance matching (:data:`WINDOW_LOG`), the
    same bytes every time: fixed parameters, no timestamps, and zstd's multi-threaded
    output does not depend on the number of threads (1 or more)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        window_log=WINDOW_LOG,
        enable_ldm=True,
        threads=max(1, threads),
        write_checksum=True,
        write_content_size=True,
    )
    cctx = zstandard.ZstdCompressor(compression_params=params)
    with open(source, "rb") as src:
        cctx.copy_stream(src, out, size=source.stat().st_size)


def release_metadata(
    archive: Archive,
    conn: sqlite3.Connection,
    *,
    now: dt.datetime,
    level: int = LEVEL,
    threads: int = 2,
) -> MetadataRelease:
    """Make a new metadata release when the catalog changed since the last one.

    ``conn`` is a writable catalog connection: the release is recorded in ``collections``
    (kind ``metadata``) and older ones are marked obsolete, in one transaction, after the
    files are in place. A crash before that leaves an unlisted directory that the next
    run replaces.
    """
    settings = archive.settings
    work = archive.work_dir / f"metadata-{os.getpid()}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        snapshot = work / "catalog.sqlite3"
        snapshot_catalog(archive.catalog_path, snapshot)
        released = work / "release.sqlite3"
        write_release(snapshot, released)
        digest = content_hash(released)
        check = sqlite3.connect(f"{released.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tracks = int(check.execute("SELECT count(*) FROM tracks").fetchone()[0])
        finally:
            check.close()
        latest = conn.execute(
            "SELECT name, seq FROM collections WHERE kind = 'metadata' AND status = 'published'"
            " ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        torrents_dir = archive.torrents_dir
        if (
            latest is not None
            and schema.get_meta(conn, HASH_KEY) == digest
            and (torrents_dir / f"{latest[0]}.torrent").is_file()
        ):
            name, seq = str(latest[0]), int(latest[1])
            return MetadataRelease(name, seq, False, digest, torrents_dir / f"{name}.torrent")
        seq = 1 + int(
            conn.execute(
                "SELECT coalesce(max(seq), 0) FROM collections WHERE kind = 'metadata'"
            ).fetchone()[0]
        )
        name = metadata_name(settings.name, seq)
        payload = work / name
        payload.mkdir()
        with open(payload / CATALOG_FILE, "wb") as out:
            compress_release(released, out, level=level, threads=threads)
            out.flush()
            os.fsync(out.fileno())
        shutil.copyfile(format_doc(), payload / FORMAT_FILE)
        build_locator(snapshot, payload / LOCATOR_FILE)
        snapshot.unlink()
        released.unlink()
        torrent = make_torrent(
            payload,
            hybrid=settings.build.torrent_format == "hybrid",
            trackers=settings.torrents.trackers,
            web_seeds=settings.torrents.web_seeds,
            workers=threads,
        )
        _install(payload, torrent, torrents_dir)
        _record(conn, name, seq, tracks, torrent, settings.build.torrent_format, digest, now)
        return MetadataRelease(name, seq, True, digest, torrents_dir / f"{name}.torrent")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(payload: Path, torrent: Torrent, torrents_dir: Path) -> None:
    """Move the finished payload into ``torrents/`` and write its ``.torrent`` beside it."""
    torrents_dir.mkdir(parents=True, exist_ok=True)
    final = torrents_dir / payload.name
    torrent_path = torrents_dir / f"{payload.name}.torrent"
    if final.exists() or torrent_path.exists():
        # Left by a run that crashed before recording it: never listed, so never seeded.
        shutil.rmtree(final, ignore_errors=True)
        torrent_path.unlink(missing_ok=True)
    os.replace(payload, final)
    write_torrent(torrent, torrent_path)


def _record(
    conn: sqlite3.Connection,
    name: str,
    seq: int,
    tracks: int,
    torrent: Torrent,
    torrent_format: str,
    digest: str,
    now: dt.datetime,
) -> None:
    with schema.transaction(conn):
        conn.execute("UPDATE collections SET obsolete = 1 WHERE kind = 'metadata'")
        conn.execute(
            "INSERT INTO collections(name, kind, seq, status, items, files, payload_bytes,"
            " torrent_format, piece_length, infohash_v1, infohash_v2, built_at, obsolete)"
            " VALUES (?, 'metadata', ?, 'published', ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                name,
                seq,
                tracks,
                len(torrent.files),
                torrent.total_size,
                torrent_format,
                torrent.piece_length,
                torrent.infohash_v1,
                torrent.infohash_v2,
                now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        )
        schema.set_meta(conn, HASH_KEY, digest)
