"""Live transcoding for music apps that ask for a lower bitrate or another format.

Subsonic's ``stream`` takes ``maxBitRate`` (kbit/s, 0 for no limit) and ``format``
(``raw`` for the stored file). :func:`choose` decides:

- the stored file when ``format=raw``, or when it already is in the format asked (or
  none was asked) within the bitrate asked;
- else MP3 (what every app plays) or, when the app asks for it or the file is Opus,
  Ogg Opus, at the bitrate asked (MP3: the nearest standard rate below it) or, with no
  limit, :data:`DEFAULT_KBPS`.

:class:`LiveTranscode` opens the track's bytes inside their tar volume and decodes the
first frame before anything is sent, so a file FFmpeg cannot read is an error the app
sees, not a broken stream. Encoding then runs as the response is read, in the server's
threads, at most :data:`MAX_TRANSCODES` at a time (one per CPU). A transcode takes its
slot when it is opened and gives it back when it ends or is dropped; when none is free,
opening raises :class:`TranscodeBusy` at once (the app is told to retry: no worker thread
waits for a slot, and no app gets an empty stream). The output has no
length and no byte ranges: apps that seek re-request with ``timeOffset``, which is not
implemented (they play from the start).
"""

from __future__ import annotations

import io
import itertools
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

FORMATS: dict[str, tuple[str, str, str]] = {
    # format: (muxer, encoder, Content-Type)
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg; codecs=opus"),
}
DEFAULT_KBPS = {"mp3": 192, "opus": 128}
MP3_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
OPUS_KBPS = (6, 256)
"""Opus bitrates used (libopus takes up to 510; 256 is transparent stereo)."""
MAX_TRANSCODES = os.cpu_count() or 1
RETRY_AFTER = 5
"""Seconds an app is asked to wait before retrying when every slot is busy."""
CHUNK = 64 << 10
"""Encoded bytes gathered before they are sent."""

_slots = threading.BoundedSemaphore(MAX_TRANSCODES)


class TranscodeError(Exception):
    """The track cannot be decoded: the message says why."""


class TranscodeBusy(Exception):
    """Every transcoding slot is taken: the request should be retried later."""

    def __init__(self) -> None:
        super().__init__(
            f"all {MAX_TRANSCODES} transcoding slots of this server are busy: try again in"
            f" {RETRY_AFTER} s, or ask for the stored file (format=raw)"
        )


class _Slot:
    """One of :data:`MAX_TRANSCODES`, taken without waiting and given back once."""

    def __init__(self) -> None:
        if not _slots.acquire(blocking=False):
            raise TranscodeBusy()
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                _slots.release()


@dataclass(frozen=True, slots=True)
class Target:
    format: str
    kbps: int

    @property
    def content_type(self) -> str:
        return FORMATS[self.format][2]

    @property
    def suffix(self) -> str:
        return self.format


def choose(
    codec: str | None, bitrate: int | None, fmt: str | None, max_kbps: int | None
) -> Target | None:
    """What to send for a file of ``codec`` at ``bitrate`` (bit/s, None if unknown), asked
    as ``fmt`` at most ``max_kbps``: None for the stored file."""
    fmt = (fmt or "").strip().lower()
    if fmt == "raw":
        return None
    if fmt not in FORMATS:
        fmt = ""  # a format this server does not make: treated as no preference
    limit = max_kbps if max_kbps and max_kbps > 0 else None
    source_kbps = bitrate // 1000 if bitrate else None
    if (not fmt or fmt == codec) and (
        limit is None or (source_kbps is not None and source_kbps <= limit)
    ):
        return None
    target = fmt or ("opus" if codec == "opus" else "mp3")
    kbps = limit or DEFAULT_KBPS[target]
    if target == "mp3":
        kbps = max([k for k in MP3_KBPS if k <= kbps] or [MP3_KBPS[0]])
    else:
        kbps = max(OPUS_KBPS[0], min(OPUS_KBPS[1], kbps))
    return Target(target, kbps)


class _Slice(io.RawIOBase):
    """``length`` bytes at ``offset`` of a file, as a seekable file of their own."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self._file = path.open("rb")
        self._offset = offset
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._file.fileno(), want, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._file.close()
        super().close()


class _Sink(io.RawIOBase):
    """Where the muxer writes: gathered, then taken by the response. Not seekable, so
    muxers write their output in order and never go back."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


class LiveTranscode:
    """A track's bytes (``length`` at ``offset`` of ``path``) re-encoded as ``target``,
    read by iterating; opened and checked by the constructor."""

    def __init__(self, path: Path, offset: int, length: int, target: Target) -> None:
        self.target = target
        self._closed = False
        self._slot = _Slot()  # TranscodeBusy when none is free
        # A response that is never read (the app went away first) still frees the slot.
        weakref.finalize(self, self._slot.release)
        try:
            self._source = _Slice(path, offset, length)
        except OSError as exc:
            self._slot.release()
            raise TranscodeError(f"the file cannot be read: {exc}") from exc
        try:
            self._input: Any = av.open(self._source, "r")
            if not self._input.streams.audio:
                raise TranscodeError("the file has no audio stream")
            self._stream = self._input.streams.audio[0]
            self._frames = self._input.decode(self._stream)
            first = next(self._frames, None)
            if first is None:
                raise TranscodeError("no audio could be decoded")
            self._first: Any = first
        except TranscodeError:
            self._source.close()
            self._slot.release()
            raise
        except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
            self._source.close()
            self._slot.release()
            raise TranscodeError(f"FFmpeg cannot decode it: {exc}") from exc

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._encode()
        except (av.FFmpegError, ValueError, OSError):
            return  # a frame further on is damaged: the stream ends there
        finally:
            self.close()

    def _encode(self) -> Iterator[bytes]:
        muxer_name, encoder, _ = FORMATS[self.target.format]
        first = self._first
        rate = int(first.sample_rate)
        channels = 1 if first.layout.nb_channels == 1 else 2
        out_rate = 48_000 if self.target.format == "opus" else min(rate, 48_000)
        if self.target.format == "mp3" and out_rate not in (32_000, 44_100, 48_000):
            out_rate = 44_100
        sink = _Sink()
        with av.open(sink, "w", format=muxer_name) as muxer:
            ost: Any = muxer.add_stream(
                encoder,
                rate=out_rate,
                layout="mono" if channels == 1 else "stereo",
                # Opus VBR runs 20-25 % over its target on dense audio: a limit is a limit.
                options={"vbr": "constrained"} if self.target.format == "opus" else {},
            )
            ost.bit_rate = self.target.kbps * 1000
            time_base = Fraction(1, rate)
            decoded = 0
            frames = [first]
            while frames:
                for frame in frames:
                    frame.pts = decoded
                    frame.time_base = time_base
                    decoded += frame.samples
                    muxer.mux(ost.encode(frame))
                if len(sink.data) >= CHUNK:
                    yield sink.take()
                frames = list(itertools.islice(self._frames, 16))
            muxer.mux(ost.encode(None))
        if sink.data:
            yield sink.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._input.close()
            self._source.close()
            self._slot.release()
