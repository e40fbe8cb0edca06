"""Which torrents a volunteer with a given disk budget should seed now.

One pure function, :func:`choose`, shared by ``phonotheca mirror``, ``phonotheca torrents
suggest`` and the web UI's "what should I seed" form, so they always agree.

The score of a torrent is *listens per byte × need*:

- listens per byte says how much listening one byte of the volunteer's disk keeps alive;
- ``need = 1 / (1 + seeders)`` falls as copies appear: the first extra seeder of an
  unseeded torrent doubles its copies, the same disk on a torrent with 50 seeders
  changes little. Unknown seeders (never scraped) count as :data:`UNKNOWN_SEEDERS`:
  few, but not none, so a torrent known to have no seeder comes before one nobody
  has asked about.

Each score is multiplied by a random factor in ``[1/JITTER, JITTER]`` (log-uniform), so
volunteers who ask at the same time with the same listing spread over near-equal
torrents instead of all picking the same one; a torrent more than ``JITTER²`` times better
than another always comes first. Torrents are then taken greedily in score order while they
fit: one bigger than what is left is skipped and a smaller one may still fit, and the
total never exceeds the budget.

Order of preference: the newest metadata torrent first (the catalog makes every other
torrent usable), then what the volunteer already holds (switching would waste the
bandwidth spent on it; when the budget shrinks, the least useful held torrents are
dropped), then new torrents by score. Obsolete torrents are never chosen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from phonotheca.plan.sizes import format_size
from phonotheca.torrents.listing import TorrentEntry

JITTER = 1.25
"""Largest random factor on a score: near-equals within 25 % are shuffled between
volunteers, a torrent 1.57× better than another always wins."""

UNKNOWN_SEEDERS = 1
"""Seeders assumed for a torrent that was never scraped."""


@dataclass(frozen=True, slots=True)
class Pick:
    """A chosen torrent, with why it was chosen."""

    entry: TorrentEntry
    reason: str
    score: float
    """Listens per MB × need, before the random factor (0 for metadata)."""
    held: bool


@dataclass(frozen=True, slots=True)
class Pass:
    """A torrent not chosen, and why."""

    name: str
    reason: str
    held: bool = False
    """True when the volunteer holds it: a held torrent not chosen leaves the choice
    (whether its copy is deleted is for :mod:`phonotheca.mirror.drops` to decide)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The result of :func:`choose`: chosen torrents in order of preference."""

    budget: int
    picks: list[Pick] = field(default_factory=list)
    passed: list[Pass] = field(default_factory=list)

    @property
    def entries(self) -> list[TorrentEntry]:
        return [p.entry for p in self.picks]

    @property
    def bytes(self) -> int:
        return sum(p.entry.size for p in self.picks)

    @property
    def listens(self) -> int:
        """Listens covered by the chosen torrents."""
        return sum(p.entry.listens for p in self.picks)

    @property
    def dropped(self) -> list[Pass]:
        """Held torrents that are not chosen any more (over budget, obsolete, unlisted);
        :func:`phonotheca.mirror.drops.plan_drops` decides which of them are deleted."""
        return [p for p in self.passed if p.held]

    def to_json(self) -> dict[str, object]:
        return {
            "budget": self.budget,
            "bytes": self.bytes,
            "listens": self.listens,
            "torrents": [
                {
                    "name": p.entry.name,
                    "kind": p.entry.kind,
                    "size": p.entry.size,
                    "listens": p.entry.listens,
                    "seeders": p.entry.health.seeders,
                    "held": p.held,
                    "score": p.score,
                    "reason": p.reason,
                    "magnet": p.entry.magnet,
                }
                for p in self.picks
            ],
            "passed": [{"name": p.name, "held": p.held, "reason": p.reason} for p in self.passed],
        }


def need(seeders: int | None) -> float:
    """How much one more copy helps: 1 for no seeder, falling as ``1 / (1 + seeders)``."""
    known = UNKNOWN_SEEDERS if seeders is None else max(0, seeders)
    return 1.0 / (1 + known)


def score(entry: TorrentEntry) -> float:
    """Listens per MB of payload × :func:`need`; 0 for a torrent covering no listens."""
    if entry.size <= 0:
        return 0.0
    return entry.listens / (entry.size / 1e6) * need(entry.health.seeders)


def newest_metadata(entries: Iterable[TorrentEntry]) -> TorrentEntry | None:
    """The metadata torrent a mirror should hold: the newest one not obsolete."""
    candidates = [e for e in entries if e.kind == "metadata" and not e.obsolete]
    if not candidates:
        return None
    return max(candidates, key=lambda e: (e.added, e.name))


def _describe(entry: TorrentEntry, value: float) -> str:
    seeders = entry.health.seeders
    seen = "seeders unknown" if seeders is None else f"{seeders} seeder{'s' * (seeders != 1)}"
    return f"{entry.listens:,} listens in {format_size(entry.size)} ({value:.3g}/MB), {seen}"


def choose(
    entries: Sequence[TorrentEntry],
    budget: int,
    *,
    held: Iterable[str] = (),
    rng: random.Random | None = None,
) -> Choice:
    """Choose torrents to fill ``budget`` bytes where they help most (see the module doc).

    ``held`` names the torrents the volunteer already has (whole or in part): they count
    against the budget, are kept before new ones, and those that are not chosen any more
    appear in :attr:`Choice.dropped`. ``rng`` draws the tie-break; pass a seeded one for
    reproducible choices (the default draws from the system's entropy).
    """
    if budget < 0:
        raise ValueError(f"budget must not be negative, got {budget}")
    rng = rng if rng is not None else random.Random()
    held_names = set(held)
    listed = {e.name for e in entries}
    choice = Choice(budget=budget)
    left = budget

    def take(entry: TorrentEntry, reason: str, value: float) -> None:
        nonlocal left
        choice.picks.append(Pick(entry, reason, value, entry.name in held_names))
        left -= entry.size

    def too_big(entry: TorrentEntry) -> Pass:
        return Pass(
            entry.name,
            f"{format_size(entry.size)} is more than the {format_size(left)} left of the budget",
            entry.name in held_names,
        )

    for name in sorted(held_names - listed):
        choice.passed.append(Pass(name, "no longer in torrents.json", True))

    metadata = newest_metadata(entries)
    candidates: list[TorrentEntry] = []
    for entry in entries:
        if entry.obsolete:
            choice.passed.append(Pass(entry.name, "obsolete", entry.name in held_names))
        elif entry.kind == "metadata" and entry is not metadata:
            reason = f"superseded by the newer metadata torrent {metadata.name}" if metadata else ""
            choice.passed.append(Pass(entry.name, reason, entry.name in held_names))
        elif entry is not metadata:
            candidates.append(entry)

    if metadata is not None:
        if metadata.size <= left:
            take(metadata, "metadata: the catalog every other torrent is described by", 0.0)
        else:
            choice.passed.append(too_big(metadata))

    # Held torrents first, the most useful kept when the budget no longer holds them all;
    # no jitter here: which copy to delete should not be left to chance.
    scored = [(score(e), e) for e in candidates]
    for value, entry in sorted(
        ((v, e) for v, e in scored if e.name in held_names), key=lambda ve: (-ve[0], ve[1].name)
    ):
        if entry.size <= left:
            take(entry, "held: " + _describe(entry, value), value)
        else:
            choice.passed.append(too_big(entry))

    jittered = [
        (value * math.exp(rng.uniform(-1.0, 1.0) * math.log(JITTER)), value, entry)
        for value, entry in scored
        if entry.name not in held_names
    ]
    for _, value, entry in sorted(jittered, key=lambda jve: (-jve[0], jve[2].name)):
        if entry.size <= left:
            take(entry, _describe(entry, value), value)
        else:
            choice.passed.append(too_big(entry))
    return choice
