"""Commands: mirror (and mirror status), verify, fetch, torrents suggest (issue 7)."""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from phonotheca.cli import err, json_option, main, print_json, progress_bar, torrents
from phonotheca.config import SettingsError, load_settings
from phonotheca.mirror.choose import Choice, choose
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.torrents.listing import LISTING_FILE, ListingError, read_listing


@contextmanager
def mirror_errors() -> Iterator[None]:
    try:
        yield
    except (MirrorError, ListingError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from exc


def _size(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _rate(text: str | None, option: str) -> int:
    """``10MB`` or ``10MB/s``: bytes per second; ``0`` or nothing is unlimited."""
    if not text:
        return 0
    return _size(text.removesuffix("/s"), option)


def _print_choice(choice: Choice, *, title: str) -> None:
    err.print(
        f"{title}: {len(choice.picks)} torrent(s), {format_size(choice.bytes)} of"
        f" {format_size(choice.budget)}, {choice.listens:,} listens covered"
    )
    for pick in choice.picks:
        err.print(f"  + {pick.entry.name} ({format_size(pick.entry.size)}): {pick.reason}")
    for dropped in choice.dropped:
        err.print(f"  - {dropped.name}: drop ({dropped.reason})")


# -- torrents suggest ---------------------------------------------------------------------------


@torrents.command("suggest")
@click.option("--budget", required=True, help="Disk space to fill, e.g. 2TB or 500GiB.")
@click.option("--torrents", "source", help="torrents.json: a path or an http(s) URL.")
@click.option(
    "--archive",
    "archive_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Read ARCHIVE/torrents.json instead of --torrents.",
)
@click.option(
    "--held",
    "held_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A mirror directory: what it holds counts against the budget and is kept first.",
)
@click.option("--seed", type=int, help="Seed of the random tie-break (reproducible choice).")
@click.option("--magnets", is_flag=True, help="Print only the magnet links, one a line.")
@json_option
def suggest(
    budget: str,
    source: str | None,
    archive_dir: Path | None,
    held_dir: Path | None,
    seed: int | None,
    magnets: bool,
    as_json: bool,
) -> None:
    """What a volunteer with BUDGET of disk should seed now.

    Prefers torrents with few seeders and many listens per byte, never obsolete ones;
    the metadata torrent comes first. A random tie-break spreads volunteers who ask at
    the same time over near-equal torrents.
    """
    if (source is None) == (archive_dir is None):
        raise click.UsageError("give exactly one of --torrents and --archive")
    budget_bytes = _size(budget, "--budget")
    location = source if source is not None else str(archive_dir / LISTING_FILE)  # type: ignore[operator]
    with mirror_errors():
        listing = read_listing(location)
    held = MirrorDir(held_dir).held() if held_dir is not None else []
    choice = choose(
        listing.torrents,
        budget_bytes,
        held=held,
        rng=random.Random(seed) if seed is not None else None,
    )
    if as_json:
        print_json(choice.to_json())
    elif magnets:
        for pick in choice.picks:
            click.echo(pick.entry.magnet)
    else:
        _print_choice(choice, title="suggested")
        for passed in choice.passed:
            if not passed.held:
                err.print(f"  . {passed.name}: {passed.reason}", style="dim")


# -- mirror -------------------------------------------------------------------------------------


class _DefaultGroup(click.Group):
    """A group whose default command is ``run``: ``mirror DIR`` means ``mirror run DIR``."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@main.group("mirror", cls=_DefaultGroup)
def mirror_group() -> None:
    """Download and seed the torrents that help most within a disk budget.

    `phonotheca mirror DIR --torrents URL --budget 2TB` runs until interrupted;
    `phonotheca mirror status DIR` tells from another shell what it is doing.
    """


def _status_table(status: Any) -> Table:
    table = Table(title=f"mirror: {status.state}, port {status.listen_port}", expand=False)
    # A torrent's name is an id people copy: never folded (the other columns are).
    names = max((len(t.name) for t in status.torrents), default=7)
    table.add_column("torrent", no_wrap=True, overflow="ignore", min_width=names)
    for col in ("state", "done", "down", "up", "peers", "ratio"):
        table.add_column(col, justify="left" if col == "state" else "right", overflow="fold")
    for t in status.torrents:
        table.add_row(
            t.name,
            t.state if not t.error else f"[red]{t.state}[/red]",
            f"{t.progress * 100:.1f}%",
            f"{format_size(t.download_rate)}/s",
            f"{format_size(t.upload_rate)}/s",
            f"{t.peers} ({t.seeds} seeds)",
            "-" if t.ratio is None else f"{t.ratio:.2f}",
        )
    return table


@mirror_group.command("run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--torrents", "source", help="torrents.json: a path or URL (default: last run's).")
@click.option("--budget", help="Disk space to fill, e.g. 2TB (default: last run's).")
@click.option("--dry-run", is_flag=True, help="Only print the choice.")
@click.option("--listen", help="HOST:PORT to listen on (default: [mirror] listen setting).")
@click.option("--max-up", help="Upload limit per second, e.g. 10MB (default: none).")
@click.option("--max-down", help="Download limit per second, e.g. 10MB (default: none).")
@click.option("--seed", type=int, hidden=True, help="Seed of the random tie-break.")
@click.option(
    "--save-interval",
    type=click.FloatRange(min=0.1),
    hidden=True,
    help="Seconds between saves of download progress (default 10).",
)
@click.option("--yes", is_flag=True, help="Drop torrents that no longer fit without asking.")
def mirror_run(
    directory: Path,
    source: str | None,
    budget: str | None,
    dry_run: bool,
    listen: str | None,
    max_up: str | None,
    max_down: str | None,
    seed: int | None,
    save_interval: float | None,
    yes: bool,
) -> None:
    """Choose torrents as `torrents suggest` does, then download and seed them in DIRECTORY.

    Stops gracefully on Ctrl-C or SIGTERM (resume data saved); a restart resumes without
    re-checking complete data. Settings come from DIRECTORY/phonotheca.toml ([mirror]).
    """
    from phonotheca.mirror.run import (
        check_space,
        drop,
        plan_mirror,
        run_mirror,
        save_options,
        saved_options,
    )
    from phonotheca.mirror.session import SAVE_INTERVAL, SessionOptions

    mirror = MirrorDir(directory)
    last = saved_options(mirror)
    source = source or last.get("torrents")
    budget = budget or last.get("budget")
    if not source or not budget:
        raise click.UsageError("--torrents and --budget are needed (the first time at least)")
    listen = listen or last.get("listen")
    max_up = max_up if max_up is not None else last.get("max_up")
    max_down = max_down if max_down is not None else last.get("max_down")
    with mirror_errors():
        settings = load_settings(directory)
        plan = plan_mirror(
            mirror,
            source,
            _size(budget, "--budget"),
            rng=random.Random(seed) if seed is not None else None,
        )
    _print_choice(plan.choice, title="dry run" if dry_run else "mirroring")
    if dry_run:
        return
    if plan.dropped:
        names = [d.name for d in plan.dropped]
        if not yes:
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"{len(names)} held torrent(s) would be deleted ({', '.join(names)});"
                    " run again with --yes to confirm, or raise --budget"
                )
            click.confirm(f"Delete {len(names)} held torrent(s) listed above?", abort=True)
        drop(mirror, names)
        err.print(f"dropped {len(names)} torrent(s)")
    options = SessionOptions.from_settings(
        settings.mirror,
        listen=listen,
        max_up=_rate(max_up, "--max-up"),
        max_down=_rate(max_down, "--max-down"),
        save_interval=save_interval or SAVE_INTERVAL,
    )
    with mirror_errors():
        check_space(mirror, plan)
    save_options(
        mirror,
        {
            "torrents": source,
            "budget": budget,
            "listen": listen,
            "max_up": max_up,
            "max_down": max_down,
        },
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        err.print("stopping: saving resume data…")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    live: Live | None = None
    on_status: Callable[[Any], None] | None = None
    if err.is_terminal:
        live = Live(console=err, refresh_per_second=1, transient=False)
        live.start()

        def on_status(status: Any) -> None:
            live.update(_status_table(status))

    try:
        with mirror_errors():
            run_mirror(
                plan,
                options,
                stop,
                on_status=on_status,
                on_event=_say,
            )
    finally:
        if live is not None:
            live.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    err.print(f"mirror stopped; state saved in {mirror.state}")


@mirror_group.command("status")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
def mirror_status(directory: Path, as_json: bool) -> None:
    """What the mirror on DIRECTORY is doing, from its status file (run from any shell)."""
    from phonotheca.mirror.status import read_status, status_report

    mirror = MirrorDir(directory)
    report = status_report(mirror)
    if as_json:
        print_json(report)
        return
    status = read_status(mirror)
    if status is None:
        raise click.ClickException(f"{directory}: no mirror status here (never mirrored?)")
    running = f"running (pid {report['pid']})" if report["running"] else "not running"
    err.print(f"{directory}: mirror {running}, last update {status.updated_at}")
    if not report["running"] and status.state != "stopped":
        err.print("  it stopped without saying so (killed or crashed); start it again to resume")
    err.print(_status_table(status))
    for t in status.torrents:
        for down in t.trackers_down:
            _say(
                f"  {t.name}: tracker {down.url} unreachable since {down.since}"
                f" ({down.error}, {down.failures} failure(s)); still retrying, web seeds and"
                " known peers in use",
                style="yellow",
            )
        if t.hash_failures:
            banned = f"; banned: {', '.join(t.banned_peers)}" if t.banned_peers else ""
            _say(
                f"  {t.name}: {t.hash_failures} piece(s) received with bad data,"
                f" thrown away and downloaded again{banned}",
                style="yellow",
            )
    for event in status.events[-5:]:
        _say(f"  {event}")


# -- verify -------------------------------------------------------------------------------------


@main.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--repair", is_flag=True, help="Download the bad pieces again, then re-verify.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --repair may take.")
@json_option
def verify(directory: Path, repair: bool, timeout: float, as_json: bool) -> None:
    """Recheck every piece a mirror holds, and every track and bag of complete collections.

    Names corrupted pieces with the files and tracks they hold. Exits non-zero when a
    problem remains.
    """
    from phonotheca.mirror.repair import RepairTarget, repair_pieces
    from phonotheca.mirror.session import SessionOptions
    from phonotheca.mirror.state import MirrorLock
    from phonotheca.mirror.verify import CollectionReport, verify_collection

    mirror = MirrorDir(directory)
    names = mirror.held()
    if not names:
        raise click.ClickException(f"{directory}: holds no torrents (no torrents/*.torrent)")
    lock = MirrorLock(mirror)
    with mirror_errors():
        lock.acquire()  # the running mirror's session would not notice a change under it
    try:

        def check_all(title: str) -> dict[str, tuple[CollectionReport, list[bool]]]:
            total = sum(e.stat().st_size for n in names for e in _payload_files(mirror, n))
            results = {}
            with progress_bar_bytes(total, title) as advance:
                for name in names:
                    results[name] = verify_collection(mirror, name, advance)
            return results

        results = check_all("verify")
        repaired: dict[str, bool] = {}
        bad = {
            n: RepairTarget(good, [b.piece for b in r.corrupted])
            for n, (r, good) in results.items()
            if r.corrupted
        }
        if repair and bad:
            with mirror_errors():
                settings = load_settings(directory)
            last = _saved(mirror)
            options = SessionOptions.from_settings(settings.mirror, listen=last.get("listen"))
            repaired = repair_pieces(mirror, bad, options, timeout=timeout, on_event=_say)
            results = check_all("verify again")
    finally:
        lock.release()
    reports = [r for r, _ in results.values()]
    if as_json:
        print_json(
            {
                "directory": str(directory),
                "ok": all(r.ok for r in reports),
                "repaired": repaired,
                "collections": [r.to_json() for r in reports],
            }
        )
    else:
        for r in reports:
            state = "ok" if r.ok else "[red]PROBLEMS[/red]"
            extra = f", {r.missing} missing (not downloaded yet)" if r.missing else ""
            err.print(f"{r.name}: {r.good}/{r.pieces} pieces good{extra}: {state}")
            for b in r.corrupted:
                held = ", ".join(b.tracks) if b.tracks else "no track"
                err.print(f"  piece {b.piece} corrupted: {', '.join(b.files)}; tracks: {held}")
            for problem in r.problems:
                err.print(f"  {problem}")
    if not all(r.ok for r in reports):
        hint = "" if repair else "; run again with --repair to fetch the bad pieces"
        raise click.ClickException(f"{directory}: problems remain{hint}")


def _say(message: str, style: str | None = None) -> None:
    """One event on the console: a whole line (grep-able), no rich markup (IPv6 peers
    are written ``[::1]:6881``)."""
    err.print(message, style=style, soft_wrap=True, markup=False, highlight=False)


def _saved(mirror: MirrorDir) -> dict[str, Any]:
    from phonotheca.mirror.run import saved_options

    return saved_options(mirror)


def _payload_files(mirror: MirrorDir, name: str) -> list[Path]:
    payload = mirror.payload(name)
    return [p for p in payload.rglob("*") if p.is_file()] if payload.is_dir() else []


@contextmanager
def progress_bar_bytes(total: int, title: str) -> Iterator[Callable[[int], None]]:
    with progress_bar(total, "bytes") as bar:
        task = bar.add_task(title, total=total)
        yield lambda n: bar.advance(task, n)


# -- fetch --------------------------------------------------------------------------------------


@main.command("fetch")
@click.argument("track_id")
@click.option("--torrents", "source", required=True, help="torrents.json: a path or URL.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default="current directory",
    help="File to write, or a directory (the file keeps its archive name and extension).",
)
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A catalog.sqlite3 (e.g. a mirror's) to find the collection (then reads its index).",
)
@click.option(
    "--locator",
    "locator",
    metavar="PATH|URL",
    help="A tracks.locator to use instead of the listing's (e.g. the metadata torrent's copy).",
)
@click.option("--listen", help="HOST:PORT to listen on (default: [mirror] listen setting).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for pieces.")
@json_option
def fetch(
    track_id: str,
    source: str,
    output: Path,
    catalog: Path | None,
    locator: str | None,
    listen: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Download one track, fetching only the pieces that hold it.

    The track is found in the archive's track locator (tracks.locator, beside
    torrents.json: two small range reads, no collection index), or with --locator in a
    local copy. With --catalog, the ledger names its collection and that collection's
    index is read. Listings without a locator (older archives) fall back to reading the
    index of every audio collection. Works from peers and from web seeds alone; the
    track's sha256 is checked before it is written. Settings ([mirror]) come from
    ./phonotheca.toml when there is one.
    """
    from phonotheca.mirror.fetch import fetch_track
    from phonotheca.mirror.session import SessionOptions

    with mirror_errors():
        settings = load_settings(Path("."))
        options = SessionOptions.from_settings(settings.mirror, listen=listen)
        result = fetch_track(
            source, track_id, output, options, catalog=catalog, timeout=timeout, locator=locator
        )
    if as_json:
        print_json(
            {
                "track_id": result.track_id,
                "collection": result.collection,
                "path": str(result.path),
                "size": result.size,
                "sha256": result.sha256,
                "downloaded": result.downloaded,
                "pieces": result.pieces,
                "piece_length": result.piece_length,
                "found_by": result.found_by,
                "locator_reads": result.locator_reads,
                "locator_bytes": result.locator_bytes,
            }
        )
    else:
        err.print(
            f"{result.path}: {format_size(result.size)} from {result.collection},"
            f" sha256 ok; {format_size(result.downloaded)} downloaded"
        )
