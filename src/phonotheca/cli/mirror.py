"""Commands: mirror (and mirror status), verify, torrents suggest (issue 7)."""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from rich.live import Live
from rich.table import Table

from phonotheca.cli import err, json_option, main, print_json, progress_bar, torrents
from phonotheca.config import SettingsError, load_settings
from phonotheca.mirror.choose import Choice, choose
from phonotheca.mirror.state import MirrorDir, MirrorError
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.torrents.listing import LISTING_FILE, ListingError

F = TypeVar("F", bound=Callable[..., Any])


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


def trust_options(f: F) -> F:
    """``--publisher-key`` and ``--allow-unsigned``: whose listings this command acts on."""
    f = click.option(
        "--allow-unsigned",
        is_flag=True,
        help="Read an unsigned torrents.json (it never causes a deletion).",
    )(f)
    return click.option(
        "--publisher-key",
        help="The publisher's public key: its RW… string or a file (default: [mirror]"
        " publisher_key, else the key pinned on first use).",
    )(f)


def _print_choice(choice: Choice, *, title: str, dropped: bool = True) -> None:
    err.print(
        f"{title}: {len(choice.picks)} torrent(s), {format_size(choice.bytes)} of"
        f" {format_size(choice.budget)}, {choice.listens:,} listens covered"
    )
    for pick in choice.picks:
        err.print(f"  + {pick.entry.name} ({format_size(pick.entry.size)}): {pick.reason}")
    for passed in choice.dropped if dropped else []:
        err.print(f"  - {passed.name}: drop ({passed.reason})")


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
@trust_options
@json_option
def suggest(
    budget: str,
    source: str | None,
    archive_dir: Path | None,
    held_dir: Path | None,
    seed: int | None,
    magnets: bool,
    publisher_key: str | None,
    allow_unsigned: bool,
    as_json: bool,
) -> None:
    """What a volunteer with BUDGET of disk should seed now.

    Prefers torrents with few seeders and many listens per byte, never obsolete ones;
    the metadata torrent comes first. A random tie-break spreads volunteers who ask at
    the same time over near-equal torrents. The listing must be signed: by
    --publisher-key, else by the key --held's mirror pinned (or --archive's own key),
    else by the key it names.
    """
    from phonotheca.mirror.trust import TrustPolicy, read_checked, read_pin
    from phonotheca.torrents.keys import ArchiveKeys

    if (source is None) == (archive_dir is None):
        raise click.UsageError("give exactly one of --torrents and --archive")
    budget_bytes = _size(budget, "--budget")
    location = source if source is not None else str(archive_dir / LISTING_FILE)  # type: ignore[operator]
    if publisher_key is None and archive_dir is not None:
        own = ArchiveKeys(archive_dir).public
        publisher_key = str(own) if own.exists() else None
    with mirror_errors():
        policy = TrustPolicy.from_options(publisher_key, allow_unsigned)
        pin = read_pin(MirrorDir(held_dir)) if held_dir is not None else None
        checked = read_checked(location, policy, pin=pin)
    for note in checked.notes:
        say(note, style="yellow")
    listing = checked.listing
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
@click.option(
    "--metadata-only",
    is_flag=True,
    help="Only the newest metadata torrent (catalog and locator), no --budget: stop once"
    " the catalog is verified and unpacked, so DIRECTORY can be served.",
)
@click.option(
    "--seed",
    "keep_seeding",
    is_flag=True,
    help="With --metadata-only: keep seeding the metadata torrent until interrupted.",
)
@click.option("--dry-run", is_flag=True, help="Only print the choice.")
@click.option("--listen", help="HOST:PORT to listen on (default: [mirror] listen setting).")
@click.option("--max-up", help="Upload limit per second, e.g. 10MB (default: none).")
@click.option("--max-down", help="Download limit per second, e.g. 10MB (default: none).")
@trust_options
@click.option("--tie-seed", "seed", type=int, hidden=True, help="Seed of the random tie-break.")
@click.option(
    "--save-interval",
    type=click.FloatRange(min=0.1),
    hidden=True,
    help="Seconds between saves of download progress (default 10).",
)
@click.option("--yes", is_flag=True, help="Delete the torrents to drop without asking.")
@click.option(
    "--yes-delete-more",
    is_flag=True,
    help="Delete past [mirror] max_delete (default 10 % of held bytes) in this run.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="With --metadata-only: print the result as JSON."
)
def mirror_run(
    directory: Path,
    source: str | None,
    budget: str | None,
    metadata_only: bool,
    keep_seeding: bool,
    dry_run: bool,
    listen: str | None,
    max_up: str | None,
    max_down: str | None,
    publisher_key: str | None,
    allow_unsigned: bool,
    seed: int | None,
    save_interval: float | None,
    yes: bool,
    yes_delete_more: bool,
    as_json: bool,
) -> None:
    """Choose torrents as `torrents suggest` does, then download and seed them in DIRECTORY.

    The listing must be signed by the publisher's key (given, or pinned on first use);
    else the mirror keeps seeding what it holds from its last good listing. A held
    torrent is deleted only when a verified listing marks it obsolete and names its
    replacement, or when the budget is lowered; at most [mirror] max_delete a run, each
    logged in DIRECTORY/.mirror/events.log. Stops gracefully on Ctrl-C or SIGTERM
    (resume data saved); a restart resumes without re-checking complete data. Settings
    come from DIRECTORY/phonotheca.toml ([mirror]).

    With --metadata-only, only the newest metadata torrent is downloaded (checked against
    the listing the same way), its catalog unpacked to DIRECTORY/catalog.sqlite3 and its
    locator put at DIRECTORY/tracks.locator: `phonotheca serve --archive DIRECTORY` then
    shows the whole catalog. It stops there, or with --seed seeds it until interrupted.
    """
    from phonotheca.mirror.run import (
        MirrorRequest,
        OptionError,
        prepare_mirror,
        start_metadata_only,
        start_mirror,
    )

    if (keep_seeding or as_json) and not metadata_only:
        flag = "--seed" if keep_seeding else "--json"
        raise click.UsageError(f"{flag} goes with --metadata-only (a full mirror always seeds)")

    request = MirrorRequest(
        directory=directory,
        source=source,
        budget=budget,
        listen=listen,
        max_up=max_up,
        max_down=max_down,
        publisher_key=publisher_key,
        allow_unsigned=allow_unsigned,
        yes_delete_more=yes_delete_more,
        seed=seed,
        save_interval=save_interval,
        metadata_only=metadata_only,
    )
    try:
        with mirror_errors():
            plan = prepare_mirror(request)
    except click.ClickException as exc:
        cause = exc.__cause__
        if isinstance(cause, OptionError):  # usage errors, as click reports its own
            if cause.option is None:
                raise click.UsageError(str(cause)) from None
            raise click.BadParameter(str(cause), param_hint=cause.option) from None
        raise
    for note in plan.checked.notes:
        say(note, style="yellow")
    if dry_run or not metadata_only:
        _print_choice(plan.choice, title="dry run" if dry_run else "mirroring", dropped=False)
    for kept in plan.drops.kept:
        say(f"  = {kept.name}: {kept.reason}")
    for drop in plan.drops.delete:
        say(f"  x {drop.name} ({format_size(drop.size)}): delete ({drop.reason})")
    if dry_run:
        return

    names = [d.name for d in plan.drops.delete]
    if names and not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"{len(names)} held torrent(s) would be deleted ({', '.join(names)});"
                " run again with --yes to confirm, or raise --budget"
            )
        click.confirm(f"Delete {len(names)} held torrent(s) listed above?", abort=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        # One line in the end ("mirror stopped; ..."): on a terminal this one is overwritten
        # by it, and only says meanwhile that the Ctrl-C was heard.
        if err.is_terminal:
            err.print("stopping: saving resume data…", end="\r")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    live: Live | None = None
    on_status: Callable[[Any], None] | None = None
    if err.is_terminal:
        live = Live(console=err, refresh_per_second=1, transient=False)
        live.start()

        def on_status(status: Any) -> None:
            live.update(_status_table(status))

    result = None
    try:
        with mirror_errors():
            if metadata_only:
                result = start_metadata_only(
                    plan,
                    stop,
                    seed=keep_seeding,
                    confirmed=True,
                    on_status=on_status,
                    on_event=say,
                )
            else:
                start_mirror(plan, stop, confirmed=True, on_status=on_status, on_event=say)
    finally:
        if live is not None:
            live.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if plan.drops.delete:
        err.print(f"dropped {len(plan.drops.delete)} torrent(s)")
    if result is None:
        err.print(f"mirror stopped; state saved in {plan.mirror.state}")
        return
    if as_json:
        print_json(result.to_json())
    else:
        say(result.summary())
    if not result.complete:
        sys.exit(1)


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
    trust = report["trust"]
    if trust:
        say(
            f"  publisher key {trust.get('key_id')} pinned ({trust.get('pinned_by')},"
            f" {trust.get('pinned_at')}); last listing accepted: seq {trust.get('seq')}"
        )
    for t in status.torrents:
        for down in t.trackers_down:
            say(
                f"  {t.name}: tracker {down.url} unreachable since {down.since}"
                f" ({down.error}, {down.failures} failure(s)); still retrying, web seeds and"
                " known peers in use",
                style="yellow",
            )
        if t.hash_failures:
            banned = f"; banned: {', '.join(t.banned_peers)}" if t.banned_peers else ""
            say(
                f"  {t.name}: {t.hash_failures} piece(s) received with bad data,"
                f" thrown away and downloaded again{banned}",
                style="yellow",
            )
    for event in status.events[-5:]:
        say(f"  {event}")


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
            repaired = repair_pieces(mirror, bad, options, timeout=timeout, on_event=say)
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


def say(message: str, style: str | None = None) -> None:
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
