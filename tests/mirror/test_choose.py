"""choose(): the budget holds, metadata first, obsolete never, volunteers spread out."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca.cli import main
from phonotheca.mirror.choose import choose, need
from phonotheca.torrents.listing import Health, TorrentEntry, write_listing


def entry(
    name: str,
    size: int,
    listens: int,
    seeders: int | None = 0,
    *,
    kind: str = "audio",
    obsolete: bool = False,
    added: str = "2026-01-01",
) -> TorrentEntry:
    return TorrentEntry(
        name=name,
        collection=name,
        kind=kind,  # type: ignore[arg-type]
        infohash_v1="0" * 40,
        magnet=f"magnet:?xt=urn:btih:{'0' * 40}&dn={name}",
        torrent_url=f"torrents/{name}.torrent",
        size=size,
        files=4,
        tracks=10,
        listens=listens,
        added=added,
        obsolete=obsolete,
        health=Health(seeders=seeders),
    )


def names(entries: list[TorrentEntry]) -> list[str]:
    return [e.name for e in entries]


@given(
    st.lists(
        st.tuples(st.integers(1, 1000), st.integers(0, 10_000), st.none() | st.integers(0, 50)),
        max_size=30,
    ),
    st.integers(0, 5000),
    st.integers(),
)
@settings(max_examples=200, deadline=None)
def test_never_over_budget_and_fills_what_fits(
    specs: list[tuple[int, int, int | None]], budget: int, seed: int
) -> None:
    entries = [entry(f"t{i}", size, listens, s) for i, (size, listens, s) in enumerate(specs)]
    choice = choose(entries, budget, rng=random.Random(seed))
    assert choice.bytes <= budget
    chosen = set(names(choice.entries))
    left = budget - choice.bytes
    # Greedy with skipping: nothing left out would still have fit.
    assert all(e.size > left for e in entries if e.name not in chosen)
    assert len(chosen) == len(choice.picks)


def test_metadata_first_newest_only_and_obsolete_skipped() -> None:
    entries = [
        entry("audio-good", 100, 10_000, 0),
        entry("meta-old", 10, 0, 5, kind="metadata", added="2025-06-01"),
        entry("meta-new", 10, 0, 5, kind="metadata", added="2026-01-01"),
        entry("audio-obsolete", 50, 1_000_000, 0, obsolete=True),
        entry("meta-obsolete", 10, 0, 0, kind="metadata", added="2027-01-01", obsolete=True),
    ]
    choice = choose(entries, 1000, rng=random.Random(1))
    assert names(choice.entries) == ["meta-new", "audio-good"]
    reasons = {p.name: p.reason for p in choice.passed}
    assert reasons["audio-obsolete"] == "obsolete"
    assert reasons["meta-obsolete"] == "obsolete"
    assert "superseded" in reasons["meta-old"]


def test_big_torrent_skipped_smaller_still_fits() -> None:
    entries = [entry("big", 900, 100_000, 0), entry("small", 100, 1, 30)]
    choice = choose(entries, 500, rng=random.Random(1))
    assert names(choice.entries) == ["small"]
    assert "more than" in choice.passed[0].reason


def test_prefers_few_seeders_and_listens_per_byte() -> None:
    entries = [
        entry("dense-seeded", 100, 10_000, 40),
        entry("dense-unseeded", 100, 10_000, 0),
        entry("sparse-unseeded", 100, 100, 0),
    ]
    for seed in range(20):
        choice = choose(entries, 100, rng=random.Random(seed))
        assert names(choice.entries) == ["dense-unseeded"]
    assert need(None) < need(0)  # never scraped: few seeders, not none
    assert need(None) > need(5)


def test_near_equals_spread_across_volunteers_clear_winner_always_chosen() -> None:
    near_equals = [entry(f"near-{i}", 100, 1000 + i, 1) for i in range(10)]
    clear = entry("clear", 100, 50_000, 1)
    firsts = set()
    for seed in range(40):
        choice = choose([*near_equals, clear], 200, rng=random.Random(seed))
        assert names(choice.entries)[0] == "clear"
        firsts.add(names(choice.entries)[1])
    assert len(firsts) >= 5  # volunteers asking together do not all pick the same one


def test_held_kept_first_and_least_useful_dropped_when_budget_shrinks() -> None:
    entries = [
        entry("held-a", 100, 5000, 0),
        entry("held-b", 100, 100, 0),
        entry("new-best", 100, 1_000_000, 0),
        entry("held-obsolete", 100, 5000, 0, obsolete=True),
    ]
    held = ["held-a", "held-b", "held-obsolete", "gone"]
    choice = choose(entries, 300, held=held, rng=random.Random(1))
    assert names(choice.entries) == ["held-a", "held-b", "new-best"]
    smaller = choose(entries, 150, held=held, rng=random.Random(1))
    assert names(smaller.entries) == ["held-a"]
    dropped = {p.name: p.reason for p in smaller.dropped}
    assert set(dropped) == {"held-b", "held-obsolete", "gone"}
    assert dropped["gone"] == "no longer in torrents.json"
    assert "new-best" not in dropped


def test_negative_budget_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        choose([], -1)


def test_suggest_command_json_magnets_and_held(tmp_path: Path) -> None:
    from tests.mirror.swarm import listing_of

    entries = [
        entry("demo_metadata_0001", 10, 0, 3, kind="metadata"),
        entry("a", 100, 5000, 0),
        entry("b", 100, 10, 0),
        entry("c", 100, 90_000, 0, obsolete=True),
    ]
    listing = tmp_path / "torrents.json"
    write_listing(listing_of(entries), listing)
    runner = CliRunner()
    unsigned = runner.invoke(
        main, ["torrents", "suggest", "--budget", "150B", "--torrents", str(listing), "--json"]
    )
    assert unsigned.exit_code == 1 and "refused: not signed" in unsigned.output
    result = runner.invoke(
        main,
        [
            "torrents",
            "suggest",
            "--budget",
            "150B",
            "--torrents",
            str(listing),
            "--json",
            "--allow-unsigned",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [t["name"] for t in report["torrents"]] == ["demo_metadata_0001", "a"]
    assert report["bytes"] == 110 and report["listens"] == 5000
    assert {"name": "c", "held": False, "reason": "obsolete"} in report["passed"]

    magnets = runner.invoke(
        main,
        [
            "torrents",
            "suggest",
            "--budget",
            "150B",
            "--torrents",
            str(listing),
            "--magnets",
            "--allow-unsigned",
        ],
    )
    assert magnets.stdout.splitlines() == [entries[0].magnet, entries[1].magnet]

    mirror = tmp_path / "mirror" / "torrents"
    mirror.mkdir(parents=True)
    (mirror / "b.torrent").write_bytes(b"")
    held = runner.invoke(
        main,
        [
            "torrents",
            "suggest",
            "--budget",
            "150B",
            "--archive",
            str(tmp_path),
            "--held",
            str(tmp_path / "mirror"),
            "--json",
            "--allow-unsigned",
        ],
    )
    assert [t["name"] for t in json.loads(held.stdout)["torrents"]] == ["demo_metadata_0001", "b"]

    bad = runner.invoke(main, ["torrents", "suggest", "--budget", "lots", "--archive", "."])
    assert bad.exit_code == 2 and "invalid size" in bad.output
