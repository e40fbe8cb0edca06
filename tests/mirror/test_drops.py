"""plan_drops: what a run may delete, what it keeps, and the per-run cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.config import DeleteCap, Settings, SettingsError
from phonotheca.mirror.choose import choose
from phonotheca.mirror.drops import delete_held, plan_drops
from phonotheca.mirror.state import MirrorDir
from tests.mirror.swarm import listing_of
from tests.mirror.test_choose import entry


def _hold(tmp_path: Path, sizes: dict[str, int]) -> MirrorDir:
    mirror = MirrorDir(tmp_path / "mirror")
    mirror.create()
    for name, size in sizes.items():
        mirror.torrent_file(name).write_bytes(b"d")
        payload = mirror.payload(name)
        payload.mkdir()
        (payload / "data.bin").write_bytes(b"\1" * size)
    return mirror


def _plan(mirror: MirrorDir, entries: list, budget: int, **kwargs: object):  # type: ignore[no-untyped-def]
    listing = listing_of(entries)
    choice = choose(listing.torrents, budget, held=mirror.held(), rng=random.Random(1))
    return plan_drops(mirror, choice, listing, **kwargs)  # type: ignore[arg-type]


def test_obsolete_needs_a_verified_listing_and_a_replacement(tmp_path: Path) -> None:
    mirror = _hold(tmp_path, {"a": 40_000, "b": 40_000, "c": 40_000})
    new = entry("new", 100, 10)
    a = entry("a", 40_000, 10, obsolete=True)
    a.replaced_by = ["new"]
    b = entry("b", 40_000, 10, obsolete=True)  # no replacement named
    entries = [a, b, new]  # c is left out of the listing
    args = {"budget_lowered": False, "cap": 10**9}
    plan = _plan(mirror, entries, 10**9, verified=True, **args)
    assert [d.name for d in plan.delete] == ["a"]
    assert "replaced by new" in plan.delete[0].reason
    kept = {d.name: d.reason for d in plan.keep}
    assert "names no current torrent" in kept["b"] and "left out" in kept["c"]
    unverified = _plan(mirror, entries, 10**9, verified=False, **args)
    assert unverified.delete == [] and {d.name for d in unverified.keep} == {"a", "b", "c"}


def test_lower_budget_and_the_cap(tmp_path: Path) -> None:
    mirror = _hold(tmp_path, {"a": 40_000, "b": 40_000, "c": 40_000})
    entries = [entry(n, 40_000, listens) for n, listens in (("a", 3), ("b", 2), ("c", 1))]
    same = _plan(mirror, entries, 50_000, verified=True, budget_lowered=False, cap=10**9)
    assert same.delete == [] and len(same.keep) == 2  # over budget, but not lowered: kept
    capped = _plan(mirror, entries, 50_000, verified=True, budget_lowered=True, cap=50_000)
    assert [d.name for d in capped.delete] == ["b"]  # the least useful go, one fits the cap
    assert [d.name for d in capped.over_cap] == ["c"]
    assert "--yes-delete-more" in capped.over_cap[0].reason
    more = _plan(
        mirror, entries, 50_000, verified=True, budget_lowered=True, cap=0, delete_more=True
    )
    assert [d.name for d in more.delete] == ["b", "c"]
    delete_held(mirror, more.delete)
    assert mirror.held() == ["a"]
    log = mirror.events_log.read_text().splitlines()
    assert len(log) == 2 and all("dropped" in line and "budget" in line for line in log)


def test_max_delete_setting() -> None:
    assert Settings().mirror.max_delete.limit(1000) == 100
    cap = Settings.from_mapping({"mirror": {"max_delete": "50GB"}}).mirror.max_delete
    assert cap == DeleteCap(share=None, size=50 * 10**9)
    assert Settings.from_mapping({"mirror": {"max_delete": "0%"}}).mirror.max_delete.limit(9) == 0
    with pytest.raises(SettingsError, match="max_delete"):
        Settings.from_mapping({"mirror": {"max_delete": "lots"}})
    with pytest.raises(SettingsError, match="valid_days"):
        Settings.from_mapping({"publish": {"valid_days": 0}})


def test_an_older_metadata_release_goes_when_a_newer_one_is_listed(tmp_path: Path) -> None:
    mirror = _hold(tmp_path, {"meta-1": 1000, "meta-0": 1000})
    entries = [
        entry("meta-2", 100, 0, kind="metadata", added="2026-03-01"),
        entry("meta-1", 100, 0, kind="metadata", added="2026-02-01"),
        entry("meta-0", 100, 0, kind="metadata", added="2026-01-01", obsolete=True),
    ]
    entries[2].replaced_by = ["meta-2"]
    plan = _plan(mirror, entries, 10**6, verified=True, budget_lowered=False, cap=10**6)
    reasons = {d.name: d.reason for d in plan.delete}
    assert reasons == {
        "meta-1": "superseded by the newer metadata torrent meta-2",
        "meta-0": "obsolete, replaced by meta-2",
    }
    unverified = _plan(mirror, entries, 10**6, verified=False, budget_lowered=False, cap=10**6)
    assert unverified.delete == []


def test_mirror_usage_errors_create_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "typo"
    runner = CliRunner()
    missing = runner.invoke(main, ["mirror", str(directory)])
    assert missing.exit_code == 2 and "--torrents and --budget are needed" in missing.output
    bad = runner.invoke(main, ["mirror", str(directory), "--torrents", "x", "--budget", "lots"])
    assert bad.exit_code == 2 and "--budget" in bad.output
    gone = runner.invoke(
        main, ["mirror", str(directory), "--torrents", str(tmp_path / "no.json"), "--budget", "1GB"]
    )
    assert gone.exit_code == 1 and "has no earlier listing to keep" in gone.output
    assert not directory.exists()
