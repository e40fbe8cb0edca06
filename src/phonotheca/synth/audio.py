"""Deterministic generated music for tracks of a synthetic catalog: ``phonotheca synth audio``.

Each track gets a short piece (default 20-40 s): a melody of plucked notes with a few
harmonics and a decaying envelope over a bass line, in a key, tempo and timbre drawn
from the track's id, so no two tracks sound alike and a fingerprint tells them apart.
The files come in the formats an archive meets: Ogg Vorbis (the usual "original",
written by libsndfile through ``soundfile``) and FLAC, MP3, Ogg Opus and M4A (AAC)
encoded by PyAV; they are tagged in varied ways (full tags with ISRC and MusicBrainz
ids, artist and title only, none at all), some carry an embedded cover, some albums a
``cover.jpg``, and a few files are broken (empty, truncated, garbage).

Same catalog, seed and options, same bytes: audio is computed from the seed, encoders
run in bit-exact mode, and libsndfile's random Ogg serial number is replaced by one
derived from the track (CRCs recomputed). ``manifest.jsonl`` lists every file with
how it was made, which tests and benchmarks use as the expected answer.

The pieces are shorter than the catalog's tracks (minutes, drawn as real ones are), so
``catalog.jsonl`` gives the chosen tracks' catalog records with ``duration_ms`` set to
their file's length (the files with audio; not the empty and garbage ones). Imported after
the catalog (``import jsonl``), it makes the catalog describe the files: a demo then shows
the same length on the page and in the player, and files tagged with a name only match
their track (names match within 3 s). Pieces as long as the catalog's tracks would make
the demo's 240 tracks ~730 MB of files and ~18 minutes of encoding (measured: 92 s and
61 MB per 20 tracks of 3.5 min, one core) instead of ~1 minute, and a 15 MB budget would
pack a handful of them.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from phonotheca.audio.probe import Tags
from phonotheca.audio.tagging import write_tags

SAMPLE_RATE = 44100
BLOCK_SECONDS = 5
"""Audio is rendered and written in blocks (one big libsndfile write of minutes crashed)."""
FORMATS = {"vorbis": ".ogg", "flac": ".flac", "mp3": ".mp3", "opus": ".opus", "m4a": ".m4a"}
# One slot per track in turn, shuffled per seed: every run of 20 tracks has every variant.
_FORMAT_SLOTS = ["vorbis"] * 8 + ["flac"] * 3 + ["mp3"] * 4 + ["opus"] * 3 + ["m4a"] * 2
_TAGGING_SLOTS = ["full"] * 12 + ["artist_title"] * 5 + ["none"] * 3
BROKEN_EVERY = 25
"""Track ``j`` (in output order) is broken when ``j % BROKEN_EVERY == 7``."""
BROKEN_KINDS = ("truncated", "empty", "garbage")
MANIFEST_FILE = "manifest.jsonl"
CATALOG_FILE = "catalog.jsonl"
TOP_SHARE = 0.8
"""Share of the tracks taken from the most popular; the rest is a sample of the tail."""
_PYAV = {  # format -> (container format, codec, bit rate, sample rate)
    "flac": ("flac", "flac", 0, SAMPLE_RATE),
    "mp3": ("mp3", "libmp3lame", 160_000, SAMPLE_RATE),
    "opus": ("ogg", "libopus", 96_000, 48_000),
    "m4a": ("ipod", "aac", 128_000, SAMPLE_RATE),
    # Not drawn by write_audio, but encode() makes them (tests of every tag system).
    "alac": ("ipod", "alac", 0, SAMPLE_RATE),
    "wav": ("wav", "pcm_s16le", 0, SAMPLE_RATE),
    "aiff": ("aiff", "pcm_s16be", 0, SAMPLE_RATE),
    "wma": ("asf", "wmav2", 128_000, SAMPLE_RATE),
    "wavpack": ("wv", "wavpack", 0, SAMPLE_RATE),
}
EXTENSIONS = {
    **FORMATS,
    "alac": ".m4a",
    "wav": ".wav",
    "aiff": ".aiff",
    "wma": ".wma",
    "wavpack": ".wv",
}


def _key(*parts: object) -> int:
    """A 64-bit integer from the parts: seeds every random draw of one thing."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


# -- music ----------------------------------------------------------------------------------

_SCALES = ((0, 2, 4, 7, 9), (0, 3, 5, 7, 10), (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10))


@dataclass(frozen=True)
class _Note:
    start: int  # sample
    length: int
    freq: float
    amp: float
    pan: float  # 0 left .. 1 right
    harmonics: tuple[float, ...]
    decay: float  # 1/s


def _notes(key: int, seconds: float, rate: int) -> list[_Note]:
    rng = np.random.default_rng(key)
    beat = 60.0 / float(rng.uniform(84, 150))
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
    lead = (1.0, float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.05, 0.3)))
    decay = float(rng.uniform(1.5, 5.0))
    pan = float(rng.uniform(0.25, 0.75))
    notes: list[_Note] = []
    t, degree = 0.0, int(rng.integers(0, len(scale)))
    while t < seconds:
        steps = int(rng.choice((1, 1, 2, 2, 3, 4)))
        degree = max(0, min(2 * len(scale) - 1, degree + int(rng.integers(-2, 3))))
        octave, step = divmod(degree, len(scale))
        freq = root * 2 * 2 ** (octave + scale[step] / 12)
        length = steps * beat / 2
        if rng.random() > 0.1:  # a few rests
            notes.append(_Note(int(t * rate), int(length * rate), freq, 0.22, pan, lead, decay))
        t += length
    bass = (1.0, 0.5)
    t, bar = 0.0, 0
    while t < seconds:  # the bass: root, fifth or fourth, two beats each
        interval = (0, 7, 5, 0)[bar % 4]
        freq = root / 2 * 2 ** (interval / 12)
        notes.append(_Note(int(t * rate), int(2 * beat * rate), freq, 0.18, 0.5, bass, 1.2))
        t += 2 * beat
        bar += 1
    return notes


def render(key: int, seconds: float, rate: int = SAMPLE_RATE) -> Iterator[npt.NDArray[np.float32]]:
    """The piece for ``key`` as blocks of float32 stereo samples, shape (n, 2)."""
    total = int(seconds * rate)
    notes = sorted(_notes(key, seconds, rate), key=lambda n: n.start)
    block = BLOCK_SECONDS * rate
    attack = int(0.008 * rate)
    release = int(0.03 * rate)
    for b0 in range(0, total, block):
        b1 = min(total, b0 + block)
        out = np.zeros((b1 - b0, 2))
        for n in notes:
            if n.start >= b1 or n.start + n.length <= b0:
                continue
            i0, i1 = max(b0, n.start), min(b1, n.start + n.length)
            idx = np.arange(i0 - n.start, i1 - n.start)
            t = idx / rate
            env = np.exp(-n.decay * t) * np.minimum(1.0, idx / attack)
            env *= np.minimum(1.0, (n.length - idx) / release)
            wave = sum(
                a * np.sin(2 * math.pi * n.freq * (h + 1) * t) for h, a in enumerate(n.harmonics)
            )
            mono = n.amp * env * wave
            out[i0 - b0 : i1 - b0, 0] += mono * (1 - n.pan) * 2 * 0.5
            out[i0 - b0 : i1 - b0, 1] += mono * n.pan * 2 * 0.5
        # Fade the very start and end so the piece does not click.
        edge = np.ones(b1 - b0)
        pos = np.arange(b0, b1)
        edge *= np.minimum(1.0, pos / (0.02 * rate)) * np.minimum(1.0, (total - pos) / (0.2 * rate))
        yield (np.tanh(out * edge[:, None] * 1.2) * 0.7).astype(np.float32)


# -- encoding -------------------------------------------------------------------------------

_OGG_CRC = [0] * 256
for _i in range(256):
    _r = _i << 24
    for _ in range(8):
        _r = ((_r << 1) ^ 0x04C11DB7) if _r & 0x80000000 else (_r << 1)
    _OGG_CRC[_i] = _r & 0xFFFFFFFF


def _ogg_crc(data: bytes | bytearray) -> int:
    crc = 0
    table = _OGG_CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) ^ b) & 0xFF]
    return crc


def set_ogg_serial(path: Path, serial: int) -> None:
    """Give every page of a one-stream Ogg file this serial number (libsndfile picks a
    random one) and recompute the page checksums."""
    data = bytearray(path.read_bytes())
    pos = 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError(f"{path}: no Ogg page at byte {pos}")
        segments = data[pos + 26]
        end = pos + 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
        data[pos + 14 : pos + 18] = struct.pack("<I", serial & 0xFFFFFFFF)
        data[pos + 22 : pos + 26] = b"\0\0\0\0"
        data[pos + 22 : pos + 26] = struct.pack("<I", _ogg_crc(data[pos:end]))
        pos = end
    path.write_bytes(bytes(data))


def encode(
    path: Path, blocks: Iterator[npt.NDArray[np.float32]], fmt: str, serial: int = 1
) -> None:
    """Write stereo float blocks at :data:`SAMPLE_RATE` as ``fmt`` (a key of EXTENSIONS)."""
    if fmt == "vorbis":
        import soundfile

        with soundfile.SoundFile(
            path, "w", SAMPLE_RATE, 2, format="OGG", subtype="VORBIS", compression_level=0.4
        ) as f:
            for block in blocks:
                f.write(block)
        set_ogg_serial(path, serial)
        return
    import av

    container_format, codec, bit_rate, rate = _PYAV[fmt]
    with av.open(str(path), "w", format=container_format, options={"fflags": "+bitexact"}) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="stereo")
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        resampler = av.AudioResampler(
            format=stream.codec_context.format, layout="stereo", rate=rate
        )
        pts = 0
        for block in blocks:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block.T), format="fltp", layout="stereo"
            )
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            frame.time_base = Fraction(1, SAMPLE_RATE)
            pts += block.shape[0]
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def cover_jpeg(key: int, size: int = 96) -> bytes:
    """A small deterministic JPEG (a two-colour gradient) for cover art."""
    import av

    rng = np.random.default_rng(key)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    img = (a * (1 - ramp) + b * ramp).repeat(size, axis=1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    ctx: Any = av.CodecContext.create("mjpeg", "w")
    ctx.width = ctx.height = size
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.flags |= av.codec.context.Flags.bitexact
    packets = ctx.encode(frame.reformat(format="yuvj420p")) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


# -- choosing tracks ------------------------------------------------------------------------


def _records(catalog: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    from phonotheca.sources.jsonl import iter_line_blocks

    decode = msgspec.json.Decoder().decode
    for first, lines, _ in iter_line_blocks(catalog, 10_000):
        for n, line in enumerate(lines, first):
            if line.strip():
                yield n, decode(line)


def pick_tracks(catalog: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """The most popular tracks (popularity, then listens) and a seeded sample of the rest."""
    top_n = math.ceil(count * TOP_SHARE)

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        n, r = item
        return -(r.get("popularity") or -1), -(r.get("listens") or -1), n

    top = heapq.nsmallest(top_n, _records(catalog), key=rank)
    top_lines = {n for n, _ in top}
    tail = heapq.nsmallest(
        count - len(top),
        ((n, r) for n, r in _records(catalog) if n not in top_lines),
        key=lambda item: (_key(seed, "tail", item[1]["id"]), item[0]),
    )
    return [r for _, r in top] + [r for _, r in sorted(tail, key=rank)]


# -- the files --------------------------------------------------------------------------------


@dataclass
class SynthAudioSummary:
    files: int = 0
    bytes_written: int = 0
    seconds_of_audio: float = 0.0
    formats: dict[str, int] = field(default_factory=dict)
    tagging: dict[str, int] = field(default_factory=dict)
    broken: int = 0
    embedded_covers: int = 0
    folder_covers: int = 0
    manifest: str = ""
    catalog: str = ""
    """``catalog.jsonl``: the chosen tracks' records with their files' durations."""


_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]+')


def _safe(name: str, limit: int = 60) -> str:
    return _UNSAFE.sub("_", name).strip(" .")[:limit].strip(" .") or "untitled"


def _credit(artists: list[dict[str, Any]]) -> str:
    return "".join((a.get("credited_as") or a["name"]) + a.get("join_phrase", "") for a in artists)


def _tags(rec: dict[str, Any], tagging: str) -> Tags:
    credit = _credit(rec.get("artists") or [])
    if tagging == "none":
        return Tags()
    if tagging == "artist_title":
        return Tags(title=rec["title"], artists=(credit,) if credit else ())
    album = rec.get("album") or {}
    album_credit = _credit(album.get("artists") or [])
    return Tags(
        title=rec["title"],
        artists=(credit,) if credit else (),
        album=album.get("title"),
        album_artists=(album_credit,) if album_credit else (),
        track_number=rec.get("track_number"),
        track_total=album.get("total_tracks"),
        disc_number=rec.get("disc_number"),
        date=album.get("release_date"),
        isrc=rec.get("isrc"),
        musicbrainz_recording=(rec.get("external_ids") or {}).get("musicbrainz_recording"),
        musicbrainz_release=(album.get("external_ids") or {}).get("musicbrainz_release"),
    )


def write_audio(
    catalog: Path,
    out_dir: Path,
    tracks: int,
    seed: int,
    *,
    min_seconds: float = 20.0,
    max_seconds: float = 40.0,
    progress: Callable[[int], None] | None = None,
) -> SynthAudioSummary:
    """Write audio files for ``tracks`` tracks of ``catalog`` under ``out_dir``."""
    if not 0 < min_seconds <= max_seconds:
        raise ValueError("need 0 < min_seconds <= max_seconds")
    chosen = pick_tracks(catalog, tracks, seed)
    rng = np.random.default_rng(_key(seed, "slots"))
    formats = list(rng.permutation(_FORMAT_SLOTS))
    taggings = list(rng.permutation(_TAGGING_SLOTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = SynthAudioSummary()
    manifest: list[bytes] = []
    records: list[bytes] = []
    covered: set[Path] = set()
    for j, rec in enumerate(chosen):
        track_key = _key(seed, rec["id"])
        fmt = str(formats[j % len(formats)])
        tagging = str(taggings[j % len(taggings)])
        broken = BROKEN_KINDS[(j // BROKEN_EVERY) % 3] if j % BROKEN_EVERY == 7 else None
        seconds = round(min_seconds + (max_seconds - min_seconds) * (track_key % 1000) / 999, 3)
        album = rec.get("album") or {}
        folder = out_dir / _safe(
            f"{_credit(album.get('artists') or rec.get('artists') or [])} - "
            f"{album.get('title') or 'Singles'} ({str(album.get('id', 'none')).split(':')[-1]})",
            100,
        )
        folder.mkdir(exist_ok=True)
        path = folder / f"{rec.get('track_number') or 0:02d} {_safe(rec['title'])}{FORMATS[fmt]}"
        embedded = tagging == "full" and _key(seed, "embedded", rec["id"]) % 3 == 0
        if broken in ("empty", "garbage"):
            size = 0 if broken == "empty" else 4096 + track_key % 16384
            path.write_bytes(np.random.default_rng(track_key).bytes(size))
        else:
            encode(path, render(track_key, seconds), fmt, serial=track_key)
            write_tags(path, _tags(rec, tagging), cover_jpeg(track_key) if embedded else None)
            if broken == "truncated":
                os.truncate(path, path.stat().st_size * 3 // 5)
        if folder not in covered and _key(seed, "folder", album.get("id")) % 5 < 2:
            (folder / "cover.jpg").write_bytes(cover_jpeg(_key(seed, "cover", album.get("id"))))
            summary.folder_covers += 1
        covered.add(folder)
        entry = {
            "path": str(path.relative_to(out_dir)),
            "track_id": rec["id"],
            "format": fmt,
            "tagging": tagging,
            "broken": broken,
            "seconds": seconds,
            "embedded_cover": embedded and broken is None,
        }
        manifest.append(json.dumps(entry, ensure_ascii=False).encode())
        if broken not in ("empty", "garbage"):
            record = {**rec, "duration_ms": round(seconds * 1000)}
            records.append(json.dumps(record, ensure_ascii=False).encode())
        summary.files += 1
        summary.bytes_written += path.stat().st_size
        summary.seconds_of_audio += 0 if broken else seconds
        summary.formats[fmt] = summary.formats.get(fmt, 0) + 1
        summary.tagging[tagging] = summary.tagging.get(tagging, 0) + 1
        summary.broken += broken is not None
        summary.embedded_covers += bool(entry["embedded_cover"])
        if progress is not None:
            progress(j + 1)
    summary.catalog = str(_write_lines(out_dir / CATALOG_FILE, records))
    # The manifest last: its presence says the directory is complete.
    summary.manifest = str(_write_lines(out_dir / MANIFEST_FILE, manifest))
    summary.seconds_of_audio = round(summary.seconds_of_audio, 3)
    return summary


def _write_lines(target: Path, lines: list[bytes]) -> Path:
    tmp = target.with_name(target.name + ".partial")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    tmp.replace(target)
    return target


def summary_json(summary: SynthAudioSummary) -> dict[str, Any]:
    return asdict(summary)
