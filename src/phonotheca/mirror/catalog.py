"""Unpack the metadata torrent's ``catalog.sqlite3.zst`` into ``DIR/catalog.sqlite3``.

The compressed catalog is in zstd's seekable format (several frames); plain streaming
decompression reads every frame in turn. The result goes through ``.partial`` + fsync +
rename, and ``.mirror/catalog.json`` records which torrent it came from, so a restart
does not unpack it again and a newer metadata torrent replaces it.

The release's ``tracks.locator`` goes to ``DIR/tracks.locator`` first (a hard link, or a
copy where the file system has none; renamed into place as well), where a builder's
archive has it: the catalog and the locator a mirror serves are of the same release.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import zstandard

from phonotheca.durable import sync_directory
from phonotheca.mirror.state import MirrorDir, MirrorError, read_json, utc_now, write_json
from phonotheca.torrents.locator import LOCATOR_FILE

CATALOG_MEMBER = "catalog.sqlite3.zst"
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


def unpack_catalog(mirror: MirrorDir, metadata_name: str) -> Path:
    """Decompress ``torrents/<metadata_name>/catalog.sqlite3.zst`` to ``DIR/catalog.sqlite3``."""
    packed = mirror.payload(metadata_name) / CATALOG_MEMBER
    if not packed.exists():
        raise MirrorError(f"{packed}: missing from the metadata torrent {metadata_name}")
    install_locator(mirror, metadata_name)
    target = mirror.catalog
    partial = target.with_name(target.name + ".partial")
    try:
        with open(packed, "rb") as src, open(partial, "wb") as dst:
            reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
            while chunk := reader.read(CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except zstandard.ZstdError as exc:
        partial.unlink(missing_ok=True)
        raise MirrorError(f"{packed}: cannot decompress: {exc}") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MirrorError(f"{target}: cannot write the catalog: {exc.strerror}") from None
    # A reader with the old catalog open keeps its file; new readers see the new one.
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(partial, target)
    sync_directory(target.parent)
    write_json(mirror.catalog_source, {"metadata_torrent": metadata_name, "unpacked_at": utc_now()})
    return target
