"""Cheap checks that an audio file is whole: the end of the file agrees with its headers.

mutagen reads headers, so a file cut short usually still "opens": an MP3's Xing header
or a FLAC STREAMINFO still states the full length. Decoding every file to find out
would cost far more than the scan, so each check reads at most a few hundred KiB at the
end of the file and compares it with what the headers promise:

- Ogg: the last whole page must carry the end-of-stream flag.
- FLAC: the last frame header must end at STREAMINFO's total sample count.
- MP4: the top-level atoms must fit the file (``mdat`` cut short is the usual case).
- MP3 with a Xing/Info/VBRI header, WAV, AIFF: the file must hold the bytes that the
  stated bitrate and length need.

A check that cannot judge (no header found in the tail, unknown totals) passes.
"""

from __future__ import annotations

import re
import struct
from typing import Any, BinaryIO

_OGG_TAIL = 27 + 255 + 255 * 255  # the largest possible Ogg page
_FLAC_SYNC = re.compile(b"\xff[\xf8\xf9]")
_FLAC_BLOCK = {1: 192, 2: 576, 3: 1152, 4: 2304, 5: 4608}
_MP3_SLACK = 0.97  # the Xing byte count includes the header frame, and mutagen rounds


def truncation(fileobj: BinaryIO, kind: str, info: Any, size: int) -> str | None:
    """Why the file looks cut short, or None when it looks whole (or cannot be judged)."""
    if kind in ("OggVorbis", "OggOpus", "OggFLAC", "OggSpeex"):
        return _ogg(fileobj, size)
    if kind == "FLAC":
        return _flac(fileobj, size, info)
    if kind == "MP4":
        return _mp4(fileobj, size)
    if kind == "MP3":
        if getattr(info, "sketchy", True) or int(getattr(info, "bitrate_mode", 0)) == 0:
            return None  # no Xing/Info/VBRI header: mutagen's length is estimated from the size
        return _short(size, info, _MP3_SLACK)
    if kind in ("WAVE", "AIFF"):
        return _short(size, info, 0.999)
    return None


def _tail(fileobj: BinaryIO, size: int, n: int) -> bytes:
    n = min(n, size)
    fileobj.seek(size - n)
    return fileobj.read(n)


def _short(size: int, info: Any, slack: float) -> str | None:
    needed = float(getattr(info, "bitrate", 0) or 0) * float(info.length) / 8
    if needed and size < needed * slack:
        return f"truncated: {size:,} bytes where the headers need {int(needed):,}"
    return None


def _ogg(fileobj: BinaryIO, size: int) -> str | None:
    tail = _tail(fileobj, size, _OGG_TAIL)
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        if pos + 27 <= len(tail) and tail[pos + 4] == 0:
            segments = tail[pos + 26]
            if pos + 27 + segments <= len(tail):
                end = pos + 27 + segments + sum(tail[pos + 27 : pos + 27 + segments])
                if end <= len(tail):  # the last whole page
                    if tail[pos + 5] & 0x04:
                        return None
                    return "truncated: the last Ogg page does not end the stream"
        pos = tail.rfind(b"OggS", 0, pos)
    return "truncated: no whole Ogg page at the end of the file"


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _flac_frame(tail: bytes, p: int, info: Any) -> tuple[int, int] | None:
    """(first sample, block size) of a valid frame header at ``p``, else None."""
    if p + 6 > len(tail):
        return None
    bs_code, sr_code = tail[p + 2] >> 4, tail[p + 2] & 0x0F
    b3 = tail[p + 3]
    channels_code, size_code = b3 >> 4, (b3 >> 1) & 7
    if bs_code == 0 or sr_code == 15 or channels_code > 10 or size_code == 3 or b3 & 1:
        return None
    channels = channels_code + 1 if channels_code < 8 else 2
    if channels != getattr(info, "channels", channels):
        return None
    q = p + 4
    first = tail[q]
    if first < 0x80:
        number, extra = first, 0
    else:
        extra = next((n for n in range(1, 7) if first >> (6 - n) == (0xFF >> (6 - n)) - 1), 0)
        if not extra:
            return None
        number = first & (0x3F >> extra)
    if q + 1 + extra > len(tail):
        return None
    for b in tail[q + 1 : q + 1 + extra]:
        if b & 0xC0 != 0x80:
            return None
        number = (number << 6) | (b & 0x3F)
    q += 1 + extra
    if bs_code == 6:
        block = tail[q] + 1 if q < len(tail) else 0
        q += 1
    elif bs_code == 7:
        block = int.from_bytes(tail[q : q + 2], "big") + 1
        q += 2
    else:
        block = _FLAC_BLOCK[bs_code] if bs_code < 8 else 256 << (bs_code - 8)
    q += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
    if q >= len(tail) or _crc8(tail[p:q]) != tail[q]:
        return None
    fixed = tail[p + 1] == 0xF8
    nominal = int(getattr(info, "max_blocksize", 0) or 0)
    return (number * nominal if fixed else number), block


def _flac(fileobj: BinaryIO, size: int, info: Any) -> str | None:
    total = int(getattr(info, "total_samples", 0) or 0)
    if not total:
        return None
    max_frame = int(getattr(info, "max_framesize", 0) or 0)
    tail = _tail(fileobj, size, min(1 << 20, 2 * max_frame + 64 if max_frame else 256 << 10))
    found = False
    # The last real frame ends at the total; a false sync inside its data is possible, so
    # an earlier header that ends at the total also proves the file whole.
    for m in reversed(list(_FLAC_SYNC.finditer(tail))):
        frame = _flac_frame(tail, m.start(), info)
        if frame is None:
            continue
        found = True
        if frame[0] + frame[1] == total:
            return None
    if not found:
        return None
    return "truncated: the last FLAC frame ends before the stated length"


def _mp4(fileobj: BinaryIO, size: int) -> str | None:
    pos = 0
    for _ in range(10_000):
        if pos >= size:
            return None
        fileobj.seek(pos)
        head = fileobj.read(16)
        if len(head) < 8:
            return "truncated: a top-level MP4 atom is cut short"
        length, name = struct.unpack(">I4s", head[:8])
        if length == 1 and len(head) == 16:
            (length,) = struct.unpack(">Q", head[8:16])
        elif length == 0:
            return None  # the last atom runs to the end of the file
        if length < 8:
            return None  # not something we can judge
        if pos + length > size:
            atom = name.decode("latin-1")
            return f"truncated: MP4 atom {atom!r} ends {pos + length - size:,} bytes past the end"
        pos += length
    return None
