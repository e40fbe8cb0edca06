"""The ``phonotheca`` command: a thin layer that parses, calls the library, and prints."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from phonotheca import __version__
from phonotheca.archive import Archive, ArchiveError, init_archive, open_archive
from phonotheca.catalog import schema
from phonotheca.catalog.export import catalog_stats, export_jsonl
from phonotheca.catalog.importer import ImportRejected, finish_import, import_lines
from phonotheca.catalog.search import TrackHit, refresh_search, search, search_is_stale, shuffle
from phonotheca.config import SettingsError
from phonotheca.sources.jsonl import SourceError

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)
out = Console()


def archive_option(f: F) -> F:
    return click.option(
        "--archive",
        "archive_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        envvar="PHONOTHECA_ARCHIVE",
        show_default="current directory, or $PHONOTHECA_ARCHIVE",
        help="Archive directory.",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can cause into one clear line and a non-zero exit."""
    try:
        yield
    except (ArchiveError, SettingsError, SourceError, schema.CatalogError) as exc:
        raise click.ClickException(str(exc)) from exc


def _open(archive_dir: Path, create: bool = False) -> Archive:
    with user_errors():
        return open_archive(archive_dir, create=create)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _progress(total: int | None, unit: str) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit == "bytes":
        columns.append(TransferSpeedColumn())
    else:
        columns.append(MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=not err.is_terminal, transient=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phonotheca")
def main() -> None:
    """Build, publish, mirror and serve an open music preservation archive.

    Lawful sources only: open metadata (JSONL, MusicBrainz, ListenBrainz) and audio
    files you may archive. See docs/FORMAT.md for the formats.
    """


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Archive name (prefix of collection names); default: the folder's.")
def init(directory: Path, name: str | None) -> None:
    """Create an archive in DIRECTORY (safe to run again on an existing one)."""
    with user_errors():
        archive = init_archive(directory, name)
    click.echo(f"archive {archive.settings.name!r} ready at {archive.root}")


# -- import ----------------------------------------------------------------------------------


@main.group("import")
def import_() -> None:
    """Load source records into the catalog."""


@import_.command("jsonl")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@archive_option
@json_option
@click.option(
    "--strict", is_flag=True, help="Stop at the first bad line and keep nothing of this import."
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=2,
    show_default=True,
    help="Parsing processes beside the writer (0: parse in the writer).",
)
def import_jsonl(
    files: tuple[Path, ...], archive_dir: Path, as_json: bool, strict: bool, workers: int
) -> None:
    """Import interchange JSONL files (.jsonl or .jsonl.zst), one track per line.

    Bad lines go to ARCHIVE/rejects/ with their line number and reason and the import
    goes on. Safe to interrupt: running the same command again resumes.
    """
    archive = _open(archive_dir, create=True)
    conn = archive.connect()
    summaries = []
    try:
        with _progress(None, "bytes") as bar, user_errors():
            if strict:
                conn.execute("BEGIN IMMEDIATE")
            try:
                for path in files:
                    task = bar.add_task(f"import {path.name}", total=path.stat().st_size)

                    def advance(lines: int, pos: int, size: int, task: Any = task) -> None:
                        bar.update(task, completed=pos)

                    summaries.append(
                        import_lines(
                            conn,
                            path,
                            archive.rejects_dir,
                            strict=strict,
                            workers=workers,
                            progress=advance,
                        )
                    )
                    bar.update(task, completed=path.stat().st_size)
                if strict:
                    conn.execute("COMMIT")
            except ImportRejected as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise click.ClickException(
                    f"{exc} (--strict: nothing of this import was kept; fix the line or"
                    " run without --strict to load the rest and collect rejects)"
                ) from exc
            except BaseException:
                if strict and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            task = bar.add_task("search index", total=None)
            t0 = time.monotonic()
            finish_import(conn)
            bar.update(task, total=1, completed=1)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    if as_json:
        _print_json(
            summaries[0].to_json() if len(summaries) == 1 else [s.to_json() for s in summaries]
        )
        return
    for s in summaries:
        resumed = f" (resumed at line {s.resumed_at_line})" if s.resumed_at_line else ""
        click.echo(
            f"{s.path}: read {s.read:,}, loaded {s.loaded:,}, rejected {s.rejected:,},"
            f" invalid ISRCs {s.invalid_isrc:,}{resumed} in {s.seconds:.1f} s"
        )
        if s.rejects_file:
            click.echo(f"  rejects: {s.rejects_file}")
    click.echo(f"search index refreshed in {time.monotonic() - t0:.1f} s")


# -- export, search, shuffle, stats ----------------------------------------------------------


@main.group()
def export() -> None:
    """Write the catalog out in an interchange format."""


@export.command("jsonl")
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@archive_option
@json_option
def export_jsonl_cmd(out_path: Path, archive_dir: Path, as_json: bool) -> None:
    """Write every track as interchange JSONL to OUT (.jsonl or .jsonl.zst)."""
    archive = _open(archive_dir)
    with user_errors():
        conn = archive.connect(readonly=True)
    try:
        summary = export_jsonl(conn, out_path)
    finally:
        conn.close()
    if as_json:
        _print_json(summary.__dict__)
    else:
        click.echo(f"wrote {summary.tracks:,} tracks to {summary.path} ({summary.bytes:,} bytes)")


def _hits_table(hits: list[TrackHit]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("#", "title", "artists", "album", "time", "pop", "id"):
        table.add_column(col, overflow="fold")
    for i, h in enumerate(hits, 1):
        d = h.duration_ms
        table.add_row(
            str(i),
            h.title,
            ", ".join(h.artists),
            h.album or "",
            f"{d // 60000}:{d // 1000 % 60:02d}" if d is not None else "",
            "" if h.popularity is None else str(h.popularity),
            h.id,
        )
    return table


def _read_conn(archive_dir: Path) -> Any:
    archive = _open(archive_dir)
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
    conn = _read_conn(archive_dir)
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
        _print_json([h.to_json() for h in hits])
    elif hits:
        out.print(_hits_table(hits))
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
    conn = _read_conn(archive_dir)
    try:
        hits = shuffle(conn, count)
    finally:
        conn.close()
    if as_json:
        _print_json([h.to_json() for h in hits])
    elif hits:
        out.print(_hits_table(hits))
    else:
        click.echo("the catalog is empty")


@main.command("stats")
@archive_option
@json_option
def stats_cmd(archive_dir: Path, as_json: bool) -> None:
    """Counts of tracks, albums, artists and ISRCs in the catalog."""
    conn = _read_conn(archive_dir)
    try:
        stats = catalog_stats(conn)
    finally:
        conn.close()
    if as_json:
        _print_json(stats.to_json())
        return
    for key, value in stats.to_json().items():
        click.echo(f"{key.replace('_', ' '):>24}: {value:,}")


@main.command()
@archive_option
def reindex(archive_dir: Path) -> None:
    """Rebuild the search index (imports do this themselves)."""
    archive = _open(archive_dir)
    conn = archive.connect()
    try:
        t0 = time.monotonic()
        schema.ensure_indexes(conn)
        refresh_search(conn, force=True)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    click.echo(f"search index rebuilt in {time.monotonic() - t0:.1f} s")


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
    archive = _open(archive_dir)
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
            record = plan_catalog(conn, options, progress=lambda m: status.update(m))
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
        _print_json(data)
        return
    click.echo(render_table(record.result), nl=False)
    click.echo(f"plan {record.plan_id} written to the ledger ({record.written:,} rows)")
    if plot_path is not None:
        click.echo(f"coverage curve: {plot_path}")


# -- synthetic data ---------------------------------------------------------------------------


@main.group()
def synth() -> None:
    """Generate deterministic synthetic data for demos, tests and benchmarks."""


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

    with _progress(tracks, "tracks") as bar:
        task = bar.add_task("synth catalog", total=tracks)
        summary = write_catalog(
            out_path, tracks, seed, progress=lambda n: bar.update(task, completed=n)
        )
    data = {k: v for k, v in vars(summary).items()}
    if as_json:
        _print_json(data)
    else:
        click.echo(", ".join(f"{k} {v}" for k, v in data.items()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
