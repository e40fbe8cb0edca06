"""Re-encode a track to a small, deterministic Ogg Opus file (the plan's "opus" tier).

PyAV decodes whatever FFmpeg reads, resamples to 48 kHz (mono stays mono, stereo stays
stereo, more channels are downmixed to stereo) and encodes with its bundled libopus at
the plan's bitrate (VBR, 20 ms frames, FFmpeg's defaults, like ``ffmpeg -c:a libopus``).
FFmpeg's Ogg muxer frames the stream; its two header pages are then replaced by ours: the
OpusHead records the source's sample rate, and the OpusTags header carries the track's
tags with one ARTIST per credited artist (FFmpeg's metadata holds one value per key).

The same source, settings and package versions give the same bytes, in any process and
any run: the muxer and encoder run in bit-exact mode (no random serial, no version
strings), the Ogg serial number comes from the track's public id, timestamps are sample
counts from zero, and the vendor string is the libopus version. (libopus and FFmpeg pick
SIMD code by CPU at run time, so machines of different CPU families may differ.)

The file is written next to its destination as ``NAME.partial``, synced and renamed, so a
crash leaves either nothing or the whole file. A source that cannot be decoded raises
:class:`TranscodeError` naming it, and leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any

import av
import mutagen

from phonotheca.audio.integrity import truncation
from phonotheca.audio.loudness import Loudness, LoudnessMeter
from phonotheca.audio.oggopus import (
    FLAG_EOS,
    MAX_PAGE_PACKET,
    OPUS_RATE,
    opus_tags_packet,
    replace_headers,
)
from phonotheca.durable import write_atomically

MIN_KBPS, MAX_KBPS = 6, 510
"""libopus' range of bitrates (kbit/s)."""
MAX_VALUE_BYTES = 1024
"""Longer tag values are cut (at a character boundary): the comment header must stay one
Ogg page (64 KiB), since a longer one would move every page after it."""
_SHORT_BY = (0.5, 0.01)
"""A lossy decode is taken as cut short when it ends this many seconds or this share of the
declared duration (whichever is larger) before the duration the container declares: lossy
containers count priming and padding in different ways (WMA is ~50 ms short when whole)."""
_SHORT_BY_LOSSLESS = 0.01
"""Lossless containers state their exact length, and their decoders skip damaged frames
silently (FLAC resyncs), so a lossless decode may fall short by no more than this (s)."""
_INTEGER_16 = frozenset({"u8", "u8p", "s16", "s16p"})


class TranscodeError(Exception):
    """The source could not be transcoded; the message names the file and says why."""

    def __init__(self, source: Path, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[TranscodeError], tuple[Path, str]]:
        # Raised in worker processes: it must cross back to the parent in one piece.
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True)
class OpusTags:
    """What the Opus file's comment header says about the track."""

    title: str | None
    artists: Sequence[str]
    """Credited artists in order: one ARTIST field each."""
    album: str | None
    track_number: int | None
    disc_number: int | None
    date: str | None
    isrc: str | None
    track_id: str
    """The track's public id: PHONOTHECA_ID, and the seed of the Ogg serial number."""
    album_artists: Sequence[str] = field(default=())
    track_total: int | None = None
    disc_total: int | None = None
    r128_track_gain: int | None = None
    """RFC 7845's R128_TRACK_GAIN (Q7.8 dB to −23 LUFS); set from the measurement made
    while encoding, never by the caller."""

    def comments(self) -> list[tuple[str, str]]:
        """``(KEY, value)`` fields in a fixed order; empty values are left out. The gain
        comes first so that cutting an oversized header never drops it."""
        fields: list[tuple[str, object]] = [
            ("R128_TRACK_GAIN", self.r128_track_gain),
            ("TITLE", self.title),
            *(("ARTIST", a) for a in self.artists),
            ("ALBUM", self.album),
            *(("ALBUMARTIST", a) for a in self.album_artists),
            ("TRACKNUMBER", self.track_number),
            ("TRACKTOTAL", self.track_total),
            ("DISCNUMBER", self.disc_number),
            ("DISCTOTAL", self.disc_total),
            ("DATE", self.date),
            ("ISRC", self.isrc),
            ("PHONOTHECA_ID", self.track_id),
        ]
        return [(k, _clip(str(v))) for k, v in fields if v is not None and str(v) != ""]


@dataclass(frozen=True)
class Transcoded:
    """The Opus file written: its bytes and what they hold."""

    size: int
    sha256: str
    """Hex digest of the file's bytes."""
    duration_ms: int
    bitrate: int
    """Average bits per second over the whole file (size × 8 / duration)."""
    sample_rate: int
    channels: int
    loudness: Loudness | None = None
    """The source's loudness, measured from the audio decoded for the encoder."""


def stream_serial(public_id: str) -> int:
    """The Ogg stream serial number for a track: the first 4 bytes of the SHA-256 of its
    public id, less the top bit (FFmpeg's ``serial_offset`` takes 0 to 2^31 - 1)."""
    digest = hashlib.sha256(public_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def transcode_to_opus(source: Path, dest: Path, *, kbps: int, tags: OpusTags) -> Transcoded:
    """Encode ``source`` to Ogg Opus at ``kbps`` kbit/s, write it to ``dest`` atomically.

    Raises :class:`TranscodeError` when the source is missing, empty, cut short, not audio
    or does not decode; an error writing ``dest`` is raised as the ``OSError`` it is.
    """
    data, result = encode_opus(source, kbps=kbps, tags=tags)
    write_atomically(Path(dest), data)
    return result


def encode_opus(source: Path, *, kbps: int, tags: OpusTags) -> tuple[bytes, Transcoded]:
    """The Ogg Opus file's bytes, made in memory, and what they hold (for a caller that
    writes them somewhere itself, such as straight into a volume). Raises as
    :func:`transcode_to_opus` does."""
    if not MIN_KBPS <= kbps <= MAX_KBPS:
        raise ValueError(f"Opus bitrate must be {MIN_KBPS} to {MAX_KBPS} kbit/s, got {kbps}")
    data, channels, duration_samples, loudness = _encode(Path(source), kbps, tags)
    return data, Transcoded(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        duration_ms=duration_samples * 1000 // OPUS_RATE,
        bitrate=round(len(data) * 8 * OPUS_RATE / max(1, duration_samples)),
        sample_rate=OPUS_RATE,
        channels=channels,
        loudness=loudness,
    )


def _encode(source: Path, kbps: int, tags: OpusTags) -> tuple[bytes, int, int, Loudness]:
    """The whole Ogg Opus file in memory, its channel count, duration in 48 kHz samples
    and the source's loudness. The OpusHead output gain stays 0 (RFC 7845 5.1): the gain
    to −23 LUFS goes into the R128_TRACK_GAIN comment, which players apply on request."""
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise TranscodeError(source, f"cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise TranscodeError(source, "empty file")
    problem = _cut_short(source, size)
    if problem:
        raise TranscodeError(source, problem)
    out = io.BytesIO()
    try:
        channels, rate, decoded, declared, lossless, loudness = _transcode_stream(
            source, out, kbps, stream_serial(tags.track_id)
        )
    except TranscodeError:
        raise
    except av.FFmpegError as exc:
        raise TranscodeError(source, f"cannot decode: {_ffmpeg_reason(exc)}") from exc
    except ValueError as exc:
        if "does not match" in str(exc):  # PyAV's resampler, set up from the first frame
            reason = "the sample rate, channels or sample format change mid-stream"
            raise TranscodeError(source, reason) from exc
        raise TranscodeError(source, f"cannot decode: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise TranscodeError(source, f"cannot decode: {exc}") from exc
    if declared is not None:
        shortfall = declared - decoded / rate
        allowed = _SHORT_BY_LOSSLESS if lossless else max(_SHORT_BY[0], _SHORT_BY[1] * declared)
        if shortfall > allowed:
            raise TranscodeError(
                source,
                f"damaged or cut short: decoded {decoded / rate:.2f} s of the {declared:.2f} s"
                " the container declares",
            )
    tags = replace(tags, r128_track_gain=loudness.r128_gain_q78)
    headers, head, pages = replace_headers(
        out.getbuffer(), tags_packet=_tags_packet(tags), input_sample_rate=rate
    )
    last = pages[-1]
    if not last.flags & FLAG_EOS:  # FFmpeg always ends the stream; a bug if not
        raise RuntimeError(f"{source}: the Ogg muxer left the stream without an end page")
    body = out.getbuffer()[pages[0].offset :]
    data = headers + bytes(body)
    return data, channels, last.granule - head.pre_skip, loudness


def _transcode_stream(
    source: Path, out: io.BytesIO, kbps: int, serial: int
) -> tuple[int, int, int, float | None, bool, Loudness]:
    """Decode, resample, encode and mux; returns output channels, the source's sample rate,
    the samples decoded (at that rate), the duration the source declares (if any),
    whether its codec is lossless and the loudness of the decoded audio."""
    try:
        inp = av.open(str(source), "r")
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
        reason = _ffmpeg_reason(exc)
        raise TranscodeError(source, f"not a file FFmpeg can read ({reason})") from exc
    with inp:
        if not inp.streams.audio:
            raise TranscodeError(source, "no audio stream")
        ist = inp.streams.audio[0]
        declared = (
            float(ist.duration * ist.time_base)
            if ist.duration is not None and ist.time_base is not None
            else None
        )
        # The first frame, not the stream header, says what the audio is (HE-AAC reports
        # half its rate and parametric stereo as mono until a frame is decoded).
        frames = inp.decode(ist)
        first = next(frames, None)
        if first is None:
            raise TranscodeError(source, "no audio decoded")
        rate, in_channels = int(first.sample_rate), int(first.layout.nb_channels)
        if rate <= 0 or in_channels <= 0:
            raise TranscodeError(source, "the audio has no sample rate or channels")
        # Integer sources of 16 bits or fewer are encoded from s16, others from float:
        # what ``ffmpeg`` negotiates, and libopus is ~15 % faster on s16.
        sample_fmt = "s16" if first.format.name in _INTEGER_16 else "flt"
        channels = 1 if in_channels == 1 else 2
        with av.open(
            out,
            "w",
            format="ogg",
            options={"fflags": "+bitexact", "serial_offset": str(serial)},
        ) as muxer:
            ost: Any = muxer.add_stream(
                "libopus", rate=OPUS_RATE, layout="mono" if channels == 1 else "stereo"
            )
            ost.bit_rate = kbps * 1000
            enc = ost.codec_context
            enc.format = sample_fmt
            enc.flags |= av.codec.context.Flags.bitexact
            time_base = Fraction(1, rate)
            decoded = 0
            encode, mux = ost.encode, muxer.mux
            meter = LoudnessMeter(rate, in_channels)
            measure = meter.add_frame
            # Decoded frames go straight to the encoder: PyAV's encoder-side resampler
            # converts format, layout and rate and cuts 20 ms frames in one FFmpeg filter
            # graph (a frame that differs from the first raises ValueError). Timestamps
            # are sample counts from zero, whatever the source's say.
            for frame in chain((first,), frames):
                measure(frame)  # before the encoder's resampler takes the frame
                frame.pts = decoded
                frame.time_base = time_base
                decoded += frame.samples
                mux(encode(frame))
            mux(encode(None))
    codec = ist.codec_context.codec
    loudness = meter.result()
    return channels, rate, decoded, declared, bool(codec.lossless and not codec.lossy), loudness


def _cut_short(source: Path, size: int) -> str | None:
    """Why the file's end disagrees with its headers (:mod:`~phonotheca.audio.integrity`),
    or None. Files mutagen cannot read are left for the decoder to judge."""
    try:
        with source.open("rb") as f:
            parsed = mutagen.File(f)
            if parsed is None:
                return None
            return truncation(f, type(parsed).__name__, parsed.info, size)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    except Exception:  # mutagen's parsers raise many kinds on malformed headers
        return None


def _tags_packet(tags: OpusTags) -> bytes:
    comments = tags.comments()
    vendor = libopus_version()
    while True:  # drop trailing fields (the id is kept) until the header fits one page
        packet = opus_tags_packet(vendor, comments)
        if len(packet) <= MAX_PAGE_PACKET or len(comments) <= 1:
            return packet
        del comments[-2]


def _clip(value: str) -> str:
    raw = value.encode()
    if len(raw) <= MAX_VALUE_BYTES:
        return value
    return raw[:MAX_VALUE_BYTES].decode(errors="ignore")


@cache
def libopus_version() -> str:
    """The version string of the libopus PyAV bundles (the OpusTags vendor string), e.g.
    ``libopus 1.6.1``; plain ``libopus`` when it cannot be found."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    for path in sorted(libs.glob("libopus*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
            lib.opus_get_version_string.restype = ctypes.c_char_p
            return str(lib.opus_get_version_string().decode())
        except (OSError, AttributeError):
            continue
    return "libopus"


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's message without the file name PyAV appends (the caller names the file)."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)
