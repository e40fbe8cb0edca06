"""Synthetic data commands."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from phonotheca.cli import json_option, print_json, progress_bar, synth


@synth.command("catalog")
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tracks", type=click.IntRange(1), required=True, help="Number of tracks.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed, same bytes; another seed, another catalog.",
)
@json_option
def synth_catalog(out_path: Path, tracks: int, seed: int, as_json: bool) -> None:
    """Write a synthetic catalog of TRACKS tracks to OUT (.jsonl or .jsonl.zst)."""
    from phonotheca.synth.catalog import write_catalog

    with progress_bar(tracks, "tracks") as bar:
        task = bar.add_task("synth catalog", total=tracks)
        summary = write_catalog(
            out_path, tracks, seed, progress=lambda n: bar.update(task, advance=n)
        )
    data = asdict(summary)
    if as_json:
        print_json(data)
    else:
        click.echo(
            f"wrote {summary.tracks:,} tracks, {summary.albums:,} albums, {summary.artists:,}"
            f" artists to {out_path} ({summary.bytes_written:,} bytes) in {summary.seconds:.1f} s"
        )
