"""Benchmark the planner on a synthetic catalog; compare with a sort-by-listens baseline.

    .venv/bin/python bench/plan.py                    # 256 M tracks (needs ~11 GB free)
    .venv/bin/python bench/plan.py --tracks 10M       # quick run

Synthetic tracks: durations around 3.7 min (95 % within 2–6 min), log-normal listens (a
heavy tail: the top third of tracks holds 99.7 % of listens), popularity derived from
listens, a source file for ~40 % of tracks, more likely for popular ones (60 % Ogg Vorbis
160 kbit/s, 25 % MP3 320 kbit/s, 15 % FLAC), 45 % of tracks in ISRC groups of ~2.5 (≈ 72 %
distinct recordings, like 186 M ISRCs for 256 M tracks), 2 % of listen counts unknown.

The optimiser runs at budgets of 1 %, 10 % and 50 % of the full size (every source file
kept); the baseline sorts tracks with a source by listens and keeps originals until the
budget is full. Targets at 256 M tracks on 2 cores: <= 60 s and <= 8 GB peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from phonotheca.plan.optimizer import (
    PlanOptions,
    PlanTotals,
    TrackArrays,
    estimate_listens,
    plan_tiers,
)
from phonotheca.plan.sizes import format_size

CHUNK = 1 << 22
SHARES = (0.01, 0.10, 0.50)


def count(text: str) -> int:
    """Read 256M, 10k, 1_000_000 as a number of tracks."""
    text = text.strip().replace("_", "")
    factor = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def peak_rss() -> int:
    """Peak resident set size in bytes since the last :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process: steadier than wall time on a shared host."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS of this process (Linux >= 4.0), if allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


@dataclass
class Catalog:
    tracks: TrackArrays
    listens: NDArray[np.float32]  # with the estimates filled in, for the baseline


def generate(n: int, seed: int, workers: int) -> Catalog:
    """Fill preallocated compact arrays chunk by chunk (threads: NumPy's RNG drops the GIL)."""
    size = np.empty(n, np.uint32)
    duration = np.empty(n, np.float32)
    listens = np.empty(n, np.float32)
    popularity = np.empty(n, np.uint8)
    group = np.empty(n, np.int32)
    n_groups = max(1, int(n * 0.45 / 2.5))
    starts = range(0, n, CHUNK)
    seeds = np.random.SeedSequence(seed).spawn(len(starts))

    def fill(job: tuple[int, np.random.SeedSequence]) -> None:
        a, seq = job
        b = min(a + CHUNK, n)
        m = b - a
        rng = np.random.default_rng(seq)
        d = np.clip(rng.normal(225.0, 60.0, m), 30.0, 1800.0)
        duration[a:b] = d
        heard = rng.lognormal(1.0, 3.0, m)
        heard[rng.random(m) < 0.15] = 0.0
        pop = np.clip(20.0 * np.log10(heard + 1.0) + rng.normal(0.0, 3.0, m), 0, 100)
        popularity[a:b] = pop
        heard[rng.random(m) < 0.02] = np.nan  # unknown: the planner estimates it
        listens[a:b] = heard
        kind = rng.random(m)
        bytes_per_s = np.where(kind < 0.6, 20_000.0, np.where(kind < 0.85, 40_000.0, 110_000.0))
        file_size = d * bytes_per_s * rng.uniform(0.9, 1.1, m) + 8192.0
        has_source = rng.random(m) < np.clip(0.25 + pop / 100.0, 0.0, 0.98)
        size[a:b] = np.where(has_source, file_size, 0.0)
        grouped = rng.random(m) < 0.45
        group[a:b] = np.where(grouped, rng.integers(0, n_groups, m), -1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fill, zip(starts, seeds, strict=True)))
    tracks = TrackArrays(
        original_size=size, duration_s=duration, listens=listens, popularity=popularity, group=group
    )
    return Catalog(tracks=tracks, listens=listens)


def baseline(catalog: Catalog, budgets: list[int], estimated: NDArray[np.float32]) -> list[float]:
    """Listens covered when originals are kept by decreasing listens until the budget."""
    size = catalog.tracks.original_size
    listens = catalog.listens
    with_source = np.flatnonzero(size > 0)
    key = np.nan_to_num(listens[with_source], nan=0.0)
    unknown = np.isnan(listens[with_source])
    key[unknown] = estimated[with_source[unknown]]  # the baseline gets the estimates too
    order = np.argsort(-key)
    cum_size = np.cumsum(size[with_source[order]], dtype=np.int64)
    cum_listens = np.cumsum(key[order], dtype=np.float64)
    del order, with_source, key
    covered = []
    for budget in budgets:
        k = int(np.searchsorted(cum_size, budget, side="right"))
        covered.append(float(cum_listens[k - 1]) if k else 0.0)
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=count, default=256_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    n = args.tracks
    print(f"planner benchmark: {n:,} tracks, {args.workers} threads, {os.cpu_count()} CPUs")

    clock = time.perf_counter()
    catalog = generate(n, args.seed, args.workers)
    input_bytes = sum(
        a.nbytes
        for a in (
            catalog.tracks.original_size,
            catalog.tracks.duration_s,
            catalog.listens,
            catalog.tracks.popularity,
            catalog.tracks.group,
        )
        if a is not None
    )
    full = int(catalog.tracks.original_size.sum(dtype=np.int64))
    print(
        f"generate: {time.perf_counter() - clock:6.1f} s, inputs {format_size(input_bytes)}, "
        f"peak RSS {format_size(peak_rss())}; full size (all originals) {format_size(full)}"
    )

    budgets = [int(share * full) for share in SHARES]
    results: list[PlanTotals] = []
    for budget in budgets:
        resettable = reset_peak_rss()
        clock = time.perf_counter()
        cpu = cpu_seconds()
        result = plan_tiers(catalog.tracks, PlanOptions(budget=budget), workers=args.workers)
        seconds = time.perf_counter() - clock
        cpu = cpu_seconds() - cpu
        t = result.totals
        scope = "" if resettable else " (process lifetime)"
        print(
            f"optimiser @ {format_size(budget):>8}: {seconds:5.1f} s wall, {cpu:5.1f} s CPU "
            f"(load {os.getloadavg()[0]:.1f}), peak RSS "
            f"{format_size(peak_rss())}{scope}; covers {100 * t.listens_share:6.2f} % of "
            f"listens ({100 * t.value_share:.2f} % quality-weighted, bound "
            f"{100 * t.value_bound / t.listens_total:.2f} %), "
            f"{t.tracks_by_tier['opus']:,} opus + {t.tracks_by_tier['original']:,} "
            f"originals"
        )
        results.append(t)
        del result
    if args.no_baseline:
        return

    # Estimated listens as the optimiser saw them, for a fair baseline.
    clock = time.perf_counter()
    estimated = np.empty(n, np.float32)
    popularity = catalog.tracks.popularity
    assert popularity is not None
    for a in range(0, n, CHUNK):
        estimated[a : a + CHUNK] = estimate_listens(popularity[a : a + CHUNK])
    covered = baseline(catalog, budgets, estimated)
    print(f"baseline (sort by listens, originals only): {time.perf_counter() - clock:6.1f} s")
    total = results[0].listens_total
    for share, budget, totals, base in zip(SHARES, budgets, results, covered, strict=True):
        mine = totals.listens_covered
        ratio = mine / base if base else float("inf")
        print(
            f"  budget {100 * share:4.0f} % ({format_size(budget):>8}): optimiser "
            f"{100 * mine / total:6.2f} % vs baseline {100 * base / total:6.2f} % of listens: "
            f"+{(mine - base) / 1e6:,.1f} M listens ({ratio:.2f}x)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
