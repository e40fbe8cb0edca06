"""Read-only mappings of file ranges: bytes hashed where the page cache holds them.

Hashing a file through a mapping reads each byte once, from the page cache, instead of
copying it into a buffer first (``readinto`` costs about 0.05 CPU-s per GB here, 4 % of a
hybrid torrent's hashing). Both the build's tar writer (which hashes what it just copied
into a volume) and the torrent maker (which hashes files already on disk) map this way.

A mapped file must not shrink while it is read: a page past the new end raises SIGBUS.
The build maps only its own ``.partial`` volumes; the torrent maker maps the payload it
was given, which must hold still while it is hashed (as for any torrent maker).
"""

from __future__ import annotations

import mmap


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
