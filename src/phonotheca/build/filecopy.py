"""Copy file data inside the kernel, and start writing it back to disk early.

Packing copies every source byte into a tar volume and hashes it three times (member
SHA-256, volume SHA-256, torrent pieces). Copying with ``read``/``write`` moves each byte
through a user-space buffer twice; ``copy_file_range`` (or ``sendfile``) copies page
cache to page cache, and on a filesystem with reflinks (Btrfs, XFS, ZFS 2.2) shares the
blocks instead. The hashers then read the volume's pages through a read-only mapping,
so they hash exactly what landed in the volume, without another copy.

``start_writeback`` asks the kernel to begin writing a range back now
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux), so the ``fsync`` that ends a
volume finds little left to do and dirty pages do not pile up across a build.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from collections.abc import Callable
from typing import cast

_UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ETXTBSY, errno.EBADF}
)
_SYNC_FILE_RANGE_WRITE = 2


class _Methods:
    """Which kernel copy works here; a method that failed as unsupported is not retried."""

    copy_file_range = hasattr(os, "copy_file_range")
    sendfile = hasattr(os, "sendfile")


def copy_range(src_fd: int, dst_fd: int, count: int) -> int | None:
    """Copy up to ``count`` bytes from ``src_fd``'s position to ``dst_fd``'s, advancing
    both; return the bytes copied (0 at the end of the source), or None when the kernel
    cannot copy between these two files (the caller copies through user space)."""
    if _Methods.copy_file_range:
        try:
            return os.copy_file_range(src_fd, dst_fd, count)
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            _Methods.copy_file_range = False
    if _Methods.sendfile:
        try:
            # sendfile reads from the source's position (advancing it) when offset is None.
            return os.sendfile(dst_fd, src_fd, None, count)
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            _Methods.sendfile = False
    return None


def map_range(fd: int, offset: int, length: int) -> memoryview:
    """A read-only view of ``length`` bytes at ``offset`` in a file opened for reading.

    The mapping starts on the page boundary below ``offset`` and lives as long as the view
    (or a slice of it) does: hand slices to other threads and drop them when done.
    """
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(
        fd,
        offset + length - start,
        flags=mmap.MAP_SHARED,
        prot=mmap.PROT_READ,
        offset=start,
    )
    return memoryview(mapped)[offset - start :]


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], fn)


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a file back to disk, without waiting (a hint only: the
    ``fsync`` that follows is what makes the data durable)."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
