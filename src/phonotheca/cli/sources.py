"""Import commands for open metadata: MusicBrainz release documents, listen counts."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import click

from phonotheca.catalog.importer import finish_import
from phonotheca.cli import (
    archive_at,
    archive_option,
    fail_damaged,
    import_,
    index_steps,
    json_option,
    print_summaries_json,
    progress_bar,
    run_import,
    user_errors,
    workers_option,
)
from phonotheca.sources.compressed import DamagedInput
from phonotheca.sources.listens import ListensSummary, import_listens
from phonotheca.sources.musicbrainz_import import import_musicbrainz

_FILES = click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)


@import_.command("musicbrainz")
@_FILES
@archive_option
@json_option
@click.option(
    "--strict", is_flag=True, help="Stop at the first bad document and keep nothing of this import."
)
@workers_option
def import_musicbrainz_cmd(
    files: tuple[Path, ...], archive_dir: Path, as_json: bool, strict: bool, workers: int
) -> None:
    """Import MusicBrainz release (or recording) documents in WS/2 JSON.

    FILES are MusicBrainz JSON dump archives (release.tar.xz, recording.tar.xz,
    streamed), files of one document per line (.jsonl, .json; plain or compressed as
    .zst, .gz, .bz2 or .xz) or single documents (.json). A release becomes an album with
    its tracks and artists. A file of recordings updates the ISRCs and aliases of the
    tracks of their releases; a recording on no release in the catalog becomes a track
    without an album, which a release holding it takes over when it is imported. Bad
    documents go to ARCHIVE/rejects/; running the same command again resumes an
    interrupted release import. A compressed file that is cut short or damaged stops the
    import with an error naming the file and the byte where it broke (exit status 1);
    the documents before it stay loaded.
    """
    summaries, _, damage = run_import(
        archive_dir,
        files,
        strict,
        functools.partial(import_musicbrainz, workers=workers),
        record="document",
    )
    if as_json:
        print_summaries_json(summaries)
        fail_damaged(damage, files, "documents")
        return
    for s in summaries:
        resumed = f" (resumed at document {s.resumed_at_line})" if s.resumed_at_line else ""
        broke = "" if s.complete else " before the file broke off (the rest was not read)"
        if s.documents == "release":
            tracks = f"tracks loaded {s.tracks:,}"
            if s.standalone:
                tracks += f" ({s.standalone:,} took over the track of a standalone recording)"
        else:
            tracks = f"tracks changed {s.tracks:,}, standalone recordings {s.standalone:,}"
        click.echo(
            f"{s.path}: {s.documents}s read {s.read:,}, loaded {s.loaded:,},"
            f" rejected {s.rejected:,}; {tracks}, invalid ISRCs"
            f" {s.invalid_isrc:,}{resumed}{broke} in {s.seconds:.1f} s"
        )
        if s.rejects_file:
            click.echo(f"  rejects: {s.rejects_file}")
    fail_damaged(damage, files, "documents")


@import_.command("listens")
@_FILES
@archive_option
@json_option
def import_listens_cmd(files: tuple[Path, ...], archive_dir: Path, as_json: bool) -> None:
    """Import listen counts per recording: CSV or JSONL (plain or compressed as .zst, .gz,
    .bz2 or .xz), or Parquet.

    Columns: recording_mbid or isrc, listen_count, optionally user_count (as in the
    ListenBrainz popularity datasets). A row is matched to the catalog by MusicBrainz
    recording id, else by ISRC; tracks without a popularity get one derived from their
    listens. Unmatched and bad rows go to ARCHIVE/rejects/. Safe to run again. A file
    that is cut short or damaged stops the import with an error naming the file and the
    byte where it broke (exit status 1); the rows before it stay applied.
    """
    archive = archive_at(archive_dir, create=True)
    conn = archive.connect()
    summaries: list[ListensSummary] = []
    damage: DamagedInput | None = None
    t0 = time.monotonic()
    try:
        with progress_bar(None, "rows") as bar, user_errors():
            for path in files:
                task = bar.add_task(f"import {path.name}", total=None)

                def advance(rows: int, task: Any = task) -> None:
                    bar.update(task, completed=rows)

                try:
                    summaries.append(
                        import_listens(conn, path, archive.rejects_dir, progress=advance)
                    )
                except DamagedInput as exc:
                    damage = exc
                    if exc.summary is not None:
                        summaries.append(exc.summary)
                    break
                bar.update(task, total=summaries[-1].read, completed=summaries[-1].read)
            finish_import(conn, index_steps(bar))  # a large file left the index to rebuild
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    if as_json:
        print_summaries_json(summaries)
        fail_damaged(damage, files, "rows")
        return
    for s in summaries:
        broke = "" if s.complete else " before the file broke off (the rest was not read)"
        click.echo(
            f"{s.path}: rows read {s.read:,}, matched by recording id {s.matched_mbid:,},"
            f" by ISRC {s.matched_isrc:,}, unmatched {s.unmatched:,}, rejected"
            f" {s.rejected:,}; tracks updated {s.tracks_updated:,}{broke} in {s.seconds:.1f} s"
        )
        if s.rejects_file:
            click.echo(f"  rejects: {s.rejects_file}")
    click.echo(f"done in {time.monotonic() - t0:.1f} s")
    fail_damaged(damage, files, "rows")
