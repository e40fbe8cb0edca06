"""The planner against an exact solver, and the rules a curator relies on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phonotheca.plan.optimizer import (
    OPUS_HEADER_BYTES,
    PlanInfeasible,
    PlanOptions,
    PlanResult,
    Tier,
    TrackArrays,
    estimate_listens,
    estimate_opus_size,
    plan_tiers,
)
from phonotheca.plan.report import render_table

# Opus bytes == duration in these small instances: 1 byte a second, no header, no framing.
TINY_OPUS: dict[str, Any] = {"opus_kbps": 0.008, "opus_overhead": 0.0, "opus_header_bytes": 0}


def tracks(
    size: list[int],
    duration: list[float] | None = None,
    listens: list[float] | None = None,
    **extra: Any,
) -> TrackArrays:
    n = len(size)
    return TrackArrays(
        original_size=np.array(size, dtype=np.int64),
        duration_s=np.array(duration if duration is not None else [0.0] * n, dtype=np.float32),
        listens=None if listens is None else np.array(listens, dtype=np.float32),
        **extra,
    )


def plan(t: TrackArrays, budget: int, **options: Any) -> PlanResult:
    return plan_tiers(t, PlanOptions(budget=budget, **{**TINY_OPUS, **options}))


def tiers(result: PlanResult) -> list[Tier]:
    return [Tier(int(code)) for code in result.tier]


# --- exact reference ----------------------------------------------------------------------

instances = st.integers(1, 7).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 40), min_size=n, max_size=n),  # original size, 0 = missing
        st.lists(st.integers(0, 40), min_size=n, max_size=n),  # opus bytes, 0 = no duration
        st.lists(st.sampled_from([0.0, 1.0, 2.5, 7.0, 30.0, 100.0]), min_size=n, max_size=n),
        st.floats(0.5, 1.0),  # opus quality
    )
)


def optimum(
    size: list[int], opus: list[int], listens: list[float], quality: float, budget: int
) -> float:
    """Exact multiple-choice knapsack by dynamic programming over integer budgets."""
    best = np.zeros(budget + 1)
    for s_orig, s_opus, v in zip(size, opus, listens, strict=True):
        choices = []
        if s_orig > 0:
            choices.append((s_orig, v))
            if s_opus > 0:
                choices.append((s_opus, quality * v))
        new = best.copy()
        for s, value in choices:
            if s <= budget:
                new[s:] = np.maximum(new[s:], best[: budget + 1 - s] + value)
        best = new
    return float(best[budget])


def achieved(result: PlanResult, listens: list[float], quality: float) -> float:
    weight = {Tier.ORIGINAL: 1.0, Tier.OPUS: quality}
    return sum(weight.get(t, 0.0) * v for t, v in zip(tiers(result), listens, strict=True))


@settings(max_examples=300, deadline=None)
@given(instances, st.floats(0.0, 1.0), st.booleans())
def test_greedy_is_within_one_item_of_the_optimum(
    instance: Any, budget_share: float, own_copy: bool
) -> None:
    size, opus, listens, quality = instance
    budget = int(budget_share * (sum(size) + 5))
    t = tracks(size, opus, listens)
    if own_copy:  # float64 listens: the planner works on (and reuses) its own copy
        t = TrackArrays(t.original_size, t.duration_s, np.array(listens, dtype=np.float64))
    result = plan(t, budget, opus_quality=quality)
    best = optimum(size, opus, listens, quality, budget)
    value = achieved(result, listens, quality)
    assert math.isclose(value, result.totals.value, rel_tol=1e-9, abs_tol=1e-9)
    assert int(result.planned_size.sum()) == result.totals.used_bytes <= budget
    assert value <= best + 1e-6
    assert value >= best - max(listens) - 1e-6
    assert result.totals.value_bound >= best - 1e-6


@settings(max_examples=200, deadline=None)
@given(instances, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
@example(  # one ulp of rounding, see below
    ([2, 3, 2, 1, 0, 0], [1, 1, 1, 0, 0, 0], [1.0, 1.0, 2.5, 1.0, 0.0, 0.0], 0.9999999999999999),
    1.0,
    0.5,
)
def test_a_bigger_budget_never_covers_fewer_listens(instance: Any, a: float, b: float) -> None:
    size, opus, listens, quality = instance
    full = sum(size) + 5
    small, large = sorted((int(a * full), int(b * full)))
    t = tracks(size, opus, listens)
    lo = plan(t, small, opus_quality=quality).totals
    hi = plan(t, large, opus_quality=quality).totals
    assert hi.listens_covered >= lo.listens_covered
    # Up to rounding: Opus at a quality of 0.9999999999999999 is worth what the original
    # is, yet a sum of such values can come out one ulp above the originals' (found by
    # hypothesis: 5.500000000000001 for a small budget, 5.5 for a large one).
    assert hi.value >= lo.value - 1e-9 * max(1.0, abs(lo.value))


@settings(max_examples=100, deadline=None)
@given(instances)
def test_dominated_opus_is_never_chosen(instance: Any) -> None:
    size, opus, listens, quality = instance
    budget = sum(size) // 2
    result = plan(tracks(size, opus, listens), budget, opus_quality=quality)
    for t, s, o in zip(tiers(result), size, opus, strict=True):
        if t == Tier.OPUS:
            assert 0 < o < quality * s


def test_chunks_and_threads_do_not_change_the_plan() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    t = TrackArrays(
        original_size=rng.integers(-5, 40_000, n),
        duration_s=rng.uniform(0, 300, n).astype(np.float32),
        listens=rng.pareto(1.2, n).astype(np.float32),
        group=np.where(rng.random(n) < 0.4, rng.integers(0, 800, n), -1),
    )
    options = PlanOptions(budget=12_000_000)
    one = plan_tiers(t, options, chunk_size=1 << 20, workers=1)
    many = plan_tiers(t, options, chunk_size=97, workers=3)
    assert np.array_equal(one.tier, many.tier)
    assert np.array_equal(one.planned_size, many.planned_size)
    assert one.totals.tracks_by_tier == many.totals.tracks_by_tier
    assert one.totals.bytes_by_tier == many.totals.bytes_by_tier
    assert one.totals.listens_covered == pytest.approx(many.totals.listens_covered)
    for tier in (Tier.OPUS, Tier.ORIGINAL):
        planned = int(one.planned_size[one.tier == tier].sum(dtype=np.int64))
        assert planned == one.totals.bytes_by_tier[tier.name.lower()]
    assert one.totals.used_bytes <= options.budget


def test_ties_go_to_the_lowest_index() -> None:
    t = tracks([10] * 6, listens=[5.0] * 6)
    result = plan(t, 35)
    assert tiers(result) == [Tier.ORIGINAL] * 3 + [Tier.METADATA] * 3
    assert result.totals.used_bytes == 30
    chunked = plan_tiers(t, PlanOptions(budget=35, **TINY_OPUS), chunk_size=2, workers=2)
    assert np.array_equal(chunked.tier, result.tier)


def test_opus_first_then_upgrades_to_original() -> None:
    # Opus (10 B for 0.9) beats the original (40 B for 1) per byte; upgrading costs 30 B.
    t = tracks([40, 40], [10, 10], [100.0, 1.0])
    assert tiers(plan(t, 10, opus_quality=0.9)) == [Tier.OPUS, Tier.METADATA]
    # The upgrade (30 B) does not fit and the greedy stops there, so that a bigger budget
    # never covers fewer listens.
    assert tiers(plan(t, 20, opus_quality=0.9)) == [Tier.OPUS, Tier.METADATA]
    assert tiers(plan(t, 40, opus_quality=0.9)) == [Tier.ORIGINAL, Tier.METADATA]
    assert tiers(plan(t, 50, opus_quality=0.9)) == [Tier.ORIGINAL, Tier.OPUS]
    assert tiers(plan(t, 80, opus_quality=0.9)) == [Tier.ORIGINAL, Tier.ORIGINAL]


def test_opus_not_on_the_hull_goes_straight_to_original() -> None:
    # Opus 39 B of 40 for 0.9 of the value: worse per byte than the original.
    result = plan(tracks([40], [39], [10.0]), 39, opus_quality=0.9)
    assert tiers(result) == [Tier.METADATA]
    assert tiers(plan(tracks([40], [39], [10.0]), 40, opus_quality=0.9)) == [Tier.ORIGINAL]


def test_isrc_group_is_kept_once_by_its_largest_source() -> None:
    t = tracks(
        [10, 30, 0, 30, 8],
        listens=[1.0, 2.0, 3.0, 4.0, 50.0],
        group=np.array([0, 0, 0, 0, -1], dtype=np.int32),
    )
    result = plan(t, 1000)
    assert tiers(result) == [
        Tier.DUPLICATE,
        Tier.ORIGINAL,
        Tier.DUPLICATE,
        Tier.DUPLICATE,
        Tier.ORIGINAL,
    ]
    assert result.planned_size.tolist() == [0, 30, 0, 0, 8]
    assert result.group_representative is not None
    assert result.group_representative.tolist() == [1]
    assert result.totals.listens_covered == pytest.approx(60.0)
    assert result.totals.tracks_by_tier["duplicate"] == 3
    # The group's value is the sum of its listens (10 for 30 B) and loses to 50 for 8 B.
    assert tiers(plan(t, 20))[1] == Tier.METADATA


def test_group_value_is_the_sum_of_its_listens() -> None:
    # One copy of the group is worth 2 + 2 listens for 10 B: less than track 2.
    t = tracks([10, 10, 10], listens=[2.0, 2.0, 5.0], group=np.array([7, 7, -1]))
    assert tiers(plan(t, 10)) == [Tier.METADATA, Tier.DUPLICATE, Tier.ORIGINAL]
    t = tracks([10, 10, 10], listens=[3.0, 3.0, 5.0], group=np.array([7, 7, -1]))
    assert tiers(plan(t, 10)) == [Tier.ORIGINAL, Tier.DUPLICATE, Tier.METADATA]


def test_tracks_without_a_source_are_missing_and_their_listens_reported() -> None:
    t = tracks(
        [0, -1, 20, 0, 0],
        [60, 60, 60, 60, 60],
        [5.0, 6.0, 1.0, 2.0, 3.0],
        group=np.array([-1, -1, -1, 4, 4]),
    )
    result = plan(t, 10**6)
    assert tiers(result) == [Tier.MISSING, Tier.MISSING, Tier.ORIGINAL, Tier.MISSING, Tier.MISSING]
    assert result.totals.listens_missing == pytest.approx(16.0)
    assert result.totals.listens_share == pytest.approx(1 / 17)
    assert result.group_representative is not None
    assert result.group_representative[4] == -1


def test_popularity_pin_takes_its_bytes_first() -> None:
    pop = np.array([90, 10, 80, 50], dtype=np.uint8)
    t = tracks([30, 10, 20, 5], [5, 5, 5, 5], [1.0, 100.0, 1.0, 2.0], popularity=pop)
    # Tracks 0 and 2 are pinned to their originals (50 B) although they are worth less
    # than track 3, which no longer fits once track 1 took the other 10 B.
    result = plan(t, 60, min_original_popularity=80)
    assert tiers(result) == [Tier.ORIGINAL, Tier.ORIGINAL, Tier.ORIGINAL, Tier.METADATA]
    assert result.totals.pinned_tracks == 2
    assert result.totals.pinned_bytes == 50
    with pytest.raises(PlanInfeasible, match="short") as error:
        plan(t, 40, min_original_popularity=80)
    assert error.value.shortfall == 10


def test_pin_shortfall_is_named() -> None:
    pop = np.array([90, 95], dtype=np.uint8)
    t = tracks([3000, 5000], listens=[1.0, 1.0], popularity=pop)
    with pytest.raises(PlanInfeasible) as error:
        plan(t, 1000, min_original_popularity=90)
    assert error.value.shortfall == 7000
    assert "2 originals pinned by popularity >= 90" in str(error.value)
    assert "7 kB" in str(error.value)


def test_pin_of_a_group_follows_its_most_popular_member() -> None:
    t = tracks(
        [10, 20, 10],
        listens=[1.0, 1.0, 100.0],
        popularity=np.array([99, 0, 0]),
        group=np.array([3, 3, -1]),
    )
    result = plan(t, 25, min_original_popularity=50)
    assert tiers(result) == [Tier.DUPLICATE, Tier.ORIGINAL, Tier.METADATA]
    assert result.totals.pinned_tracks == 1


def test_pin_needs_the_original_tier() -> None:
    t = tracks([10], listens=[1.0], popularity=np.array([99]))
    with pytest.raises(PlanInfeasible, match="excluded"):
        plan(t, 100, min_original_popularity=50, exclude_tiers=frozenset({"original"}))


def test_excluded_tiers_are_never_chosen() -> None:
    t = tracks([40, 40, 40], [10, 0, 30], [3.0, 2.0, 1.0])
    no_opus = plan(t, 1000, exclude_tiers=frozenset({"opus"}))
    assert tiers(no_opus) == [Tier.ORIGINAL] * 3
    no_original = plan(t, 1000, exclude_tiers=frozenset({"original"}))
    assert tiers(no_original) == [Tier.OPUS, Tier.METADATA, Tier.OPUS]
    assert no_original.totals.bytes_by_tier["opus"] == 40
    nothing = plan(t, 1000, exclude_tiers=frozenset({"original", "opus"}))
    assert tiers(nothing) == [Tier.METADATA] * 3
    assert nothing.totals.used_bytes == 0
    with pytest.raises(ValueError, match="only 'opus' and 'original'"):
        PlanOptions(budget=1, exclude_tiers=frozenset({"metadata"}))


def test_packed_tracks_keep_their_tier_and_bytes() -> None:
    packed = np.array([True, True, False, False])
    packed_tier = np.array([Tier.OPUS, Tier.ORIGINAL, 0, 0], dtype=np.uint8)
    t = tracks(
        [40, 40, 40, 40],
        [10, 10, 10, 10],
        [0.0, 0.0, 100.0, 50.0],
        packed=packed,
        packed_tier=packed_tier,
        packed_size=np.array([12, 40, 0, 0], dtype=np.uint32),
    )
    result = plan(t, 62)
    # 52 B are packed already; 10 B left buy track 2 as Opus.
    assert tiers(result) == [Tier.OPUS, Tier.ORIGINAL, Tier.OPUS, Tier.METADATA]
    assert result.planned_size.tolist() == [12, 40, 10, 0]
    assert result.totals.packed_bytes == 52


def test_packed_tracks_over_the_budget_are_kept_and_nothing_more_is_bought() -> None:
    """A build whose Opus files came out larger than estimated: re-planning with the same
    budget keeps what is published, reports its bytes and buys nothing."""
    packed = np.array([True, True, False, False])
    packed_tier = np.array([Tier.OPUS, Tier.ORIGINAL, 0, 0], dtype=np.uint8)
    t = tracks(
        [40, 40, 40, 40],
        [10, 10, 10, 10],
        [0.0, 0.0, 100.0, 50.0],
        popularity=np.array([0, 0, 10, 90], dtype=np.uint8),
        packed=packed,
        packed_tier=packed_tier,
        packed_size=np.array([12, 40, 0, 0], dtype=np.uint32),
    )
    result = plan(t, 50)
    assert tiers(result) == [Tier.OPUS, Tier.ORIGINAL, Tier.METADATA, Tier.METADATA]
    assert result.totals.packed_bytes == result.totals.used_bytes == 52
    assert "2 B more than the budget: nothing new is planned" in render_table(result)
    # A pin that cannot fit beside the packed tracks still makes the plan impossible.
    with pytest.raises(PlanInfeasible) as error:
        plan(t, 50, min_original_popularity=80)
    assert error.value.shortfall == 42
    assert "1 originals pinned" in str(error.value)


def test_a_packed_member_represents_its_group() -> None:
    t = tracks(
        [10, 50],
        [5, 5],
        [1.0, 1.0],
        group=np.array([0, 0]),
        packed=np.array([True, False]),
        packed_tier=np.array([Tier.OPUS, 0]),
    )
    result = plan(t, 1000)
    assert tiers(result) == [Tier.OPUS, Tier.DUPLICATE]
    assert result.totals.listens_covered == pytest.approx(2.0)
    # Of two published copies the original represents the group; both keep their bytes.
    t = tracks(
        [10, 50, 30],
        [5, 5, 5],
        [1.0, 1.0, 1.0],
        group=np.array([0, 0, 0]),
        packed=np.array([True, True, False]),
        packed_tier=np.array([Tier.OPUS, Tier.ORIGINAL, 0]),
    )
    result = plan(t, 1000)
    assert tiers(result) == [Tier.OPUS, Tier.ORIGINAL, Tier.DUPLICATE]
    assert result.group_representative is not None
    assert result.group_representative.tolist() == [1]
    assert result.totals.used_bytes == 5 + 50
    assert result.totals.value == pytest.approx(3.0)


def test_listens_are_estimated_from_popularity_when_unknown() -> None:
    pop = np.array([0, 20, 40, 100], dtype=np.uint8)
    assert estimate_listens(pop).tolist() == pytest.approx([0.0, 9.0, 99.0, 99999.0])
    t = tracks([10, 10, 10, 10], listens=[np.nan, 5.0, -1.0, 7.0], popularity=pop)
    result = plan(t, 1000)
    assert result.totals.estimated_listens_tracks == 2
    assert result.totals.listens_total == pytest.approx(0 + 5 + 99 + 7)
    with pytest.raises(ValueError, match="no listen count"):
        plan(tracks([10], listens=[np.nan]), 10)


@given(st.lists(st.floats(-10, 110), min_size=2, max_size=50))
def test_listens_estimate_is_monotone(popularity: list[float]) -> None:
    pop = np.sort(np.array(popularity))
    assert np.all(np.diff(estimate_listens(pop)) >= 0)
    ints = np.arange(101)
    assert np.all(np.diff(estimate_listens(ints)) > 0)
    assert np.array_equal(estimate_listens(ints), estimate_listens(ints.astype(np.float64)))


def test_opus_size_formula() -> None:
    sizes = estimate_opus_size(np.array([180.0, 0.0, np.nan]), 75.0)
    assert sizes.tolist() == [OPUS_HEADER_BYTES + math.ceil(180 * 75_000 / 8 * 1.008), 0, 0]


def test_coverage_curve_runs_from_nothing_to_everything() -> None:
    rng = np.random.default_rng(3)
    n = 400
    listens = rng.lognormal(2, 2, n)
    max_step = float(listens.max())
    t = TrackArrays(
        original_size=rng.integers(0, 9_000_000, n),
        duration_s=rng.uniform(60, 400, n),
        listens=listens,
    )
    result = plan_tiers(t, PlanOptions(budget=200_000_000))
    curve = result.curve
    assert len(curve.bytes) >= 100
    assert curve.bytes[0] == 0 and curve.listens_share[0] == 0
    assert curve.bytes[-1] == result.totals.full_bytes
    assert np.all(np.diff(curve.bytes) > 0)
    assert np.all(np.diff(curve.listens_share) >= -1e-12)
    assert np.all(np.diff(curve.value_share) >= -1e-12)
    full = plan_tiers(t, PlanOptions(budget=10**12)).totals
    assert curve.listens_share[-1] == pytest.approx(full.listens_share)
    np.testing.assert_allclose(curve.opus_bytes + curve.original_bytes, curve.bytes)
    # The curve at the budget agrees with the plan to within one step.
    at_budget = np.interp(result.totals.budget, curve.bytes, curve.value_share)
    assert abs(at_budget - result.totals.value_share) <= 1.01 * max_step / full.listens_total


def test_an_empty_catalog_plans_nothing() -> None:
    result = plan(tracks([], [], [], group=np.zeros(0, np.int32)), 100)
    assert len(result.tier) == 0
    assert result.totals.used_bytes == 0
    assert result.totals.listens_share == 0.0
    assert len(result.curve.bytes) >= 100


def test_inconsistent_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        TrackArrays(original_size=np.zeros(3, np.uint32), duration_s=np.zeros(2))
    with pytest.raises(ValueError, match="together"):
        TrackArrays(
            original_size=np.zeros(1, np.uint32), duration_s=np.zeros(1), packed=np.zeros(1, bool)
        )
    with pytest.raises(ValueError, match="opus_quality"):
        PlanOptions(budget=1, opus_quality=1.5)
    with pytest.raises(ValueError, match="give listens or popularity"):
        plan(tracks([1]), 1)
