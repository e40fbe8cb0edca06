"""The plan command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from phonotheca.cli import archive_at, archive_option, err, json_option, main, print_json

# -- plan ------------------------------------------------------------------------------------


class SizeType(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from phonotheca.plan.sizes import parse_size

        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@main.command("plan")
@click.option(
    "--budget",
    type=SizeType(),
    required=True,
    help="Storage to fill, e.g. 300TB, 1.5TiB, 800GB (decimal and binary units).",
)
@click.option(
    "--opus-kbps",
    type=click.FloatRange(6, 510),
    default=75.0,
    show_default=True,
    help="Bitrate of the Opus tier.",
)
@click.option(
    "--opus-quality",
    type=click.FloatRange(0, 1),
    default=0.95,
    show_default=True,
    help="What a listen of the Opus file is worth against the original (value factor).",
)
@click.option(
    "--min-original-popularity",
    type=click.IntRange(0, 100),
    default=None,
    help="Tracks at or above this popularity keep their original when they have a source.",
)
@click.option(
    "--exclude-tier",
    type=click.Choice(["opus", "original"]),
    multiple=True,
    help="Never plan this tier (repeatable).",
)
@click.option(
    "--playlist-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="W",
    help="Count each public playlist (import playlists) that holds a track as W listens"
    " of it: tracks people put in playlists are worth keeping. The plan's value and its"
    " listens figures include them. 0: playlists do not weigh.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the coverage curve to this .png or .svg file.",
)
@archive_option
@json_option
def plan_cmd(
    budget: int,
    opus_kbps: float,
    opus_quality: float,
    min_original_popularity: int | None,
    exclude_tier: tuple[str, ...],
    playlist_weight: float,
    plot_path: Path | None,
    archive_dir: Path,
    as_json: bool,
) -> None:
    """Decide per track: original file, Opus re-encode or metadata only, within a budget.

    Maximises the listens kept (Opus weighted by --opus-quality); tracks sharing an ISRC
    keep one file. Writes the plan to the ledger (replacing the previous one; packed
    tracks keep their place) and prints the coverage report.
    """
    from phonotheca.plan.ledger import plan_catalog
    from phonotheca.plan.optimizer import PlanInfeasible, PlanOptions
    from phonotheca.plan.report import plot_coverage, render_table, to_json

    if plot_path is not None and plot_path.suffix.lower() not in (".png", ".svg"):
        raise click.BadParameter("the plot file must end in .png or .svg", param_hint="--plot")
    archive = archive_at(archive_dir)
    options = PlanOptions(
        budget=budget,
        opus_kbps=opus_kbps,
        opus_quality=opus_quality,
        min_original_popularity=min_original_popularity,
        exclude_tiers=frozenset(exclude_tier),
    )
    conn = archive.connect()
    try:
        with err.status("planning") as status:
            record = plan_catalog(
                conn,
                options,
                progress=lambda m: status.update(m),
                playlist_weight=playlist_weight,
            )
    except PlanInfeasible as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        conn.close()
    if plot_path is not None:
        plot_coverage(record.result, plot_path)
    if as_json:
        data = to_json(record.result)
        data["plan_id"] = record.plan_id
        data["ledger_rows"] = record.written
        if playlist_weight:
            data["playlists"] = {
                "weight": playlist_weight,
                "tracks": record.playlist_tracks,
                "listens": record.playlist_listens,
            }
        p = record.published
        data["published"] = {
            "collections": p.collections,
            "track_bytes": p.track_bytes,
            "packing_bytes": p.overhead,
            "covers_bytes": p.covers_bytes,
            "bytes": p.total,
        }
        print_json(data)
        return
    click.echo(render_table(record.result), nl=False)
    if playlist_weight:
        click.echo(
            f"playlists                 {record.playlist_tracks:,} tracks weighed:"
            f" +{record.playlist_listens:,.0f} listens ({playlist_weight:g} a playlist)"
        )
    p = record.published
    if p.collections:
        click.echo(
            f"published so far          {p.total:,} bytes in {p.collections} collections:"
            f" {p.track_bytes:,} of track files (the packed bytes above), {p.overhead:,} of"
            f" tar headers, bag files and indexes, {p.covers_bytes:,} of cover art (these two"
            " are not counted in the budget)"
        )
    click.echo(f"plan {record.plan_id} written to the ledger ({record.written:,} rows)")
    if plot_path is not None:
        click.echo(f"coverage curve: {plot_path}")
