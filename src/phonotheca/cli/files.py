"""Commands for audio files: import files (scan, match, cover art), synth audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from phonotheca.cli import (
    archive_at,
    archive_option,
    err,
    import_,
    json_option,
    print_json,
    progress_bar,
    synth,
    user_errors,
)


class _FilesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} files/s" if speed else "", style="progress.data.speed")


def _files_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _FilesPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )


@import_.command("files")
@click.argument(
    "paths", metavar="DIR...", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
@archive_option
@json_option
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=2,
    show_default=True,
    help="Processes that read and hash files beside the writer (0: read in the writer).",
)
@click.option(
    "--no-fingerprints",
    is_flag=True,
    help="Never compute Chromaprint fingerprints (ties by name go to the closest duration).",
)
@click.option(
    "--loudness",
    is_flag=True,
    help="Also decode each file and measure its EBU R128 loudness (a full decode: several"
    " times slower than reading tags and hashing). Measures unchanged files never measured"
    " too. The build measures what it packs anyway and reuses these.",
)
def import_files(
    paths: tuple[Path, ...],
    archive_dir: Path,
    as_json: bool,
    workers: int,
    no_fingerprints: bool,
    loudness: bool,
) -> None:
    """Scan folders of audio files: read tags and stream properties, hash, match each file
    to a catalog track (MusicBrainz id, ISRC, artist + title + duration, fingerprint) or
    create one, and keep cover art in ARCHIVE/blobs/.

    A rescan only reads files whose size or mtime changed; files that are gone are marked
    missing. Broken files are listed in ARCHIVE/rejects/ and never stop the scan. Safe to
    interrupt: running the same command again finishes the work.
    """
    from phonotheca.sources.files import scan_files

    archive = archive_at(archive_dir, create=True)
    conn = archive.connect()
    try:
        with _files_bar() as bar, user_errors():
            task = bar.add_task("scan files", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = scan_files(
                conn,
                list(paths),
                blobs_dir=archive.blobs_dir,
                rejects_dir=archive.rejects_dir,
                workers=workers,
                fingerprints=not no_fingerprints,
                loudness=loudness,
                progress=advance,
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    if as_json:
        print_json(summary.to_json())
        return
    matched = ", ".join(f"{k} {v:,}" for k, v in summary.matched.items())
    click.echo(
        f"{summary.files:,} audio files: {summary.scanned:,} read, {summary.skipped_unchanged:,}"
        f" unchanged, {summary.errors:,} errors, {summary.missing:,} newly missing"
        f" ({summary.files_per_second:,.0f} files/s)"
    )
    click.echo(f"  matched: {matched}; new tracks {summary.created:,}")
    click.echo(
        f"  cover art: {summary.blobs_stored:,} new blobs, {summary.images_linked:,} images linked"
    )
    if summary.rejects_file:
        click.echo(f"  rejects: {summary.rejects_file}")


@synth.command("audio")
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--catalog",
    "catalog",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A catalog made by 'phonotheca synth catalog' (.jsonl or .jsonl.zst).",
)
@click.option("--tracks", type=click.IntRange(1), required=True, help="Number of tracks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--min-seconds",
    type=click.FloatRange(0.5, 3600),
    default=20.0,
    show_default=True,
    help="Shortest piece.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(0.5, 3600),
    default=40.0,
    show_default=True,
    help="Longest piece.",
)
@json_option
def synth_audio(
    out_dir: Path,
    catalog: Path,
    tracks: int,
    seed: int,
    min_seconds: float,
    max_seconds: float,
    as_json: bool,
) -> None:
    """Write generated music for TRACKS tracks of a synthetic catalog into OUT_DIR.

    The most popular tracks and a sample of the tail, as Ogg Vorbis, FLAC, MP3, Ogg Opus
    and M4A, tagged in varied ways (full, artist and title only, none), with some cover
    art and a few broken files; OUT_DIR/manifest.jsonl lists how each file was made.
    OUT_DIR/catalog.jsonl holds the chosen tracks' catalog records with the lengths of
    their files: import it after the catalog for a catalog that describes the files.
    """
    from phonotheca.synth.audio import summary_json, write_audio

    if min_seconds > max_seconds:
        raise click.BadParameter("--min-seconds is larger than --max-seconds")
    with progress_bar(tracks, "tracks") as bar, user_errors():
        task = bar.add_task("synth audio", total=tracks)
        summary = write_audio(
            catalog,
            out_dir,
            tracks,
            seed,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            progress=lambda n: bar.update(task, completed=n),
        )
    data: dict[str, Any] = summary_json(summary)
    if as_json:
        print_json(data)
    else:
        click.echo(", ".join(f"{k} {v}" for k, v in data.items()))
