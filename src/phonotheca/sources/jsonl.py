"""The JSONL interchange format as a source: read lines, validate, normalise.

Reading streams the file in blocks (``.jsonl`` or ``.jsonl.zst``), so memory stays
bounded whatever the file size. Each line is decoded into the structs of
:mod:`phonotheca.catalog.record`; a line that fails becomes a reject with its
line number and reason, never an exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec
import zstandard

from phonotheca.catalog.batch import AlbumRow, ArtistRow, Batch, Credit, Reject, TrackRow
from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.record import (
    MAX_LINE_BYTES,
    AlbumRecord,
    ArtistCredit,
    RecordError,
    TrackRecord,
    credit_text,
    derived_id,
    parse_date,
)

BLOCK = 1 << 22


class SourceError(Exception):
    """An input file that cannot be read at all (missing, not zstd, ...)."""


def open_binary(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """Open ``path`` for reading, decompressing ``.zst`` on the fly.

    Returns (stream of decompressed bytes, raw file): the raw file's position tells
    how far into the input we are, for progress bars.
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.name.endswith(".zst"):
        dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
        return dctx.stream_reader(raw, read_size=BLOCK, closefd=True), raw
    return raw, raw


def file_fingerprint(path: Path) -> str:
    """Size and a hash of the first MiB: identifies "the same file" for resuming."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(1 << 20)
    return f"{size}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


def iter_line_blocks(
    path: Path, lines_per_block: int, skip_lines: int = 0
) -> Iterator[tuple[int, list[bytes], int]]:
    """Yield (number of the first line, lines, input bytes read so far).

    Line numbers start at 1. The first ``skip_lines`` lines are skipped (resume).
    A line longer than :data:`MAX_LINE_BYTES` is cut just past that length (it will be
    rejected), so one hostile line never costs more memory than that.
    """
    stream, raw = open_binary(path)
    with stream, raw:
        line_no = 0
        pending: list[bytes] = []
        tail = b""
        overlong = False  # inside a line that was already cut
        while True:
            try:
                block = stream.read(BLOCK)
            except zstandard.ZstdError as exc:
                raise SourceError(f"{path}: not a valid zstd stream ({exc})") from exc
            if not block:
                break
            parts = block.split(b"\n") if overlong else (tail + block).split(b"\n")
            if overlong:
                if len(parts) == 1:
                    continue
                del parts[0]
                overlong = False
            tail = parts.pop()
            if len(tail) > MAX_LINE_BYTES:
                parts.append(tail[: MAX_LINE_BYTES + 1])
                tail = b""
                overlong = True
            for line in parts:
                line_no += 1
                if line_no > skip_lines:
                    pending.append(line)
                    if len(pending) >= lines_per_block:
                        yield line_no - len(pending) + 1, pending, raw.tell()
                        pending = []
        if tail:
            line_no += 1
            if line_no > skip_lines:
                pending.append(tail)
        if pending:
            yield line_no - len(pending) + 1, pending, raw.tell()


_decoder = msgspec.json.Decoder(TrackRecord)


def _credits(
    artists: list[ArtistCredit], out: dict[str, ArtistRow]
) -> tuple[tuple[Credit, ...], str]:
    credits: list[Credit] = []
    for a in artists:
        pid = a.id or derived_id("artist", a.name)
        if pid not in out:
            out[pid] = ArtistRow(a.name, a.sort_name)
        credits.append((pid, a.credited_as, a.join_phrase))
    return tuple(credits), credit_text(artists)


def _album(rec: AlbumRecord, artists: dict[str, ArtistRow]) -> tuple[str, AlbumRow]:
    credits, credit = _credits(rec.artists, artists)
    date = precision = None
    if rec.release_date:
        date, precision = parse_date(rec.release_date, rec.release_date_precision)
    pid = rec.id or derived_id("album", credit, rec.title, date or "")
    return pid, AlbumRow(
        title=rec.title,
        artist_credit=credit,
        credits=credits,
        album_type=rec.album_type,
        release_date=date,
        release_date_precision=precision,
        label=rec.label,
        upc=rec.upc,
        total_tracks=rec.total_tracks,
        total_discs=rec.total_discs,
        markets=" ".join(rec.markets) if rec.markets else None,
        genres=tuple(rec.genres),
        images=tuple((i.kind, i.url, i.width, i.height) for i in rec.images),
        external_ids=tuple(sorted(rec.external_ids.items())),
    )


def prepare_lines(
    first_line: int,
    lines: list[bytes],
    compressor: zstandard.ZstdCompressor | None = None,
) -> Batch:
    """Decode and normalise a block of lines into a :class:`Batch`.

    ``compressor`` compresses each loaded line for ``track_records``; without one no
    source record is kept.
    """
    batch = Batch(first_line=first_line, last_line=first_line + len(lines) - 1, read=len(lines))
    tracks = batch.tracks
    kept: list[bytes] = []
    albums = batch.albums
    artists = batch.artists
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            batch.read -= 1  # blank lines are not records
            continue
        if len(line) > MAX_LINE_BYTES:
            batch.rejects.append(
                Reject(n, f"line longer than {MAX_LINE_BYTES} bytes", line[:4096])
            )
            continue
        try:
            rec = _decoder.decode(line)
            credits, credit = _credits(rec.artists, artists)
            album_id = None
            if rec.album is not None:
                album_id, album = _album(rec.album, artists)
                albums[album_id] = album
            isrc = isrc_valid = None
            if rec.isrc:
                isrc, isrc_valid = parse_isrc(rec.isrc)
                if not isrc_valid:
                    batch.invalid_isrc += 1
        except (msgspec.ValidationError, RecordError) as exc:
            batch.rejects.append(Reject(n, f"invalid record: {exc}", line))
            continue
        except msgspec.DecodeError as exc:
            reason = "invalid UTF-8" if _bad_utf8(line) else f"invalid JSON: {exc}"
            batch.rejects.append(Reject(n, reason, line))
            continue
        except UnicodeDecodeError as exc:
            batch.rejects.append(Reject(n, f"invalid UTF-8: {exc.reason} at byte {exc.start}", line))
            continue
        tracks.append(
            TrackRow(
                public_id=rec.id,
                title=rec.title,
                artist_credit=credit,
                credits=credits,
                album_id=album_id,
                disc_number=rec.disc_number,
                track_number=rec.track_number,
                duration_ms=rec.duration_ms,
                isrc=isrc,
                isrc_valid=isrc_valid,
                explicit=rec.explicit,
                popularity=rec.popularity,
                listens=rec.listens,
                markets=" ".join(rec.markets) if rec.markets else None,
                updated_at=rec.updated_at,
                genres=tuple(rec.genres),
                external_ids=tuple(sorted(rec.external_ids.items())),
            )
        )
        kept.append(line)
    if compressor is not None and kept:
        batch.records = [compressor.compress(line) for line in kept]
    return batch


def _bad_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
