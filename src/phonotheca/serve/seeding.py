""" "What should I seed with N TB": the torrents page's advice.

The same :func:`phonotheca.mirror.choose.choose` as ``phonotheca mirror`` and
``phonotheca torrents suggest``, so the page and the tools always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from phonotheca.mirror.choose import choose
from phonotheca.torrents.listing import Listing

MAX_BUDGET = 10**18
"""1 EB: more than any listing holds; larger figures are typing mistakes."""


@dataclass(frozen=True)
class SeedPick:
    name: str
    size: int
    seeders: int | None
    reason: str


@dataclass(frozen=True)
class SeedAdvice:
    """The torrents to seed for ``budget`` bytes, best first."""

    budget: int
    picks: list[SeedPick]
    bytes: int
    listens: int


def seed_advice(listing: Listing, budget: int) -> SeedAdvice:
    """Advice for a volunteer who holds nothing yet."""
    choice = choose(listing.torrents, max(0, min(budget, MAX_BUDGET)))
    return SeedAdvice(
        budget=choice.budget,
        picks=[
            SeedPick(p.entry.name, p.entry.size, p.entry.health.seeders, p.reason)
            for p in choice.picks
        ],
        bytes=choice.bytes,
        listens=choice.listens,
    )
