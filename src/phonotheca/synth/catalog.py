"""A deterministic synthetic catalog in the JSONL interchange format.

``write_catalog(out, tracks, seed)`` writes ``tracks`` lines that decode as
:class:`phonotheca.catalog.record.TrackRecord`, with realistic shapes: albums of
1-30 consecutive tracks, artists reused Zipf-wise, titles in five scripts drawn
from Zipf vocabularies, heavy-tailed listens, and ISRCs that are sometimes
hyphenated, lower case, missing, invalid or shared by a re-release.

Determinism: every value is a function of (seed, what it describes, its global
index) through a counter-based hash (SplitMix64), never of a sequential random
stream, so the bytes do not depend on how the work is chunked. Per-value
arithmetic uses only IEEE basic operations (+ - * / floor) and lookup tables;
``exp`` and the normal quantile come from tables built with Python's ``math``,
so a NumPy SIMD code path cannot change a digit on another machine.

Albums are generated in fixed groups of :data:`GROUP_ALBUMS`; a re-release
(shared ISRC) copies a track from an earlier album of its own group. The output
for N tracks is a prefix of the output for more tracks, except that the last
album is cut short (its ``total_tracks`` says so).

Speed: values are drawn with NumPy for a chunk of albums at a time; per track,
Python only joins title words and builds one msgspec struct whose album and
credit are pre-encoded JSON. A ``.zst`` output is one zstd frame per chunk, so
worker processes can generate *and* compress chunks and the parent only writes
them in order.

This module plans the chunks and writes them; the values come from
:mod:`~phonotheca.synth.draws` (counter-based draws), :mod:`~phonotheca.synth.words`
(title words), :mod:`~phonotheca.synth.artists`, :mod:`~phonotheca.synth.codes`
(UUIDs, UPCs), :mod:`~phonotheca.synth.albums` and :mod:`~phonotheca.synth.tracks`
(one chunk of albums and their track lines).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import zstandard

from phonotheca.durable import sync_directory
from phonotheca.synth.albums import AlbumJson, ImageJson, album_kinds, album_sizes
from phonotheca.synth.artists import Artists
from phonotheca.synth.draws import Draws
from phonotheca.synth.tracks import GROUP_ALBUMS, Chunk, TrackLine, build_chunk

__all__ = [
    "CHUNK_GROUPS",
    "GROUP_ALBUMS",
    "ZSTD_LEVEL",
    "SynthSummary",
    "iter_jsonl",
    "iter_track_records",
    "write_catalog",
]

CHUNK_GROUPS: Final = 2
"""Groups generated, encoded and written at a time (about 16 k tracks, 12 MB of JSON)."""
ZSTD_LEVEL: Final = 3

# The structs behind each line, under the names tests use to check their field names
# against the interchange format (msgspec would silently drop a misspelt field).
_Line = TrackLine
_Album = AlbumJson
_Image = ImageJson


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What :func:`write_catalog` wrote."""

    tracks: int
    albums: int
    artists: int
    """Distinct artists credited on a track or an album (``Various Artists`` included)."""
    bytes_written: int
    """Size of the output file (compressed when it ends in ``.zst``)."""
    seconds: float


def iter_jsonl(tracks: int, seed: int, *, chunk_groups: int = CHUNK_GROUPS) -> Iterator[bytes]:
    """The catalog as JSONL byte chunks (each ends with a newline); ``b"".join`` is the file.

    ``chunk_groups`` only changes how much is generated at a time, never the bytes.
    """
    artists = Artists(Draws(seed))
    for k0, i0 in _plan(tracks, seed, chunk_groups):
        yield build_chunk(
            artists.draws, artists, k0, chunk_groups * GROUP_ALBUMS, i0, tracks - i0
        ).data


def iter_track_records(tracks: int, seed: int) -> Iterator[dict[str, Any]]:
    """The catalog's records as plain dicts (decoded JSON), for tests and small tools."""
    for data in iter_jsonl(tracks, seed):
        for line in data.splitlines():
            record: dict[str, Any] = msgspec.json.decode(line)
            yield record


def _plan(tracks: int, seed: int, chunk_groups: int) -> Iterator[tuple[int, int]]:
    """(first album, first track) of each chunk; only album sizes are drawn, which is cheap."""
    if tracks < 0:
        raise ValueError(f"tracks must be >= 0, not {tracks}")
    if chunk_groups < 1:
        raise ValueError(f"chunk_groups must be >= 1, not {chunk_groups}")
    d = Draws(seed)
    n_albums = chunk_groups * GROUP_ALBUMS
    k0 = i0 = 0
    while i0 < tracks:
        yield k0, i0
        k = np.arange(k0, k0 + n_albums, dtype=np.uint64)
        i0 += int(album_sizes(d, k, album_kinds(d, k)).sum())
        k0 += n_albums


def _compressed(chunk: Chunk) -> Chunk:
    """The chunk as one zstd frame (single-threaded zstd: the same bytes on any machine)."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return dataclasses.replace(chunk, data=cctx.compress(chunk.data))


# Worker processes keep one artist-name cache each; chunks do not depend on it.
_worker_artists: Artists | None = None


def _worker_start(seed: int) -> None:
    global _worker_artists
    _worker_artists = Artists(Draws(seed))


def _worker_chunk(k0: int, i0: int, tracks: int, compress: bool) -> Chunk:
    assert _worker_artists is not None
    d = _worker_artists.draws
    chunk = build_chunk(d, _worker_artists, k0, CHUNK_GROUPS * GROUP_ALBUMS, i0, tracks - i0)
    return _compressed(chunk) if compress else chunk


def _chunks(tracks: int, seed: int, workers: int, compress: bool) -> Iterator[Chunk]:
    """The chunks in order (as zstd frames if ``compress``), built here or by ``workers``."""
    plan = _plan(tracks, seed, CHUNK_GROUPS)
    pending: deque[Future[Chunk]] = deque()
    if workers <= 1:
        # Compress in a thread: zstd releases the GIL, so it overlaps the next chunk.
        artists = Artists(Draws(seed))
        with ThreadPoolExecutor(1) as thread:
            for k0, i0 in plan:
                chunk = build_chunk(
                    artists.draws, artists, k0, CHUNK_GROUPS * GROUP_ALBUMS, i0, tracks - i0
                )
                if not compress:
                    yield chunk
                    continue
                pending.append(thread.submit(_compressed, chunk))
                if len(pending) > 1:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        return
    # "spawn" rather than fork: the caller may run threads (a progress bar) that fork
    # would copy in an unknown state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _worker_start, (seed,)) as pool:
        for k0, i0 in plan:
            pending.append(pool.submit(_worker_chunk, k0, i0, tracks, compress))
            if len(pending) > 2 * workers:  # bounded memory: a few chunks in flight
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _default_workers(tracks: int) -> int:
    """Processes worth starting: none below ~10 chunks (start-up costs about 0.5 s)."""
    if tracks < 150_000:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def write_catalog(
    out: Path,
    tracks: int,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic catalog of ``tracks`` lines to ``out`` (zstd when it ends in ``.zst``).

    The file appears atomically: it is written to ``OUT.partial``, synced and renamed.
    A ``.zst`` file is a sequence of zstd frames, one per chunk of
    ``CHUNK_GROUPS * GROUP_ALBUMS`` albums, each with its content size and checksum.
    ``progress`` is called after each chunk with the number of tracks just written.
    ``workers`` processes generate and compress chunks (default: one below 150 k
    tracks, else up to 4 by CPU count); the bytes are the same for any number. They
    are started with "spawn", so a calling *script* needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    started = time.perf_counter()
    workers = _default_workers(tracks) if workers is None else workers
    partial = out.with_name(out.name + ".partial")
    n_tracks = n_albums = 0
    seen = np.zeros(1 << 12, dtype=np.bool_)
    try:
        with partial.open("wb") as raw:
            for chunk in _chunks(tracks, seed, workers, out.name.endswith(".zst")):
                raw.write(chunk.data)
                n_tracks += chunk.tracks
                n_albums += chunk.albums
                if len(chunk.artists) and chunk.artists[-1] >= len(seen):
                    grown = np.zeros(max(int(chunk.artists[-1]) + 1, 2 * len(seen)), np.bool_)
                    grown[: len(seen)] = seen
                    seen = grown
                seen[chunk.artists] = True
                if progress is not None:
                    progress(chunk.tracks)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sync_directory(out.parent)
    return SynthSummary(
        tracks=n_tracks,
        albums=n_albums,
        artists=int(seen.sum()),
        bytes_written=out.stat().st_size,
        seconds=time.perf_counter() - started,
    )
