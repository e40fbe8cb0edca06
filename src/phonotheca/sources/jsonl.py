"""The JSONL interchange format as a source: read lines, validate, normalise.

Reading streams the file in blocks (``.jsonl``, plain or compressed: ``.jsonl.zst``,
``.gz``, ``.bz2``, ``.xz``; :mod:`phonotheca.sources.compressed`), so memory stays bounded
whatever the file size. Each line is decoded into the structs of
:mod:`phonotheca.catalog.record`; a line that fails becomes a reject with its line number
and reason, never an exception. A compressed file that ends early or is damaged raises
:class:`~phonotheca.sources.compressed.DamagedInput` after the whole lines before the break.
"""

from __future__ import annotations

import hashlib
import zlib
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from phonotheca.catalog.batch import (
    RECORD_REF_LINES,
    AlbumRow,
    ArtistRow,
    Batch,
    Reject,
    fingerprint,
)
from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.playlist_record import MAX_DOCUMENT_BYTES
from phonotheca.catalog.record import (
    MAX_LINE_BYTES,
    AlbumRecord,
    Alias,
    ArtistCredit,
    RecordError,
    TrackRecord,
    credit_text,
    derived_id,
    parse_date,
)
from phonotheca.sources.compressed import (
    CODECS,
    DamagedInput,
    InputStream,
    Readable,
    SourceError,
    open_input,
)
from phonotheca.sources.playlist_lines import add_playlist_line

__all__ = ["DamagedInput", "SourceError"]  # importers and the CLI take them from here too

BLOCK = 1 << 22
BLOCK_BYTES_MAX = 256 << 20
"""A block of lines closes at this many bytes of lines, whatever its number of lines."""
JSONL_NAMES = tuple([".jsonl"] + [f".jsonl{ending}" for ending in CODECS])
"""The names ``import jsonl`` reads: ``.jsonl``, plain or compressed."""


def check_jsonl_name(path: Path) -> None:
    """Refuse a file that is not named as interchange JSONL (:data:`JSONL_NAMES`)."""
    if not path.name.lower().endswith(JSONL_NAMES):
        raise SourceError(
            f"{path}: not a file name import jsonl reads: interchange JSONL is named .jsonl,"
            f" plain or compressed ({', '.join(JSONL_NAMES[1:])})"
        )


def open_binary(path: Path) -> tuple[InputStream, InputStream]:
    """Open ``path`` for reading, decompressing it on the fly when its name says so.

    Returns (stream of decompressed bytes, the same stream): its ``position`` tells how
    far into the file as stored reading has gone, for progress bars. (The pair is kept
    for the callers of the time when the second was the raw file.)
    """
    stream = open_input(path)
    return stream, stream


def file_fingerprint(path: Path) -> str:
    """Size and a hash of the first MiB: identifies "the same file" for resuming."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(1 << 20)
    return f"{size}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


def bounded_lines(stream: Readable, max_bytes: int) -> Iterator[list[bytes]]:
    """The lines of a binary stream, read :data:`BLOCK` bytes at a time: a list of the
    whole lines of each block (so that no Python runs per line).

    A line longer than ``max_bytes`` is cut just past that length (so it will be
    rejected) and the rest of it skipped: one hostile line never costs more memory.
    """
    tail = b""
    overlong = False  # inside a line that was already cut
    while block := stream.read(BLOCK):
        parts = block.split(b"\n") if overlong else (tail + block).split(b"\n")
        if overlong:
            if len(parts) == 1:
                continue
            del parts[0]
            overlong = False
        tail = parts.pop()
        if len(tail) > max_bytes:
            parts.append(tail[: max_bytes + 1])
            tail = b""
            overlong = True
        if parts:
            yield parts
    if tail:
        yield [tail]


def iter_line_blocks(
    path: Path, lines_per_block: int, skip_lines: int = 0
) -> Iterator[tuple[int, list[bytes], int]]:
    """Yield (number of the first line, lines, input bytes read so far).

    Line numbers start at 1. The first ``skip_lines`` lines are skipped (resume).
    A line longer than a playlist may be (:data:`MAX_DOCUMENT_BYTES`) is cut just past
    that length (it will be rejected), so one hostile line never costs more memory than
    that; a track line longer than :data:`MAX_LINE_BYTES` is rejected too. Only files named
    as JSONL are read (:func:`check_jsonl_name`). Where a compressed file breaks, the
    whole lines before the break are yielded, then
    :class:`~phonotheca.sources.compressed.DamagedInput` is raised (the cut line is not
    yielded).
    """
    check_jsonl_name(path)
    stream = open_input(path)
    with stream:
        # Lines up to a playlist's size (§1.9) are read whole; a track line over
        # MAX_LINE_BYTES is rejected by the parser. A block closes at BLOCK_BYTES.
        yield from line_blocks(
            stream, stream, lines_per_block, skip_lines, MAX_DOCUMENT_BYTES, BLOCK_BYTES_MAX
        )


def line_blocks(
    stream: Readable,
    source: InputStream,
    lines_per_block: int,
    skip_lines: int,
    max_bytes: int,
    max_block_bytes: int = 1 << 62,
) -> Iterator[tuple[int, list[bytes], int]]:
    """The blocks of lines of ``stream`` (the bytes of ``source``, or of a part of it):
    (number of the first line, lines, bytes of ``source`` read so far). A block ends
    after ``lines_per_block`` lines or ``max_block_bytes`` bytes of lines; see
    :func:`iter_line_blocks`."""
    line_no = 0  # lines read, skipped ones included
    pending: list[bytes] = []
    size = 0  # bytes of the pending lines (counted only under a byte limit)
    limited = max_block_bytes < 1 << 62
    damage: DamagedInput | None = None
    try:
        for parts in bounded_lines(stream, max_bytes):
            if line_no < skip_lines:
                drop = min(len(parts), skip_lines - line_no)
                line_no += drop
                del parts[:drop]
            while parts:
                n = min(len(parts), lines_per_block - len(pending))
                if limited:
                    ends = list(accumulate(map(len, parts[:n]), initial=size))
                    n = min(n, bisect_left(ends, max_block_bytes, lo=1))
                    size = ends[n]
                pending += parts[:n]
                del parts[:n]
                line_no += n
                if len(pending) >= lines_per_block or (limited and size >= max_block_bytes):
                    yield line_no - len(pending) + 1, pending, source.position
                    pending, size = [], 0
    except DamagedInput as exc:
        damage = exc
    if pending:
        yield line_no - len(pending) + 1, pending, source.position
    if damage is not None:
        raise damage


class _TrackLine(TrackRecord):
    """A track line whose album and artists are decoded only when not seen before.

    Consecutive tracks of an album repeat the same album and artists JSON; caching
    on the raw bytes makes the repeats almost free.
    """

    artists: msgspec.Raw  # type: ignore[assignment]
    album: msgspec.Raw = msgspec.Raw(b"null")  # type: ignore[assignment]
    # Not track fields: a line that has either is a playlist (§1.9) or a record of
    # another type, which add_playlist_line tells apart. Decoded here, so that a track
    # line is never searched for them.
    type: Any = None
    playlist: msgspec.Raw = msgspec.Raw(b"")


_line_decoder = msgspec.json.Decoder(_TrackLine)
_album_decoder = msgspec.json.Decoder(AlbumRecord)
_artists_decoder = msgspec.json.Decoder(list[ArtistCredit])
RECORDS_PER_CHUNK = 1000
CHUNK_LEVEL = 1  # ~1.7 us a line instead of 2.4 at level 3; the ratio hardly differs

Credits = tuple[tuple[str, str | None, str], ...]
AlbumHit = tuple[str, int, AlbumRow, dict[str, tuple[int, ArtistRow]]]


class _Caches:
    """Per-process caches of decoded album and credit JSON, bounded.

    An album's tracks are neighbours in the input, so a cache spanning a batch or two
    catches nearly every repeat: at 2 M synthetic tracks, 4,096 entries parse as fast as
    50,000 did, and a parsing process holds ~75 MB instead of ~220 MB.
    """

    LIMIT = 4_096

    def __init__(self) -> None:
        self.albums: dict[bytes, AlbumHit | str] = {}
        self.credits: dict[bytes, tuple[Credits, str, dict[str, tuple[int, ArtistRow]]] | str] = {}

    def trim(self) -> None:
        if len(self.albums) > self.LIMIT:
            self.albums.clear()
        if len(self.credits) > self.LIMIT:
            self.credits.clear()


_caches = _Caches()


def _with_path(exc: Exception, where: str) -> str:
    return str(exc).replace("`$", f"`$.{where}")


def _decode_credits(
    raw: bytes, where: str
) -> tuple[Credits, str, dict[str, tuple[int, ArtistRow]]]:
    hit = _caches.credits.get(raw)
    if hit is None:
        try:
            artists = _artists_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            hit = _with_path(exc, where)
        else:
            rows: dict[str, tuple[int, ArtistRow]] = {}
            credits = []
            for a in artists:
                pid = a.id or derived_id("artist", a.name)
                if pid not in rows:
                    row = ArtistRow(a.name, a.sort_name)
                    rows[pid] = (fingerprint(row), row)
                credits.append((pid, a.credited_as, a.join_phrase))
            hit = (tuple(credits), credit_text(artists), rows)
        _caches.credits[raw] = hit
    if isinstance(hit, str):
        raise RecordError(hit)
    return hit


def _decode_album(raw: bytes) -> AlbumHit:
    """(public id, fingerprint, row, the album's artists) of an album's JSON."""
    hit = _caches.albums.get(raw)
    if hit is None:
        try:
            rec = _album_decoder.decode(raw)
            credits, credit, album_artists = _decode_credits(
                msgspec.json.encode(rec.artists), "album.artists"
            )
            date = precision = None
            if rec.release_date:
                date, precision = parse_date(rec.release_date, rec.release_date_precision)
        except msgspec.ValidationError as exc:
            hit = _with_path(exc, "album")
        except RecordError as exc:
            hit = str(exc)
        else:
            row = AlbumRow(
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
            pid = rec.id or derived_id("album", credit, rec.title, date or "")
            hit = (pid, fingerprint(row), row, album_artists)
        _caches.albums[raw] = hit
    if isinstance(hit, str):
        raise RecordError(hit)
    return hit


def prepare_lines(first_line: int, lines: list[bytes], compress: bool = True) -> Batch:
    """Decode and normalise a block of lines into a :class:`Batch`.

    With ``compress`` the loaded lines are kept as zstd chunks for export.

    This runs once per input line in the parsing processes, which must keep up with the
    single writer: the common line (a track, valid, its album and credits those of the
    line before or cached) takes the fewest Python steps, and what is rare (blank lines,
    playlists, overlong or bad lines) is looked for only when decoding fails or the
    decoded record says so.
    """
    _caches.trim()
    batch = Batch(first_line=first_line, last_line=first_line + len(lines) - 1, read=len(lines))
    artists = batch.artists
    albums = batch.albums
    winners: dict[str, int] = {}
    kept: list[_Kept] = []
    decode = _line_decoder.decode
    prev_album = prev_credits = b""
    album_id: str | None = None
    credits: Credits = ()
    credit = ""
    for n, line in enumerate(lines, first_line):
        if len(line) > MAX_LINE_BYTES:
            if not _other_line(batch, n, line):
                reason = f"line longer than {MAX_LINE_BYTES} bytes"
                batch.rejects.append(Reject(n, reason, line[:4096]))
            continue
        try:
            rec = decode(line)
            if (rec.type is not None or rec.playlist) and add_playlist_line(
                batch, n, line, tracks_elsewhere=False
            ):
                continue
            # Both decoded before either is added: a line rejected adds nothing.
            raw_credits = bytes(rec.artists)
            new_credits = None
            if raw_credits != prev_credits:
                new_credits = _decode_credits(raw_credits, "artists")
            raw_album = bytes(rec.album)
            new_album = None
            if raw_album != prev_album and raw_album != b"null":
                new_album = _decode_album(raw_album)
            isrc = None
            if rec.isrc:
                isrc, isrc_valid = parse_isrc(rec.isrc)
                if not isrc_valid:
                    batch.invalid_isrc += 1
        except (msgspec.ValidationError, RecordError) as exc:
            if not _other_line(batch, n, line):
                batch.rejects.append(Reject(n, f"invalid record: {exc}", line))
            continue
        except msgspec.DecodeError as exc:
            if not _other_line(batch, n, line):
                reason = "invalid UTF-8" if _bad_utf8(line) else f"invalid JSON: {exc}"
                batch.rejects.append(Reject(n, reason, line))
            continue
        except UnicodeDecodeError as exc:
            if not _other_line(batch, n, line):
                batch.rejects.append(
                    Reject(n, f"invalid UTF-8: {exc.reason} at byte {exc.start}", line)
                )
            continue
        if raw_album != prev_album:  # the album's artists first, then the track's
            prev_album = raw_album
            album_id = None
            if new_album is not None:
                album_id, album_fp, album, album_artists = new_album
                albums[album_id] = (album_fp, album)
                artists.update(album_artists)
        if new_credits is not None:
            prev_credits = raw_credits
            credits, credit, credit_artists = new_credits
            artists.update(credit_artists)
        entry = (line, rec, credits, credit, album_id, isrc)
        prev = winners.get(rec.id)
        if prev is None:
            winners[rec.id] = len(kept)
            kept.append(entry)
            continue
        batch.superseded += 1  # one of the two records of this id loses
        if newer_or_same(rec.updated_at, kept[prev][1].updated_at):
            kept[prev] = entry
    _fill(batch, kept, compress)
    return batch


def _other_line(batch: Batch, n: int, line: bytes) -> bool:
    """A line that did not decode as a track: True when it is blank (not a record) or
    a playlist record (§1.9, added to ``batch`` or rejected as such)."""
    if not line.strip():
        batch.read -= 1  # blank lines are not records
        return True
    # A playlist record says so; the test on bytes spares the decoding of most lines.
    return (b'"type"' in line or b'"playlist"' in line) and add_playlist_line(
        batch, n, line, tracks_elsewhere=False
    )


def newer_or_same(new: str | None, old: str | None) -> bool:
    """The replacement rule: a record replaces the stored one unless both are dated and
    the stored one is newer. Dates are RFC 3339 UTC strings, which sort as text."""
    return new is None or old is None or new >= old


# (line, record, credits, credit text, album public id, normalised ISRC)
_Kept = tuple[bytes, _TrackLine, Credits, str, str | None, str | None]


def _fill(batch: Batch, kept: list[_Kept], compress: bool) -> None:
    """The batch's rows from the winning record of each id, in input order; their lines
    kept in chunks of :data:`RECORDS_PER_CHUNK` (record ``i`` is line ``i % 1000`` of
    chunk ``i // 1000``)."""
    tracks = batch.tracks
    out_credits = batch.credits
    crc32, adler32 = zlib.crc32, zlib.adler32
    for i, (line, rec, credits, credit, album_id, isrc) in enumerate(kept):
        markets = rec.markets
        tracks.append(
            (
                rec.id,
                rec.title,
                credit,
                album_id,
                rec.disc_number,
                rec.track_number,
                rec.duration_ms,
                isrc,
                rec.explicit,
                rec.popularity,
                rec.listens,
                " ".join(markets) if markets else None,
                rec.updated_at,
                (crc32(line) << 31) ^ adler32(line),  # fingerprint_bytes, inlined
                (i // RECORDS_PER_CHUNK) * RECORD_REF_LINES + i % RECORDS_PER_CHUNK
                if compress
                else None,
            )
        )
        if len(credits) == 1:
            out_credits.append((i, 0, *credits[0]))
        else:
            out_credits += [(i, pos, *c) for pos, c in enumerate(credits)]
        if rec.genres:
            batch.genres += [(i, g) for g in dict.fromkeys(rec.genres)]
        if rec.external_ids:
            batch.external_ids += [(i, k, v) for k, v in sorted(rec.external_ids.items())]
        if rec.aliases:
            first: dict[str, Alias] = {}  # one alias per name: the first
            for a in rec.aliases:
                first.setdefault(a.name, a)
            batch.aliases += [(i, a.name, a.sort_name, a.locale) for a in first.values()]
    if compress and kept:
        cctx = zstandard.ZstdCompressor(level=CHUNK_LEVEL)
        batch.chunks = [
            cctx.compress(b"\n".join([k[0] for k in kept[c : c + RECORDS_PER_CHUNK]]))
            for c in range(0, len(kept), RECORDS_PER_CHUNK)
        ]


def _bad_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
