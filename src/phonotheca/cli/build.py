"""Commands: build and validate: pack the plan into collections and torrents, check them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from phonotheca.build.run import Progress as BuildProgress
from phonotheca.catalog import library
from phonotheca.cli import archive_at, archive_option, err, json_option, main, print_json


class _BuildBar(BuildProgress):
    """Tracks staged out of planned, with tracks/s, MB/s and an ETA."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        )
        self.task = self.bar.add_task("building", total=None, rate="")
        self.started = time.monotonic()
        self.tracks = 0
        self.nbytes = 0

    def start(self, tracks: int, planned_bytes: int) -> None:
        self.bar.update(self.task, total=tracks)

    def staged(self, tracks: int, nbytes: int) -> None:
        self.tracks += tracks
        self.nbytes += nbytes
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{self.tracks / elapsed:,.1f} tracks/s {self.nbytes / elapsed / 1e6:,.1f} MB/s"
        self.bar.update(self.task, advance=tracks, rate=rate)

    def published(self, collection: str) -> None:
        self.bar.console.print(f"published {collection}")


@main.command("build")
@click.option(
    "--workers",
    type=click.IntRange(0, 512),
    default=lambda: os.cpu_count() or 1,
    show_default="number of CPUs",
    help="Local worker processes that transcode and pack (0: all in this process).",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    help="Run the tasks on this Dask distributed scheduler instead of local processes;"
    " every worker must see the archive and the sources at the same paths.",
)
@click.option(
    "--torrent-format",
    type=click.Choice(["v1", "hybrid"]),
    default=None,
    help="BitTorrent v1 (every client reads it) or hybrid v1+v2; default: the setting"
    " build.torrent_format (v1).",
)
@archive_option
@json_option
def build_cmd(
    workers: int,
    scheduler: str | None,
    torrent_format: str | None,
    archive_dir: Path,
    as_json: bool,
) -> None:
    """Pack every planned track into collections and make their torrents.

    Originals are copied bit-exact, the Opus tier is transcoded; tracks go into BagIt
    bags of tar volumes under ARCHIVE/torrents/, grouped by popularity band (most
    popular first) and cut at the collection size, each with its .torrent. Cover art
    of the packed albums goes into covers collections. The output is byte-identical
    for the same inputs and settings, whatever the number of workers.

    Safe to interrupt: run it again and it finishes the work with the same bytes. A
    source file that is gone or changed is reported and its track set aside
    (error_source_missing / error_source_changed); the build goes on. Published
    collections are never rewritten: a later build adds new ones.
    """
    from phonotheca.build.executor import BuildSetupError
    from phonotheca.build.run import BuildError, BuildOptions, build_archive

    archive = archive_at(archive_dir)
    started = time.monotonic()
    bar = _BuildBar()
    try:
        with bar.bar:
            summary = build_archive(
                archive,
                BuildOptions(workers=workers, scheduler=scheduler, torrent_format=torrent_format),
                bar,
            )
    except (BuildError, BuildSetupError) as exc:
        raise click.ClickException(str(exc)) from exc
    # The tracks a server here plays changed: the lists music apps page through follow.
    conn = archive.connect()
    try:
        library.refresh(conn)
    finally:
        conn.close()
    seconds = time.monotonic() - started
    if as_json:
        print_json(
            {
                "collections": summary.collections,
                "cover_collections": summary.cover_collections,
                "tracks": summary.tracks,
                "images": summary.images,
                "bytes": summary.bytes,
                "errors": summary.errors,
                "problems": summary.problems,
                "seconds": round(seconds, 3),
            }
        )
        return
    from phonotheca.plan.sizes import format_size

    click.echo(
        f"published {len(summary.collections)} audio and {len(summary.cover_collections)}"
        f" cover collection(s): {summary.tracks:,} tracks, {summary.images:,} images,"
        f" {format_size(summary.bytes)} in {seconds:.1f} s"
    )
    for status, count in sorted(summary.errors.items()):
        click.echo(f"{count:,} track(s) set aside: {status}")
    for problem in summary.problems:
        click.echo(f"  {problem}")
    if not summary.collections and not summary.cover_collections and not summary.errors:
        click.echo("nothing to build: every planned track is packed")


@main.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def validate_cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check collections against docs/FORMAT.md: bag, index, tar headers, torrent.

    PATH is a collection directory (its .torrent is looked for beside it) or a
    torrents/ directory, whose every collection is checked. Every problem is printed
    with its location; the exit code is 1 when there is any.
    """
    from phonotheca.build.validate import Problem, validate_collection
    from phonotheca.torrents.check import check_torrent

    collections: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise click.ClickException(f"{path}: not a directory (give a collection directory)")
        if (path / "bagit.txt").exists() or (path / "data").is_dir():
            collections.append(path)
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and (p / "bagit.txt").exists())
            if not found:
                raise click.ClickException(f"{path}: no collection (no bagit.txt) found there")
            collections.extend(found)

    def torrent_check(bag_dir: Path) -> list[Problem]:
        torrent = bag_dir.parent / f"{bag_dir.name}.torrent"
        if not torrent.exists():
            return [Problem(".", f"no torrent at {torrent}")]
        return check_torrent(bag_dir, torrent)

    report: dict[str, list[str]] = {}
    for bag_dir in collections:
        problems = validate_collection(bag_dir, extra_checks=[torrent_check])
        report[str(bag_dir)] = [str(p) for p in problems]
    if as_json:
        print_json({"collections": report, "ok": not any(report.values())})
    else:
        for name, lines in report.items():
            if lines:
                click.echo(f"{name}: {len(lines)} problem(s)")
                for line in lines:
                    click.echo(f"  {line}")
            else:
                click.echo(f"{name}: valid")
    if any(report.values()):
        raise SystemExit(1)
