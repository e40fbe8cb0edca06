"""The coverage report: table, JSON and plot files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phonotheca.plan.optimizer import PlanOptions, PlanResult, TrackArrays, plan_tiers
from phonotheca.plan.report import plot_coverage, render_table, to_json


@pytest.fixture(scope="module")
def result() -> PlanResult:
    rng = np.random.default_rng(11)
    n = 3000
    size = (rng.uniform(120, 360, n) * 20_000).astype(np.uint32)
    size[rng.random(n) < 0.2] = 0
    popularity = rng.integers(0, 101, n).astype(np.uint8)
    listens = rng.lognormal(3, 2, n).astype(np.float32)
    listens[rng.random(n) < 0.1] = np.nan
    t = TrackArrays(
        original_size=size,
        duration_s=rng.uniform(120, 360, n).astype(np.float32),
        listens=listens,
        popularity=popularity,
        group=np.where(rng.random(n) < 0.2, rng.integers(0, 500, n), -1),
    )
    return plan_tiers(t, PlanOptions(budget=5_000_000_000, min_original_popularity=99))


def test_table_names_every_figure(result: PlanResult) -> None:
    table = render_table(result)
    for word in (
        "budget 5 GB",
        "original",
        "opus",
        "metadata",
        "duplicate",
        "missing",
        "listens covered",
        "quality-weighted",
        "without a source",
        "extra GB",
        "pinned originals",
        "from popularity for",
    ):
        assert word in table
    missing = result.totals.tracks_by_tier["missing"]
    assert f"{missing:,} tracks" in table


def test_json_round_trips(result: PlanResult) -> None:
    data = to_json(result)
    again = json.loads(json.dumps(data))
    assert again == data
    assert again["tracks_by_tier"] == result.totals.tracks_by_tier
    assert len(again["curve"]["bytes"]) >= 100
    assert again["curve"]["bytes"][-1] == result.totals.full_bytes
    assert again["estimated_listens_tracks"] == result.totals.estimated_listens_tracks > 0


def test_png_plot(result: PlanResult, tmp_path: Path) -> None:
    path = tmp_path / "coverage.png"
    plot_coverage(result, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_svg_plot(result: PlanResult, tmp_path: Path) -> None:
    path = tmp_path / "coverage.SVG"
    plot_coverage(result, str(path))
    text = path.read_text()
    assert "<svg" in text
    assert "budget 5 GB" in text
    assert "storage (GB)" in text


def test_plot_refuses_other_formats(result: PlanResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot_coverage(result, tmp_path / "coverage.pdf")
