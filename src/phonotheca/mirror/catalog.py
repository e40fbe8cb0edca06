"""Build ``DIR/catalog.sqlite3`` from the metadata torrent's released catalog.

The release holds only what cannot be derived (docs/FORMAT.md §12): it is decompressed
under ``.mirror/unpack/``, a full catalog is derived from it there (tables, source
records framed again, indexes, search indexes; resumable step by step), and renamed into
place. ``.mirror/catalog.json`` records which torrent it came from, so a restart does not
unpack it again and a newer metadata torrent replaces it.

The release's ``tracks.locator`` goes to ``DIR/tracks.locator`` first (a hard link, or a
copy where the file system has none; renamed into place as well), where a builder's
archive has it: the catalog and the locator a mirror serves are of the same release.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import zstandard

from phonotheca.catalog.release_db import Progress, ReleaseError, derive_catalog
from phonotheca.durable import sync_directory
from phonotheca.mirror.state import MirrorDir, MirrorError, read_json, utc_now, write_json
from phonotheca.torrents.locator import LOCATOR_FILE
from phonotheca.torrents.metadata import CATALOG_FILE

CATALOG_MEMBER = CATALOG_FILE
OLD_MEMBER = "catalog.sqlite3.zst"
"""The member of format 1 releases: refused with a message saying so."""
CHUNK = 1 << 20


def catalog_is_current(mirror: MirrorDir, metadata_name: str) -> bool:
    source = read_json(mirror.catalog_source)
    return (
        mirror.catalog.exists()
        and isinstance(source, dict)
        and source.get("metadata_torrent") == metadata_name
        # A mirror from before locators were installed has the catalog alone.
        and (mirror.locator.exists() or not (mirror.payload(metadata_name) / LOCATOR_FILE).exists())
    )


def install_locator(mirror: MirrorDir, metadata_name: str) -> Path | None:
    """Put the release's ``tracks.locator`` at ``DIR/tracks.locator`` (renamed into place,
    so a reader sees the old file or the new one); a release without one removes the old
    one, which would describe another catalog. Returns the path, or None."""
    packed = mirror.payload(metadata_name) / LOCATOR_FILE
    target = mirror.locator
    if not packed.exists():
        target.unlink(missing_ok=True)
        return None
    partial = target.with_name(target.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        try:
            os.link(packed, partial)  # no copy of a file that may be gigabytes
        except OSError:
            shutil.copyfile(packed, partial)
            with open(partial, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(partial, target)
        sync_directory(target.parent)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MirrorError(f"{target}: cannot install the track locator: {exc.strerror}") from None
    return target


def unpack_catalog(mirror: MirrorDir, metadata_name: str, progress: Progress | None = None) -> Path:
    """Build ``DIR/catalog.sqlite3`` from the release's ``catalog-release.sqlite3.zst``.

    Resumable: the decompressed release and the catalog being derived from it are kept
    under ``.mirror/unpack/`` until the catalog is in place, and a run killed meanwhile
    goes on from the step it was in (:func:`phonotheca.catalog.release_db.derive_catalog`).
    """
    packed = mirror.payload(metadata_name) / CATALOG_MEMBER
    if not packed.exists():
        old = mirror.payload(metadata_name) / OLD_MEMBER
        if old.exists():
            raise MirrorError(
                f"{old}: metadata release format 1, which this phonotheca no longer reads:"
                " the publisher must publish again with a current phonotheca"
            )
        raise MirrorError(f"{packed}: missing from the metadata torrent {metadata_name}")
    install_locator(mirror, metadata_name)
    work = mirror.state / "unpack"
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():
        if not stale.name.startswith(f"{metadata_name}."):
            # Left by an unpack of an older release (the import's work is a directory).
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    release = work / f"{metadata_name}.release.sqlite3"
    derived = work / f"{metadata_name}.catalog.sqlite3"
    if not release.exists():
        _decompress(packed, release)
    try:
        derive_catalog(release, derived, progress)
    except ReleaseError as exc:
        raise MirrorError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise MirrorError(f"{release}: cannot read the released catalog: {exc}") from None
    target = mirror.catalog
    # A reader with the old catalog open keeps its file; new readers see the new one.
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    with open(derived, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(derived, target)
    sync_directory(target.parent)
    write_json(mirror.catalog_source, {"metadata_torrent": metadata_name, "unpacked_at": utc_now()})
    release.unlink()
    return target


def _decompress(packed: Path, release: Path) -> None:
    partial = release.with_name(release.name + ".partial")
    try:
        with open(packed, "rb") as src, open(partial, "wb") as dst:
            # Not a stream reader: it ends quietly where a truncated frame stops.
            frame = zstandard.ZstdDecompressor().decompressobj()
            while chunk := src.read(CHUNK):
                dst.write(frame.decompress(chunk))
            if not frame.eof:
                raise zstandard.ZstdError("the frame is truncated")
            dst.flush()
            os.fsync(dst.fileno())
    except zstandard.ZstdError as exc:
        partial.unlink(missing_ok=True)
        raise MirrorError(f"{packed}: cannot decompress: {exc}") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MirrorError(f"{release}: cannot write the released catalog: {exc.strerror}") from None
    os.replace(partial, release)
