"""Catalog commands: init, import jsonl, export jsonl, search, shuffle, stats, reindex,
compact."""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import time
from pathlib import Path
from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from phonotheca.archive import init_archive
from phonotheca.catalog import library, records, schema
from phonotheca.catalog.export import catalog_stats, export_jsonl
from phonotheca.catalog.importer import import_lines
from phonotheca.catalog.search import TrackHit, refresh_search, search, search_is_stale, shuffle
from phonotheca.cli import (
    archive_at,
    archive_option,
    err,
    export,
    fail_damaged,
    import_,
    index_steps,
    json_option,
    main,
    out,
    print_json,
    print_summaries_json,
    progress_bar,
    run_import,
    user_errors,
    workers_option,
)
from phonotheca.sources.jsonl import check_jsonl_name
from phonotheca.sources.playlist_files import check_playlist_name, read_playlist_blocks
from phonotheca.sources.playlist_lines import prepare_playlist_lines


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Archive name (prefix of collection names); default: the folder's.")
def init(directory: Path, name: str | None) -> None:
    """Create an archive in DIRECTORY (safe to run again on an existing one)."""
    with user_errors():
        archive = init_archive(directory, name)
    click.echo(f"archive {archive.settings.name!r} ready at {archive.root}")


@import_.command("jsonl")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@archive_option
@json_option
@click.option(
    "--strict", is_flag=True, help="Stop at the first bad line and keep nothing of this import."
)
@workers_option
def import_jsonl(
    files: tuple[Path, ...], archive_dir: Path, as_json: bool, strict: bool, workers: int
) -> None:
    """Import interchange JSONL files, one track (or playlist record) per line: .jsonl,
    plain or compressed (.jsonl.zst, .jsonl.gz, .jsonl.bz2, .jsonl.xz). Other files are
    refused.

    Bad lines go to ARCHIVE/rejects/ with their line number and reason and the import
    goes on. Safe to interrupt: running the same command again resumes. A compressed
    file that is cut short or damaged stops the import with an error naming the file
    and the byte where it broke (exit status 1); the lines before it stay loaded.
    """
    with user_errors():
        for path in files:
            check_jsonl_name(path)  # before anything is imported
    summaries, index_seconds, damage = run_import(
        archive_dir, files, strict, functools.partial(import_lines, workers=workers)
    )
    if as_json:
        print_summaries_json(summaries)
        fail_damaged(damage, files, "lines")
        return
    for s in summaries:
        resumed = f" (resumed at line {s.resumed_at_line})" if s.resumed_at_line else ""
        broke = "" if s.complete else " before the file broke off (the rest was not read)"
        click.echo(
            f"{s.path}: read {s.read:,}, loaded {s.loaded:,}, rejected {s.rejected:,},"
            f" invalid ISRCs {s.invalid_isrc:,}{resumed}{broke} in {s.seconds:.1f} s"
        )
        if s.playlists:
            click.echo(_playlist_counts(s.playlists))
        if s.rejects_file:
            click.echo(f"  rejects: {s.rejects_file}")
    click.echo(f"search index refreshed in {index_seconds:.1f} s")
    fail_damaged(damage, files, "lines")


@import_.command("playlists")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@archive_option
@json_option
@click.option(
    "--strict", is_flag=True, help="Stop at the first bad playlist and keep nothing of this import."
)
def import_playlists(
    files: tuple[Path, ...], archive_dir: Path, as_json: bool, strict: bool
) -> None:
    """Import public playlists: JSPF documents (.json, .jspf: one playlist, as
    ListenBrainz exports them) or JSONL (.jsonl: one JSPF document or playlist record
    a line); plain or compressed (.zst, .gz, .bz2, .xz).

    Entries are matched to the catalog's tracks by MusicBrainz recording id, then ISRC,
    then title, artist and duration; an entry that matches nothing is kept with its
    metadata. Import tracks first (importing the same file again later matches the
    entries left unmatched). Bad playlists go to ARCHIVE/rejects/ with their reason.
    Safe to interrupt: running the same command again resumes; a changed playlist
    replaces the one of the same id.
    """
    with user_errors():
        for path in files:
            check_playlist_name(path)  # before anything is imported
    summaries, _, damage = run_import(
        archive_dir,
        files,
        strict,
        functools.partial(
            import_lines,
            kind="playlists",
            prepare=prepare_playlist_lines,
            read_blocks=read_playlist_blocks,
            workers=0,
        ),
        record="playlist",
    )
    if as_json:
        print_summaries_json(summaries)
        fail_damaged(damage, files, "playlists")
        return
    for s in summaries:
        c = s.playlists or {}
        resumed = f" (resumed at line {s.resumed_at_line})" if s.resumed_at_line else ""
        broke = "" if s.complete else " before the file broke off (the rest was not read)"
        click.echo(
            f"{s.path}: read {s.read:,}, loaded {s.loaded:,}, rejected {s.rejected:,}"
            f"{resumed}{broke} in {s.seconds:.1f} s"
        )
        click.echo(_playlist_counts(c))
        if s.rejects_file:
            click.echo(f"  rejects: {s.rejects_file}")
    fail_damaged(damage, files, "playlists")


def _playlist_counts(c: dict[str, int]) -> str:
    return (
        f"  {c.get('playlists', 0):,} playlists, {c.get('entries', 0):,} entries,"
        f" {c.get('unmatched', 0):,} unmatched (kept)\n  matched by recording id"
        f" {c.get('mbid', 0):,}, by ISRC {c.get('isrc', 0):,}, by name {c.get('name', 0):,}"
    )


@export.command("jsonl")
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@archive_option
@json_option
def export_jsonl_cmd(out_path: Path, archive_dir: Path, as_json: bool) -> None:
    """Write every track, then every playlist, as interchange JSONL to OUT (.jsonl or
    .jsonl.zst)."""
    archive = archive_at(archive_dir)
    with user_errors():
        conn = archive.connect(readonly=True)
    try:
        summary = export_jsonl(conn, out_path)
    finally:
        conn.close()
    if as_json:
        print_json(summary.__dict__)
    else:
        click.echo(
            f"wrote {summary.tracks:,} tracks and {summary.playlists:,} playlists to"
            f" {summary.path} ({summary.bytes:,} bytes)"
        )


def _hits_table(hits: list[TrackHit], width: int) -> RenderableType:
    """Search hits for a person to read and copy ids from: an id is never broken across
    lines, whatever the terminal's width. The other columns fold; when even that leaves no
    room for them, each hit is an id line followed by its details."""
    id_width = max((len(h.id) for h in hits), default=2)
    if width < id_width + _HIT_DETAILS_MIN:
        lines = Text()
        for i, h in enumerate(hits, 1):
            lines.append(f"{i}. {h.id}\n", style="bold")
            for line in textwrap.wrap(_hit_details(h), max(20, width - 3), break_long_words=False):
                lines.append(f"   {line}\n")
        lines.rstrip()
        return lines
    table = Table(box=None, header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True, overflow="ignore", min_width=id_width)
    for col in ("title", "artists", "album"):
        table.add_column(col, overflow="fold", ratio=1)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("pop", justify="right", no_wrap=True)
    for i, h in enumerate(hits, 1):
        table.add_row(
            str(i),
            h.id,
            h.title,
            ", ".join(h.artists),
            h.album or "",
            _duration(h.duration_ms),
            "" if h.popularity is None else str(h.popularity),
        )
    return table


# Below this many columns beside the id, a table's other columns fold into unreadable
# slivers: the hits are listed as lines instead.
_HIT_DETAILS_MIN = 40


def _duration(ms: int | None) -> str:
    return f"{ms // 60000}:{ms // 1000 % 60:02d}" if ms is not None else ""


def _hit_details(h: TrackHit) -> str:
    parts = [h.title, ", ".join(h.artists)]
    if h.album:
        parts.append(h.album)
    if h.duration_ms is not None:
        parts.append(_duration(h.duration_ms))
    if h.popularity is not None:
        parts.append(f"popularity {h.popularity}")
    return " · ".join(parts)


def read_conn(archive_dir: Path) -> Any:
    archive = archive_at(archive_dir)
    with user_errors():
        return archive.connect(readonly=True)


@main.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Most results to show.",
)
@archive_option
@json_option
def search_cmd(query: tuple[str, ...], limit: int, archive_dir: Path, as_json: bool) -> None:
    """Find tracks by words of their title, artists or album; most popular first.

    The last word also matches as a prefix ("pink flo"). Case and accents are ignored.
    """
    conn = read_conn(archive_dir)
    try:
        if search_is_stale(conn):
            err.print(
                "[yellow]warning:[/] the search index is out of date:"
                " run 'phonotheca reindex' (or finish the interrupted import)"
            )
        hits = search(conn, " ".join(query), limit)
    finally:
        conn.close()
    if as_json:
        print_json([h.to_json() for h in hits])
    elif hits:
        out.print(_hits_table(hits, out.width), crop=False)
    else:
        click.echo("no match")


@main.command("shuffle")
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, 10_000),
    default=10,
    show_default=True,
    help="Number of tracks to pick.",
)
@archive_option
@json_option
def shuffle_cmd(count: int, archive_dir: Path, as_json: bool) -> None:
    """Pick tracks uniformly at random from the whole catalog (true shuffle)."""
    conn = read_conn(archive_dir)
    try:
        hits = shuffle(conn, count)
    finally:
        conn.close()
    if as_json:
        print_json([h.to_json() for h in hits])
    elif hits:
        out.print(_hits_table(hits, out.width), crop=False)
    else:
        click.echo("the catalog is empty")


@main.command("stats")
@archive_option
@json_option
def stats_cmd(archive_dir: Path, as_json: bool) -> None:
    """Counts of tracks, albums, artists and ISRCs in the catalog."""
    conn = read_conn(archive_dir)
    try:
        stats = catalog_stats(conn)
    finally:
        conn.close()
    if as_json:
        print_json(stats.to_json())
        return
    for key, value in stats.to_json().items():
        click.echo(f"{key.replace('_', ' '):>24}: {value:,}")


@main.command()
@archive_option
def reindex(archive_dir: Path) -> None:
    """Rebuild the search index and the lists music apps page through (library.sqlite3).

    Imports and builds do this themselves; a server remakes the lists when the catalog
    or the collections it holds change.
    """
    archive = archive_at(archive_dir)
    conn = archive.connect()
    try:
        t0 = time.monotonic()
        with progress_bar(None, "tracks") as bar:
            step = index_steps(bar)
            schema.ensure_indexes(conn, step)
            refresh_search(conn, force=True, progress=step)
            library.refresh(conn, step, force=True)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    click.echo(f"search index and library lists rebuilt in {time.monotonic() - t0:.1f} s")


@main.command()
@archive_option
@click.option(
    "--vacuum",
    is_flag=True,
    help="Then give the freed space back to the filesystem (SQLite VACUUM: needs free disk"
    " about twice the catalog's size, in ARCHIVE/work/sqlite and beside the catalog)."
    " Without it, later imports reuse the space.",
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Rewrite every chunk that holds a replaced record, not only those that are mostly"
    " replaced records (say before 'phonotheca publish').",
)
@json_option
def compact(archive_dir: Path, vacuum: bool, every: bool, as_json: bool) -> None:
    """Drop the source records that newer ones replaced.

    Each imported line is kept for export; when a track takes a newer record, its old
    line stays behind. This drops the chunks of old lines no track uses, and rewrites
    those that are over a quarter old lines (all that hold one, with --all) and the
    small ones a re-import leaves. Tracks, search and export are unchanged. Safe to
    interrupt and to run beside an import; run it after re-importing updated dumps.
    """
    archive = archive_at(archive_dir)
    with user_errors():
        conn = archive.connect()
        read = archive.connect(readonly=True)
    try:
        with progress_bar(None, "chunks") as bar:
            task = bar.add_task("compact source records")

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = records.compact(conn, read, every=every, vacuum=vacuum, progress=progress)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        read.close()
        conn.close()
    if as_json:
        print_json(dataclasses.asdict(summary))
        return
    mb = 1e6
    click.echo(
        f"source records: {summary.chunks_before:,} chunks ({summary.bytes_before / mb:,.1f} MB)"
        f" -> {summary.chunks_after:,} ({summary.bytes_after / mb:,.1f} MB);"
        f" {summary.lines_dropped:,} replaced records dropped,"
        f" {summary.lines_moved:,} moved out of {summary.chunks_rewritten:,} sparse or small"
        " chunks"
    )
    if summary.dangling:
        click.echo(
            f"warning: {summary.dangling:,} tracks point at source records that are missing"
            " (was the catalog changed by another tool?)",
            err=True,
        )
    if not vacuum and summary.bytes_after < summary.bytes_before:
        click.echo("freed pages are reused by later imports (--vacuum gives them back now)")
