"""The plan's coverage report: a plain-text table, a JSON-able dict and the coverage plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from phonotheca.plan.optimizer import PlanResult
from phonotheca.plan.sizes import format_size

__all__ = ["plot_coverage", "render_table", "to_json"]

_TIER_ROWS = ("original", "opus", "metadata", "duplicate", "missing")
_TIER_COLOURS = {"original": "#1f77b4", "opus": "#ff7f0e"}


def _percent(part: float, whole: float = 1.0) -> str:
    return f"{100 * part / whole if whole else 0.0:.2f} %"


def render_table(result: PlanResult) -> str:
    """Render the plan's figures as a plain-text table for a terminal or a log."""
    t = result.totals
    lines = [
        f"budget {format_size(t.budget)}, planned {format_size(t.used_bytes)} "
        f"({_percent(t.used_bytes, t.budget)} of the budget); "
        f"keeping everything would take {format_size(t.full_bytes)}",
        "",
        f"{'tier':<10} {'tracks':>14} {'bytes':>10}",
    ]
    for name in _TIER_ROWS:
        size = format_size(t.bytes_by_tier[name]) if t.bytes_by_tier[name] else "-"
        lines.append(f"{name:<10} {t.tracks_by_tier[name]:>14,} {size:>10}")
    lines.append(
        f"{'total':<10} {sum(t.tracks_by_tier.values()):>14,} {format_size(t.used_bytes):>10}"
    )
    lines += [
        "",
        f"listens covered           {_percent(t.listens_share)} "
        f"({t.listens_covered:,.0f} of {t.listens_total:,.0f})",
        f"quality-weighted          {_percent(t.value_share)} "
        f"(at most {_percent(t.value_bound, t.listens_total)} for any plan with these pins)",
        f"listens without a source  {_percent(t.listens_missing, t.listens_total)} "
        f"({t.listens_missing:,.0f} listens, {t.tracks_by_tier['missing']:,} tracks)",
        f"marginal value            {t.marginal_value_per_gb:,.1f} quality-weighted listens "
        "per extra GB",
    ]
    if t.packed_bytes or t.pinned_tracks:
        lines.append(
            f"forced first              {format_size(t.packed_bytes)} packed, "
            f"{format_size(t.pinned_bytes)} in {t.pinned_tracks:,} pinned originals"
        )
    if t.used_bytes > t.budget:
        lines.append(
            f"over the budget           the packed tracks alone take {t.packed_bytes:,} bytes,"
            f" {format_size(t.used_bytes - t.budget)} more than the budget: nothing new is"
            " planned (packed tracks are published and never dropped)"
        )
    if t.estimated_listens_tracks:
        lines.append(
            f"listens estimated         from popularity for {t.estimated_listens_tracks:,} tracks"
        )
    else:
        lines.append("listens estimated         no (all tracks have listen counts)")
    return "\n".join(lines) + "\n"


def to_json(result: PlanResult) -> dict[str, Any]:
    """Return the plan's figures, settings and coverage curve as JSON-serialisable values."""
    t = result.totals
    o = result.options
    c = result.curve
    return {
        "budget": t.budget,
        "used_bytes": t.used_bytes,
        "full_bytes": t.full_bytes,
        "bytes_by_tier": dict(t.bytes_by_tier),
        "tracks_by_tier": dict(t.tracks_by_tier),
        "listens_total": t.listens_total,
        "listens_covered": t.listens_covered,
        "listens_share": t.listens_share,
        "value": t.value,
        "value_share": t.value_share,
        "value_bound": t.value_bound,
        "listens_missing": t.listens_missing,
        "marginal_value_per_gb": t.marginal_value_per_gb,
        "estimated_listens_tracks": t.estimated_listens_tracks,
        "packed_bytes": t.packed_bytes,
        "pinned_bytes": t.pinned_bytes,
        "pinned_tracks": t.pinned_tracks,
        "options": {
            "opus_kbps": o.opus_kbps,
            "opus_quality": o.opus_quality,
            "min_original_popularity": o.min_original_popularity,
            "exclude_tiers": sorted(o.exclude_tiers),
            "opus_overhead": o.opus_overhead,
            "opus_header_bytes": o.opus_header_bytes,
        },
        "curve": {
            "bytes": [round(x) for x in c.bytes.tolist()],
            "listens_share": c.listens_share.tolist(),
            "value_share": c.value_share.tolist(),
            "opus_bytes": [round(x) for x in c.opus_bytes.tolist()],
            "original_bytes": [round(x) for x in c.original_bytes.tolist()],
            "fixed_bytes": c.fixed_bytes,
        },
    }


def _byte_unit(largest: float) -> tuple[float, str]:
    for scale, name in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if largest >= scale:
            return scale, name
    return 1.0, "bytes"


def plot_coverage(result: PlanResult, path: str | Path) -> None:
    """Draw the share of listens kept against storage to a PNG or SVG file (by extension).

    Each stretch of the curve is shaded by the tier its bytes buy (Opus or original), and
    the budget is marked by a vertical line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise ValueError(f"cannot plot to {str(path)!r}: use a .png or .svg file name")
    c = result.curve
    t = result.totals
    scale, unit = _byte_unit(float(c.bytes[-1]) if len(c.bytes) else 0.0)
    x = c.bytes / scale
    y = 100 * c.listens_share

    figure = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    # A stretch buys mostly Opus when it adds more Opus bytes than original bytes.
    opus_stretch = np.diff(c.opus_bytes) > np.diff(c.original_bytes)
    start = 0
    for end in range(1, len(opus_stretch) + 1):
        if end == len(opus_stretch) or opus_stretch[end] != opus_stretch[start]:
            tier = "opus" if opus_stretch[start] else "original"
            ax.fill_between(
                x[start : end + 1],
                0,
                y[start : end + 1],
                color=_TIER_COLOURS[tier],
                alpha=0.25,
                linewidth=0,
            )
            start = end
    ax.plot(x, y, color="black", linewidth=1.5, label="listens covered")
    ax.plot(
        x, 100 * c.value_share, color="black", linewidth=1, linestyle="--", label="quality-weighted"
    )
    ax.axvline(
        t.budget / scale,
        color="#d62728",
        linewidth=1.2,
        label=f"budget {format_size(t.budget)}: {_percent(t.listens_share)} of listens",
    )
    if c.fixed_bytes:
        ax.axvline(
            c.fixed_bytes / scale,
            color="grey",
            linewidth=1,
            linestyle=":",
            label=f"packed and pinned {format_size(c.fixed_bytes)}",
        )
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=_TIER_COLOURS[name], alpha=0.25, label=f"bytes spent on {name}")
        for name in ("opus", "original")
    ]
    ax.legend(handles=handles, loc="lower right")
    ax.set_xlim(0, max(float(x[-1]) if len(x) else 0.0, t.budget / scale) or 1.0)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"storage ({unit})")
    ax.set_ylabel("share of listens (%)")
    ax.set_title("Listens kept against storage")
    ax.grid(True, alpha=0.3)
    figure.savefig(path, format=kind)
