"""PlayableSampler.distinct: lists of different tracks out of uniform draws with repeats."""

from __future__ import annotations

import random

from phonotheca.serve.playable import PlayableSampler


class Uniform(PlayableSampler):
    """A sampler whose draws are uniform over ``tracks`` (as the real one's are over the
    tracks a server plays), without a server behind it."""

    def __init__(self, tracks: list[int]) -> None:  # no library: draw() is replaced
        self.tracks = tracks
        self.calls = 0

    def draw(self, n: int, rng: random.Random | None = None) -> list[int] | None:
        self.calls += 1
        r = rng or random.Random()
        return [r.choice(self.tracks) for _ in range(n)] if self.tracks else []


def test_a_list_is_full_even_when_the_server_plays_few_tracks() -> None:
    sampler = Uniform(list(range(10)))
    # Five of ten: repeats are likely, and four rounds of draws left ~2 % of lists short.
    short = [
        seed
        for seed in range(2000)
        if len(set(got := sampler.distinct(5, random.Random(seed)) or [])) != 5 or len(got) != 5
    ]
    assert short == []


def test_a_list_longer_than_the_server_plays_holds_all_of_them() -> None:
    sampler = Uniform(list(range(10)))
    for seed in range(200):
        assert sorted(sampler.distinct(25, random.Random(seed)) or []) == list(range(10))


def test_lists_are_uniform() -> None:
    sampler = Uniform(list(range(10)))
    counts = dict.fromkeys(range(10), 0)
    for seed in range(3000):
        for t in sampler.distinct(3, random.Random(seed)) or []:
            counts[t] += 1
    expected = 3000 * 3 / 10
    assert all(abs(c - expected) < 6 * expected**0.5 for c in counts.values()), counts


def test_nothing_playable_ends_at_once() -> None:
    sampler = Uniform([])
    assert sampler.distinct(5, random.Random(1)) == []
    assert sampler.calls == 1
