"""Files that survive a crash: written whole or not at all, renames that stick.

Every small file Phonotheca writes (sidecars, listings, ``.torrent`` files, mirror state)
goes through :func:`write_atomically` (a large one, written as a stream, through
:func:`atomic_file`): a reader, or a run after ``kill -9`` or a power cut, sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def sync_directory(path: Path) -> None:
    """fsync a directory so that renames in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, unique: bool = False) -> None:
    """Write ``data`` to ``path``: ``<name>.partial``, fsync, rename, fsync the directory.

    The parent directory is created when missing. On failure (disk full, ...) the partial
    file is removed and ``path`` is left as it was. With ``unique``, the partial file's
    name carries the process and thread, for files that several writers may produce at
    once (the last rename wins; each wrote the whole file).
    """
    with atomic_file(path, unique=unique) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, *, unique: bool = False) -> Iterator[BinaryIO]:
    """A file to write ``path`` through, as :func:`write_atomically` does, for files too
    large to hold in memory: it appears at ``path`` (fsynced, renamed, directory fsynced)
    only when the block ends without an exception; otherwise nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".{os.getpid()}.{threading.get_ident()}.partial" if unique else ".partial"
    partial = path.with_name(path.name + suffix)
    try:
        with open(partial, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_files(root: Path) -> int:
    """fsync every regular file under ``root`` (recursively, symlinks followed); return
    how many.

    fsync on any descriptor of a file writes all its dirty pages, those another writer
    (libtorrent, through its own descriptors or a shared mapping) left in the page cache
    included. Missing ``root``: nothing to do.
    """
    count = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue  # never open a FIFO or a device
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # removed meanwhile (a repair replaced it)
                continue
            try:
                os.fsync(fd)
                count += 1
            finally:
                os.close(fd)
    return count
