"""Acoustic fingerprints with Chromaprint, computed locally (never an AcoustID lookup).

PyAV decodes the first :data:`MAX_SECONDS` of a file to 11025 Hz mono 16-bit PCM, and
``libchromaprint`` (Debian ``libchromaprint1``, loaded with ctypes: no binary, no
network) turns it into a fingerprint. Fingerprints are stored as Chromaprint's usual
compressed base64 text (what ``fpcalc`` prints), so they stay comparable with other
tools; comparing two decodes them back to their 32-bit items and counts differing bits.

Chromaprint needs a few seconds of audio before it emits anything: a file shorter than
about 4 s has no fingerprint (:func:`fingerprint_file` returns None).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_SECONDS = 120
"""Like ``fpcalc``: the start of a recording identifies it."""
SAMPLE_RATE = 11025
MIN_ITEMS = 10
"""Fewer items than this (about 1.3 s of overlap) say too little to compare."""
SAME_RECORDING = 0.75
"""Share of equal bits from which two fingerprints are taken as one recording. Two
encodings of one recording score 0.95-1.0, unrelated audio about 0.5-0.6."""
_ALGORITHM = 1  # CHROMAPRINT_ALGORITHM_TEST2, the default of fpcalc and AcoustID
_MAX_SHIFT = 8  # items (about 1 s) by which two decodes may be offset


class FingerprintError(Exception):
    """Chromaprint is not installed, or the audio cannot be decoded."""


@cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("chromaprint") or "libchromaprint.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise FingerprintError(
            "libchromaprint is not installed: apt-get install libchromaprint1"
            " (or run scripts/install-debian-packages.sh)"
        ) from exc
    vp, ip, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    lib.chromaprint_new.restype = vp
    lib.chromaprint_new.argtypes = [ip]
    lib.chromaprint_free.argtypes = [vp]
    lib.chromaprint_start.argtypes = [vp, ip, ip]
    lib.chromaprint_feed.argtypes = [vp, vp, ip]
    lib.chromaprint_finish.argtypes = [vp]
    lib.chromaprint_get_fingerprint.argtypes = [vp, ctypes.POINTER(cp)]
    lib.chromaprint_dealloc.argtypes = [vp]
    lib.chromaprint_decode_fingerprint.argtypes = [
        cp,
        ip,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)),
        ctypes.POINTER(ip),
        ctypes.POINTER(ip),
        ip,
    ]
    return lib


def available() -> bool:
    """True when libchromaprint can be loaded."""
    try:
        _lib()
    except FingerprintError:
        return False
    return True


def fingerprint_pcm(samples: npt.NDArray[np.int16]) -> str | None:
    """Fingerprint of 11025 Hz mono 16-bit samples, or None when they are too short."""
    lib = _lib()
    ctx = lib.chromaprint_new(_ALGORITHM)
    try:
        data = np.ascontiguousarray(samples, dtype=np.int16)
        if not lib.chromaprint_start(ctx, SAMPLE_RATE, 1):
            raise FingerprintError("chromaprint_start failed")
        if data.size and not lib.chromaprint_feed(ctx, data.ctypes.data, data.size):
            raise FingerprintError("chromaprint_feed failed")
        if not lib.chromaprint_finish(ctx):
            raise FingerprintError("chromaprint_finish failed")
        out = ctypes.c_char_p()
        if not lib.chromaprint_get_fingerprint(ctx, ctypes.byref(out)):
            raise FingerprintError("chromaprint_get_fingerprint failed")
        try:
            text = (out.value or b"").decode("ascii")
        finally:
            lib.chromaprint_dealloc(out)
    finally:
        lib.chromaprint_free(ctx)
    return text if len(decode(text)) >= MIN_ITEMS else None


def decode_audio(path: Path, seconds: int = MAX_SECONDS) -> npt.NDArray[np.int16]:
    """The first ``seconds`` of the file's first audio stream as 11025 Hz mono int16."""
    import av

    parts: list[npt.NDArray[Any]] = []
    wanted = seconds * SAMPLE_RATE
    have = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    have += parts[-1].size
                if have >= wanted:
                    break
            else:
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise FingerprintError(f"cannot decode {path}: {exc}") from exc
    pcm = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
    return pcm[:wanted]


def fingerprint_file(path: Path) -> str | None:
    """Chromaprint fingerprint of the file's audio (None when shorter than ~4 s)."""
    return fingerprint_pcm(decode_audio(path))


def decode(fingerprint: str) -> npt.NDArray[np.uint32]:
    """The 32-bit items of a compressed fingerprint."""
    if not fingerprint:
        return np.zeros(0, np.uint32)
    lib = _lib()
    raw = fingerprint.encode("ascii")
    items = ctypes.POINTER(ctypes.c_uint32)()
    size = ctypes.c_int()
    algorithm = ctypes.c_int()
    if not lib.chromaprint_decode_fingerprint(
        raw, len(raw), ctypes.byref(items), ctypes.byref(size), ctypes.byref(algorithm), 1
    ):
        raise FingerprintError("not a Chromaprint fingerprint")
    try:
        if not size.value:
            return np.zeros(0, np.uint32)
        return np.ctypeslib.as_array(items, shape=(size.value,)).copy()
    finally:
        lib.chromaprint_dealloc(items)


def similarity(a: str, b: str) -> float:
    """Share of equal bits (0.5 for unrelated audio, ~1 for one recording) at the best
    alignment within about a second; 0 when either is too short to say."""
    x, y = decode(a), decode(b)
    best = 0.0
    for shift in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        u = x[shift:] if shift > 0 else x
        v = y[-shift:] if shift < 0 else y
        n = min(len(u), len(v))
        if n < MIN_ITEMS:
            continue
        diff = np.bitwise_xor(u[:n], v[:n])
        bits = int(np.unpackbits(diff.view(np.uint8)).sum())
        best = max(best, 1.0 - bits / (32 * n))
    return best
