"""A volume's bytes in memory: read in once, then written and hashed from the same buffer.

:class:`~phonotheca.build.tarvolume.VolumeWriter` assembles headers, member data (read
from each source straight into the buffer) and padding in a :class:`Window` of
:data:`WINDOW` bytes; once full, the window is written to the volume
(:mod:`phonotheca.build.volumeio`), handed to the torrent's piece hasher as stable data
and queued to the :class:`DigestThread`, which hashes it for the volume's SHA-256 and
each member's in one pass (:mod:`phonotheca.sha256pair`) on the other core. A window
holds many small members, so a small file costs one read and no write or hand-over of
its own.

Windows are page-aligned anonymous mappings, as direct I/O wants, and are reused once
hashed and no longer seen by anyone (:meth:`Window.idle`): filling a fresh mapping costs
a page fault and the zeroing of every page (measured here: 0.85 CPU-s per GB read into
fresh 16 MiB mappings, 0.08 into reused ones), and copying each window into the piece
hasher instead cost 9 % of packing's CPU time. The digest queue holds at most
:data:`DIGEST_QUEUE` windows, the write queue :data:`WRITE_QUEUE`.
"""

from __future__ import annotations

import mmap
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from phonotheca.build.volumeio import preallocate, write_at
from phonotheca.sha256pair import Digest, update_both

WINDOW = 64 * 2**20
"""Bytes of a volume assembled, written and hashed at a time (a multiple of 512). Larger
direct writes keep the disk busier: packing 3 GB took 7.4-7.8 s with 64 MiB windows,
8.9-9.9 s with 32 MiB and 10.9-11.0 s with 16 MiB, the same CPU time. A writer holds at
most about ten windows: the one it fills, the queues', the threads' and the piece
hasher's few."""
DIGEST_QUEUE = 2
WRITE_QUEUE = 2


@dataclass(eq=False)
class Window:
    """Bytes ``start .. start + fill`` of a volume, in a buffer of their own."""

    start: int = 0
    size: int = field(default_factory=lambda: WINDOW)
    fill: int = 0
    members: list[tuple[Digest, int, int]] = field(default_factory=list)
    """Member digests and the ranges of the window they cover, in order."""
    checks: list[Callable[[], None]] = field(default_factory=list)
    """Run once the window is hashed (a member's digest against the ledger's)."""
    buffer: mmap.mmap = field(init=False)
    view: memoryview = field(init=False)
    """The writer's own view, to fill the window and hash it."""
    _idle_refs: int = field(init=False)

    def __post_init__(self) -> None:
        self.buffer = mmap.mmap(-1, self.size)
        self.view = memoryview(self.buffer)
        self._idle_refs = sys.getrefcount(self.buffer)

    def lend(self) -> memoryview:
        """A view of the filled bytes for someone who may keep it (or slices of it): the
        window is not reused before every such view is gone."""
        return memoryview(self.buffer)[: self.fill]

    def idle(self) -> bool:
        """Whether no view from :meth:`lend` is left: each holds one reference to the
        buffer (CPython's count; the writer's own view is counted in ``_idle_refs``)."""
        return sys.getrefcount(self.buffer) == self._idle_refs

    def reset(self, start: int) -> Window:
        """Empty the window for volume bytes from ``start`` on."""
        self.start, self.fill = start, 0
        self.members.clear()
        self.checks.clear()
        return self

    @property
    def space(self) -> int:
        return self.size - self.fill

    def put(self, data: bytes | memoryview, member: Digest | None = None) -> int:
        """Copy as much of ``data`` as fits; return the bytes taken."""
        n = min(len(data), self.space)
        self.view[self.fill : self.fill + n] = data[:n]
        self.took(n, member)
        return n

    def zeros(self, n: int) -> int:
        """Up to ``n`` zero bytes, as many as fit; return the bytes taken."""
        n = min(n, self.space)
        self.view[self.fill : self.fill + n] = bytes(n)
        self.took(n)
        return n

    def took(self, n: int, member: Digest | None = None) -> None:
        """Count ``n`` bytes just placed at ``fill``, as ``member``'s data if given."""
        if member is not None and n:
            if self.members and self.members[-1][0] is member and self.members[-1][2] == self.fill:
                self.members[-1] = (member, self.members[-1][1], self.fill + n)
            else:
                self.members.append((member, self.fill, self.fill + n))
        self.fill += n


class DigestThread:
    """Hashes windows in order for the volume's and members' SHA-256, on a thread of its own.

    The hashes release the GIL, so the writer's thread reads, writes and feeds the piece
    hasher meanwhile. Windows are hashed strictly in the order queued, so a member's check,
    attached to the window that holds its last byte, sees the whole member.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Digest, Window] | None] = queue.Queue(DIGEST_QUEUE)
        self._hashed: deque[Window] = deque()
        self._thread = threading.Thread(target=self._run, name="tar-digest", daemon=True)
        self._thread.start()

    def hash(self, volume: Digest, window: Window) -> None:
        """Hash ``window`` (the caller does not touch it again) into ``volume``'s digest
        and its members'."""
        self._queue.put((volume, window))

    def window(self, start: int) -> Window:
        """An empty window for volume bytes from ``start`` on: a hashed one nobody holds
        any more, or a new one."""
        for _ in range(len(self._hashed)):
            window = self._hashed.popleft()
            if window.idle():
                return window.reset(start)
            self._hashed.append(window)
        return Window(start)

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                volume, window = item
                view = window.view
                done = 0
                for member, start, end in window.members:
                    volume.update(view[done:start])
                    update_both(volume, member, view[start:end])
                    done = end
                volume.update(view[done : window.fill])
                for check in window.checks:
                    check()
                del view
                self._hashed.append(window)
            finally:
                self._queue.task_done()


class WriteThread:
    """Writes windows into their volume in order on a thread of its own, so the disk works
    while the next window is read, then passes each on to the :class:`DigestThread`.

    The first error (a full disk) is kept in :attr:`error` and the windows after it are
    not written: the writer checks it as it hands over a window and before it finishes
    a volume.
    """

    def __init__(self, digests: DigestThread) -> None:
        self.error: OSError | None = None
        self._digests = digests
        self._queue: queue.Queue[tuple[int, Digest, Window] | None] = queue.Queue(WRITE_QUEUE)
        self._thread = threading.Thread(target=self._run, name="tar-write", daemon=True)
        self._thread.start()

    def write(self, fd: int, volume: Digest, window: Window) -> None:
        """Write ``window`` at its place in ``fd``, then hash it into ``volume``."""
        self._queue.put((fd, volume, window))

    def drain(self) -> None:
        """Wait until every window handed over is written and hashed."""
        self._queue.join()
        self._digests.drain()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fd, volume, window = item
                if window.fill and self.error is None:
                    try:
                        preallocate(fd, window.start, window.fill)
                        write_at(fd, window.view[: window.fill], window.start)
                    except OSError as e:
                        self.error = e
                self._digests.hash(volume, window)
                del item, window
            finally:
                self._queue.task_done()
