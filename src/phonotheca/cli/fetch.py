"""Command: fetch, one track out of the swarm (issue 7), from a checked listing (issue 17)."""

from __future__ import annotations

from pathlib import Path

import click

from phonotheca.cli import err, json_option, main, print_json
from phonotheca.cli.mirror import mirror_errors, say, trust_options
from phonotheca.config import load_settings
from phonotheca.plan.sizes import format_size


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
@trust_options
@json_option
def fetch(
    track_id: str,
    source: str,
    output: Path,
    catalog: Path | None,
    locator: str | None,
    listen: str | None,
    timeout: float,
    publisher_key: str | None,
    allow_unsigned: bool,
    as_json: bool,
) -> None:
    """Download one track, fetching only the pieces that hold it.

    The track is found in the archive's track locator (tracks.locator, beside
    torrents.json: two small range reads, no collection index), or with --locator in a
    local copy. With --catalog, the ledger names its collection and that collection's
    index is read. Listings without a locator (older archives) fall back to reading the
    index of every audio collection. Works from peers and from web seeds alone; the
    track's sha256 is checked before it is written. The listing must be signed (by
    --publisher-key or [mirror] publisher_key, else by the key it names) unless
    --allow-unsigned. Settings ([mirror]) come from
    ./phonotheca.toml when there is one.
    """
    from phonotheca.mirror.fetch import fetch_track
    from phonotheca.mirror.session import SessionOptions
    from phonotheca.mirror.trust import TrustPolicy, read_checked

    with mirror_errors():
        settings = load_settings(Path("."))
        options = SessionOptions.from_settings(settings.mirror, listen=listen)
        policy = TrustPolicy.from_options(
            publisher_key or settings.mirror.publisher_key, allow_unsigned
        )
        checked = read_checked(source, policy)
        for note in checked.notes:
            say(note, style="yellow")
        result = fetch_track(
            source,
            track_id,
            output,
            options,
            catalog=catalog,
            timeout=timeout,
            listing=checked.listing,
            locator=locator,
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
