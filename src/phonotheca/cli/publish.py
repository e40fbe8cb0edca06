"""Commands: publish, serve-files, torrents scrape, torrents health (issue 6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from phonotheca.cli import (
    archive_at,
    archive_option,
    err,
    json_option,
    main,
    out,
    print_json,
    torrents,
    until_stopped,
    user_errors,
)
from phonotheca.cli.key import passphrase_stdin_option, unlock_archive_key
from phonotheca.plan.sizes import format_size
from phonotheca.torrents.listing import LISTING_FILE, ListingError, read_listing
from phonotheca.torrents.locator import LocatorError
from phonotheca.torrents.metadata import MetadataError
from phonotheca.torrents.publish import PublishError


@main.command()
@archive_option
@click.option(
    "--base-url",
    help="URL of the directory that holds torrents.json and torrents/ (default: settings'"
    " torrents.base_url); .torrent URLs in torrents.json are relative to it.",
)
@click.option(
    "--metadata-only",
    is_flag=True,
    help="Release the metadata torrent and list only it (metadata goes out before audio).",
)
@click.option(
    "--whitelist",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every infohash to this file, for opentracker's whitelist mode.",
)
@passphrase_stdin_option
@json_option
def publish(
    archive_dir: Path,
    base_url: str | None,
    metadata_only: bool,
    whitelist: Path | None,
    passphrase_stdin: bool,
    as_json: bool,
) -> None:
    """Release the catalog as a metadata torrent and write torrents.json.

    The metadata torrent holds the catalog (ledger included, source paths and other
    operator data left out) as catalog-release.sqlite3.zst, holding only what a mirror
    cannot derive (no index, no search index: docs/FORMAT.md §12), the track locator
    (tracks.locator: where each packed track is) and FORMAT.md. A new one is made only
    when the catalog changed; the previous one is then marked obsolete. The locator is
    also written beside torrents.json, which lists it, for fetch to find tracks.
    When the archive has a key (`phonotheca key generate`), torrents.json gets the next
    seq, an expiry ([publish] valid_days) and its signature torrents.json.minisig, and
    the locator its tracks.locator.minisig.
    """
    from phonotheca.torrents.publish import publish as run_publish

    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{base_url!r} is not an http(s):// URL", param_hint="--base-url")
    if base_url is not None and not base_url.endswith("/"):
        base_url += "/"
    archive = archive_at(archive_dir)
    secret = unlock_archive_key(archive.root, passphrase_stdin)
    conn = archive.connect()
    try:
        with user_errors(), _publish_errors():
            status = err.status("publishing: snapshot of the catalog, compression, hashing")
            with status:
                result = run_publish(
                    archive,
                    conn,
                    base_url=base_url,
                    metadata_only=metadata_only,
                    whitelist=whitelist,
                    secret=secret,
                )
    finally:
        conn.close()
    listing = result.listing
    if as_json:
        print_json(
            {
                "torrents_json": str(result.listing_path),
                "metadata": {
                    "name": result.metadata.name,
                    "created": result.metadata.created,
                    "content_hash": result.metadata.content_hash,
                },
                "torrents": len(listing.torrents),
                "obsolete": sum(e.obsolete for e in listing.torrents),
                "bytes": listing.totals.bytes,
                "tracks": listing.totals.tracks,
                "share_of_listens": listing.totals.share_of_listens,
                "whitelist": str(whitelist) if whitelist else None,
                "signed": secret is not None,
                "seq": listing.seq,
                "expires": listing.expires,
            }
        )
        return
    m = result.metadata
    out.print(f"metadata release {m.name}: " + ("new" if m.created else "unchanged catalog, kept"))
    out.print(
        f"{result.listing_path}: {len(listing.torrents)} torrents"
        f" ({sum(e.obsolete for e in listing.torrents)} obsolete),"
        f" {format_size(listing.totals.bytes)}, {listing.totals.tracks:,} tracks,"
        f" {100 * listing.totals.share_of_listens:.2f} % of listens"
    )
    if secret is not None:
        out.print(
            f"signed with key {secret.public.id_text}: seq {listing.seq},"
            f" expires {listing.expires} ({result.listing_path.name}.minisig)",
            highlight=False,
        )
    else:
        out.print(
            "not signed: the archive has no key (phonotheca key generate); mirrors accept"
            " it only with --allow-unsigned",
            highlight=False,
        )
    if whitelist:
        out.print(f"whitelist: {whitelist} (send opentracker SIGHUP to reload it)")


@contextmanager
def _publish_errors() -> Iterator[None]:
    """The publish stage's own user errors, as one clear line."""
    try:
        yield
    except (PublishError, MetadataError, ListingError, LocatorError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("serve-files")
@archive_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8081,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option("--log", "log_requests", is_flag=True, help="Print one line per request.")
def serve_files(archive_dir: Path, host: str, port: int, log_requests: bool) -> None:
    """Serve torrents/, torrents.json and tracks.locator over HTTP: a BEP 19 web seed.

    Answers Range requests as BitTorrent clients need; never serves anything outside
    torrents/, symbolic links or unfinished (*.partial) files. Stop with Ctrl-C or
    SIGTERM (exit status 0).
    """
    from phonotheca.torrents.webseed import make_server

    archive = archive_at(archive_dir)
    try:
        server = make_server(archive.root, host, port, quiet=not log_requests)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound_port = server.server_address[1]
    url = f"http://{host}:{bound_port}/torrents/"
    try:
        with until_stopped(f"serving {url}"):
            click.echo(f"serving {archive.torrents_dir} at {url}", err=True)
            server.serve_forever()
    finally:
        server.server_close()


@torrents.command()
@archive_option
@click.option(
    "--timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 120),
    help="Seconds to wait for a tracker; UDP retries double it.",
)
@passphrase_stdin_option
@json_option
def scrape(archive_dir: Path, timeout: float, passphrase_stdin: bool, as_json: bool) -> None:
    """Ask the trackers for seeders, leechers and completed downloads of every torrent.

    Updates the health figures in torrents.json and appends them to
    health/YYYY-MM-DD.jsonl. A tracker that cannot be reached is reported, not fatal.
    With a key, the new torrents.json is signed again with the next seq, as publish does.
    """
    from phonotheca.torrents.health import append_history, scrape_listing
    from phonotheca.torrents.release import write_release

    archive = archive_at(archive_dir)
    path = archive.root / LISTING_FILE
    with _publish_errors():
        listing = read_listing(path)
    secret = unlock_archive_key(archive.root, passphrase_stdin)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with err.status("scraping trackers"):
        report = scrape_listing(listing, now=now, timeout=timeout)
    conn = archive.connect()
    try:
        with _publish_errors():
            write_release(
                report.listing,
                path,
                conn=conn,
                secret=secret,
                valid_days=archive.settings.publish.valid_days,
                now=now,
            )
    finally:
        conn.close()
    history = append_history(archive.root, report, now)
    failed = [t for t in report.trackers if t.error is not None]
    if as_json:
        print_json(
            {
                "scraped": report.scraped,
                "unanswered": report.unanswered,
                "history": str(history),
                "trackers": [
                    {
                        "url": t.url,
                        "ok": t.error is None,
                        "error": t.error,
                        "torrents": len(t.stats),
                    }
                    for t in report.trackers
                ],
                "torrents": [
                    {
                        "name": e.name,
                        "seeders": e.health.seeders,
                        "leechers": e.health.leechers,
                        "completed": e.health.completed,
                        "scraped_at": e.health.scraped_at,
                    }
                    for e in report.listing.torrents
                ],
            }
        )
        return
    for t in report.trackers:
        state = f"[red]{t.error}[/red]" if t.error else f"{len(t.stats)} torrents"
        out.print(f"{t.url}: {state}", highlight=False)
    out.print(
        f"{report.scraped} of {len(report.listing.torrents)} torrents scraped"
        + (f"; no answer for {len(report.unanswered)}" if report.unanswered else "")
        + (f"; {len(failed)} trackers unreachable" if failed else "")
    )


@torrents.command()
@archive_option
@json_option
def health(archive_dir: Path, as_json: bool) -> None:
    """How many bytes and torrents have fewer than 4, 4-10 and more than 10 seeders."""
    from phonotheca.torrents.health import health_bands

    archive = archive_at(archive_dir)
    with _publish_errors():
        listing = read_listing(archive.root / LISTING_FILE)
    bands = health_bands(listing)
    if as_json:
        print_json([{"seeders": b.band, "torrents": b.torrents, "bytes": b.bytes} for b in bands])
        return
    out.print(f"{'seeders':<10} {'torrents':>9} {'bytes':>12}")
    for b in bands:
        out.print(f"{b.band:<10} {b.torrents:>9,} {format_size(b.bytes):>12}", highlight=False)
