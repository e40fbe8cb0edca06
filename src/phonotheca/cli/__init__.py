"""The ``phonotheca`` command: a thin layer that parses, calls the library, and prints.

The groups and shared options live here; each stage's commands are in a module of
their own (``cli/catalog.py``, ``cli/plan.py``, ...) that registers them on import.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from phonotheca import __version__
from phonotheca.archive import Archive, ArchiveError, open_archive
from phonotheca.catalog import schema
from phonotheca.cli import failures
from phonotheca.config import SettingsError
from phonotheca.sources.compressed import DamagedInput, SourceError

F = TypeVar("F", bound=Callable[..., Any])
# soft_wrap: a message is one line however wide the terminal, so logs stay grep-able and
# ids and paths can be copied; the terminal wraps it for the eye. Tables still fit the width.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


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


_archive_in_use: Archive | None = None
"""The archive the running command opened, named in messages about disk failures."""


def archive_at(archive_dir: Path, create: bool = False) -> Archive:
    global _archive_in_use
    with user_errors():
        archive = open_archive(archive_dir, create=create)
    _archive_in_use = archive
    return archive


class _Main(click.Group):
    """The ``phonotheca`` group: a full disk, a lock held by another command, a failing
    disk or a damaged catalog end a command with one clear line (cli/failures.py), not a
    traceback; anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (sqlite3.Error, OSError) as exc:
            message = failures.explain(exc, _archive_in_use)
            if message is None:
                raise
            raise click.ClickException(message) from exc


@contextmanager
def until_stopped(what: str) -> Iterator[None]:
    """Run a server until Ctrl-C or SIGTERM, then end with one line and exit status 0.

    A service manager (or ``kill``) stops a server with SIGTERM: it is taken as Ctrl-C,
    so the ``finally`` blocks run and children are stopped as on Ctrl-C, and no traceback
    is printed. Servers that catch the signals themselves (uvicorn) hand them back after
    their own shutdown, which lands here too. Print the server's first line inside the
    block with ``click.echo`` (a signal may come as soon as it is out).
    """

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    # Plain writes, not the rich console: a signal that lands inside rich's print leaves
    # its buffer uncleared, and the next print would repeat the line.
    click.echo(f"stopped {what}", err=True)


def workers_option(f: F) -> F:
    """``--workers``: parsing processes of an import."""
    return click.option(
        "--workers",
        type=click.IntRange(0, 64),
        default=2,
        show_default=True,
        help="Parsing processes beside the writer (0: parse in the writer).",
    )(f)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def print_summaries_json(summaries: Sequence[Any]) -> None:
    """One import's summary as an object; several as a list (each has ``to_json()``)."""
    if len(summaries) == 1:
        print_json(summaries[0].to_json())
    else:
        print_json([s.to_json() for s in summaries])


class _Rate(ProgressColumn):
    """Bytes per second, or for a task added with ``unit="tracks"`` (say) tracks per
    second: one bar may show the bytes of an input file and then the tracks indexed."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "bytes")
        speed = task.finished_speed or task.speed
        if unit == "bytes":
            shown = "?" if speed is None else f"{filesize.decimal(int(speed))}/s"
        else:
            shown = "?" if speed is None else f"{speed:,.0f} {unit}/s"
        return Text(shown, style="progress.data.speed")


def progress_bar(total: int | None, unit: str) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit == "bytes":
        columns.append(_Rate())
    else:
        columns.append(MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=not err.is_terminal, transient=False)


def index_steps(bar: Progress) -> schema.StepProgress:
    """A line of ``bar`` for the index builds that end an import: the step's name, and
    how many tracks are indexed when the step can tell (the search index can)."""
    task = bar.add_task("indexes", total=None, unit="tracks")

    def step(name: str, done: int | None, total: int | None) -> None:
        bar.update(task, description=name, completed=done or 0, total=total)

    return step


S = TypeVar("S")


def run_import(
    archive_dir: Path,
    files: tuple[Path, ...],
    strict: bool,
    import_one: Callable[..., S],
    record: str = "line",
) -> tuple[list[S], float, DamagedInput | None]:
    """The frame every import command shares: one connection, a progress bar per file,
    ``--strict`` as one transaction around all files, then the postponed indexes.

    ``import_one(conn, path, rejects_dir, strict=..., progress=...)`` imports one file.
    Returns the per-file summaries, the seconds spent on the indexes, and the
    :class:`DamagedInput` of a file that broke off: the import stops there, keeps what it
    loaded (its summary is the last, ``complete`` False) and builds the indexes; the
    command reports it with :func:`fail_damaged` after the summaries. With ``--strict``
    nothing is kept and the error is raised at once.
    """
    from phonotheca.catalog.importer import ImportRejected, finish_import

    archive = archive_at(archive_dir, create=True)
    conn = archive.connect()
    summaries: list[S] = []
    damage: DamagedInput | None = None
    try:
        with progress_bar(None, "bytes") as bar, user_errors():
            if strict:
                conn.execute("BEGIN IMMEDIATE")
            try:
                for path in files:
                    task = bar.add_task(f"import {path.name}", total=path.stat().st_size)

                    def advance(done: int, pos: int, size: int, task: Any = task) -> None:
                        bar.update(task, completed=pos)

                    try:
                        summaries.append(
                            import_one(
                                conn, path, archive.rejects_dir, strict=strict, progress=advance
                            )
                        )
                    except DamagedInput as exc:
                        if strict:
                            raise
                        damage = exc
                        if exc.summary is not None:
                            summaries.append(exc.summary)
                        break
                    bar.update(task, completed=path.stat().st_size)
                if strict:
                    conn.execute("COMMIT")
            except ImportRejected as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise click.ClickException(
                    f"{exc} (--strict: nothing of this import was kept; fix the {record} or"
                    " run without --strict to load the rest and collect rejects)"
                ) from exc
            except DamagedInput as exc:  # --strict
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise click.ClickException(
                    f"{exc} (--strict: nothing of this import was kept)"
                ) from exc
            except BaseException:
                if strict and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            t0 = time.monotonic()
            finish_import(conn, index_steps(bar))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return summaries, time.monotonic() - t0, damage


def fail_damaged(damage: DamagedInput | None, files: Sequence[Path], what: str) -> None:
    """End an import command whose input broke off: the error names the file and the
    offset, says what was kept and how to go on, and the exit status is 1."""
    if damage is None:
        return
    rest = list(files)[list(files).index(damage.path) + 1 :] if damage.path in files else []
    skipped = f" The files after it were not imported: {', '.join(map(str, rest))}." if rest else ""
    raise click.ClickException(
        f"{damage}. The {what} read before the break are loaded: replace the file with a"
        f" whole one and run the command again to load the rest.{skipped}"
    )


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phonotheca")
def main() -> None:
    """Build, publish, mirror and serve an open music preservation archive.

    Lawful sources only: open metadata (JSONL, MusicBrainz, ListenBrainz) and audio
    files you may archive. See docs/FORMAT.md for the formats.
    """


# -- import ----------------------------------------------------------------------------------


@main.group("import")
def import_() -> None:
    """Load source records into the catalog."""


# -- export, search, shuffle, stats ----------------------------------------------------------


@main.group()
def export() -> None:
    """Write the catalog out in an interchange format."""


# -- synthetic data ---------------------------------------------------------------------------


@main.group()
def synth() -> None:
    """Generate deterministic synthetic data for demos, tests and benchmarks."""


# -- torrents ---------------------------------------------------------------------------------


@main.group()
def torrents() -> None:
    """Inspect published torrents: tracker health, what to seed."""


# Command modules register themselves on the groups above.
from phonotheca.cli import build as _build  # noqa: E402, F401
from phonotheca.cli import catalog as _catalog  # noqa: E402, F401
from phonotheca.cli import fetch as _fetch  # noqa: E402, F401
from phonotheca.cli import files as _files  # noqa: E402, F401
from phonotheca.cli import key as _key  # noqa: E402, F401
from phonotheca.cli import mirror as _mirror  # noqa: E402, F401
from phonotheca.cli import plan as _plan  # noqa: E402, F401
from phonotheca.cli import publish as _publish  # noqa: E402, F401
from phonotheca.cli import serve as _serve  # noqa: E402, F401
from phonotheca.cli import sources as _sources  # noqa: E402, F401
from phonotheca.cli import synthetic as _synthetic  # noqa: E402, F401
from phonotheca.cli import users as _users  # noqa: E402, F401
