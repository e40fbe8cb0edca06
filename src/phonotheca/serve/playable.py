"""Uniform random tracks among those this server can play, however few of the catalog's.

A mirror may hold a fraction of a percent of the catalog: drawing over the whole catalog
and keeping the playable draws finds almost none. Instead, the draws are over the
tracks of the collections present here (a collection directory under a root's
``torrents/``; in a mirror, one with a verified-pieces file), which the ledger lists:

1. pick a collection with probability proportional to its number of places (the largest
   ``ledger.position`` + 1, read from the ``ledger_position`` index);
2. pick one of its places uniformly and look up the packed track there: one search of the
   ``ledger_position`` index, O(log n) whatever the place (an empty place, left by a track
   the build set aside, is a draw that found nothing);
3. keep it when its bytes are here (:meth:`MediaLibrary.playable_rowids`), else draw again.

Steps 1 and 2 make every place equally likely and each packed track holds exactly one
place, so every candidate is equally likely; steps 2 and 3 drop empty places and the
unplayable tracks (pieces a mirror has not verified yet) without changing the odds of the
others, so each kept draw is uniform over the playable tracks. Candidates are listed
again every :data:`HELD_TTL` seconds, as a mirror adds collections.
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from phonotheca.serve.availability import is_mirror, verified_path
from phonotheca.serve.context import ServeContext

HELD_TTL = 30.0
"""Seconds a listing of the collections present is reused."""
MAX_DRAWS = 2000
"""Draws per request at most (a mirror with few verified pieces may yield fewer tracks)."""
ROUND = 64
"""Candidates checked for playability together (one query)."""
STALE_ROUNDS = 3
"""Rounds of draws that bring no new track before :meth:`PlayableSampler.distinct` stops."""

PLACES_SQL = (
    "SELECT max(position) FROM ledger INDEXED BY ledger_position"
    " WHERE collection = ? AND position IS NOT NULL"
)
"""The last place of a collection: one step to the end of its range in the index."""
DRAW_SQL = (
    "SELECT track_id FROM ledger INDEXED BY ledger_position"
    " WHERE collection = ? AND position = ? AND status = 'packed'"
)
"""The packed track at a place of a collection: one index search."""


class MediaLibrary(Protocol):
    """What the sampler needs of :class:`phonotheca.serve.media.MediaLibrary` (which
    creates the sampler: naming the class here would make the two modules import each
    other)."""

    @property
    def ctx(self) -> ServeContext: ...

    def valid_collection(self, name: str) -> bool: ...

    def playable_rowids(self, rowids: list[int]) -> set[int]: ...


@dataclass(frozen=True)
class Candidates:
    """Collections present here and how many packed tracks each lists."""

    names: tuple[str, ...]
    ends: tuple[int, ...]
    """Running total of places: collection ``i`` owns draws in ``[ends[i-1], ends[i])``."""

    @property
    def total(self) -> int:
        return self.ends[-1] if self.ends else 0

    def locate(self, draw: int) -> tuple[str, int]:
        """The collection and the position within it of draw ``draw`` (< total)."""
        i = bisect.bisect_right(self.ends, draw)
        return self.names[i], draw - (self.ends[i - 1] if i else 0)


def present_collections(library: MediaLibrary) -> list[str]:
    """Names of the collections present under the roots, sorted: a directory with a
    ``data`` directory under a root's ``torrents/``; in a mirror, one that also has a
    verified-pieces file. What is in them is for the catalog to say (its kind, tracks)."""
    present: set[str] = set()
    for root in library.ctx.roots:
        mirror = is_mirror(root)
        try:
            entries = list((root / "torrents").iterdir())
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if (
                library.valid_collection(name)
                and (entry / "data").is_dir()
                and (not mirror or verified_path(root, name).is_file())
            ):
                present.add(name)
    return sorted(present)


class PlayableSampler:
    def __init__(self, library: MediaLibrary, ttl: float = HELD_TTL) -> None:
        self.library = library
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Candidates] | None = None

    def candidates(self) -> Candidates:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self._list())
            return self._cached[1]

    def _list(self) -> Candidates:
        present = present_collections(self.library)
        names: list[str] = []
        counts: list[int] = []
        conn = self.library.ctx.catalog()
        for name in present:
            (last,) = conn.execute(PLACES_SQL, (name,)).fetchone()
            if last is not None:
                names.append(name)
                counts.append(int(last) + 1)
        return Candidates(tuple(names), tuple(itertools.accumulate(counts)))

    def draw(self, n: int, rng: random.Random | None = None) -> list[int] | None:
        """Track rowids of ``n`` independent uniform draws over the playable tracks (so
        repeats may occur); fewer when :data:`MAX_DRAWS` candidates did not give ``n``.
        None when this server holds no collection at all."""
        rng = rng or random.Random()
        held = self.candidates()
        if not held.total:
            return None
        conn = self.library.ctx.catalog()
        found: list[int] = []
        drawn = 0
        while len(found) < n and drawn < MAX_DRAWS:
            want = min(ROUND, MAX_DRAWS - drawn, 2 * (n - len(found)) + 4)
            drawn += want
            picks: list[int] = []
            for _ in range(want):
                name, position = held.locate(rng.randrange(held.total))
                row = conn.execute(DRAW_SQL, (name, position)).fetchone()
                if row is not None:  # an empty place: this draw found nothing
                    picks.append(int(row[0]))
            playable = self.library.playable_rowids(picks)
            found += [p for p in picks if p in playable]
        return found[:n]

    def distinct(self, n: int, rng: random.Random | None = None) -> list[int] | None:
        """Up to ``n`` different playable tracks, uniformly drawn (for lists).

        Draws go on until ``n`` different tracks turned up, or :data:`STALE_ROUNDS`
        rounds in a row brought none that was new (this server plays fewer than ``n``
        and all of them were seen, as good as certainly), or :data:`MAX_DRAWS`. A fixed
        number of rounds would come up short on a server with few tracks, where repeats
        are likely (5 of 10 tracks asked for: ~2 % of lists had 4).
        """
        seen: dict[int, None] = {}
        drawn = stale = 0
        while len(seen) < n and drawn < MAX_DRAWS and stale < STALE_ROUNDS:
            want = min(MAX_DRAWS - drawn, 2 * (n - len(seen)) + 8)
            got = self.draw(want, rng)
            if got is None:
                return None
            if not got:
                break  # nothing playable in MAX_DRAWS candidates: a mirror still verifying
            drawn += want
            before = len(seen)
            seen.update(dict.fromkeys(got))
            stale = 0 if len(seen) > before else stale + 1
        return list(seen)[:n]
