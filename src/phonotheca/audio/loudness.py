"""EBU R128 loudness of decoded audio: integrated loudness, true peak, loudness range.

Measured once, while the build (or ``import files --loudness``) decodes a file anyway, so
that players can level tracks without decoding them again (docs/FORMAT.md §9.4):

- **K-weighting** (ITU-R BS.1770-4): the pre-filter (high shelf) and the RLB high-pass,
  their coefficients derived for the stream's sample rate from the analog prototypes,
  applied as one FIR (the cascade's impulse response, cut where it falls below 1e-10 of
  its peak) by FFT overlap-save, many samples at a time in NumPy.
- **Gating**: mean squares of 100 ms sub-blocks; 400 ms blocks every 100 ms (75 %
  overlap); an absolute gate at −70 LUFS and a relative gate 10 LU below the loudness of
  the blocks that pass it. Channels are weighted 1, surround channels 1.41, LFE 0.
- **True peak**: 4× oversampling with a 129-tap windowed-sinc interpolator (see
  :func:`_interpolator`), applied to the same FFT of each segment as the K-weighting; a
  segment whose samples cannot reach the peak found so far (its sample peak × the
  filter's gain bound) is not interpolated.
- **Loudness range** (EBU Tech 3342): short-term loudness (3 s windows every 100 ms),
  absolute gate −70 LUFS, relative gate −20 LU, the spread from the 10th to the 95th
  percentile.

Album loudness (ReplayGain 2: gated over all the album's blocks) needs every block of
every track. Each measurement keeps its blocks as a histogram of 0.1 LU bins from −70
LUFS (:attr:`Loudness.histogram`, small enough to store per track); :func:`album_loudness`
gates the sum of the tracks' histograms, each block counted at its bin's centre (at most
0.05 LU off per block).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

REFERENCE_LUFS = -23.0
"""EBU R128's target level: R128 gains in Opus files are relative to it (RFC 7845)."""
REPLAYGAIN_LUFS = -18.0
"""ReplayGain 2's reference level: the gains served to players are relative to it."""
ABSOLUTE_GATE = -70.0
HIST_BIN = 0.1
"""Width of a histogram bin in LU."""
HIST_BINS = 800
"""Bins from −70 LUFS to +10 LUFS (louder blocks go into the last bin)."""

_OFFSET = -0.691  # BS.1770: loudness = -0.691 + 10 log10(sum of weighted mean squares)
_SUBBLOCK_S = 0.1
_TAIL = 1e-10
_TP_TAPS = 4 * 32 + 1


def _interpolator() -> npt.NDArray[np.float64]:
    """The 4× interpolation filter for true peak: a windowed sinc (Kaiser, beta 8) of 129
    taps, 32 input samples wide. Every fourth tap from the centre is a zero of the sinc,
    so the original samples pass unchanged and only the three phases between them are
    interpolated. (BS.1770-4 Annex 2 gives a 48-tap filter as an example; its passband
    ripple over-reads a tone at 8 kHz by 0.2 dB, this one by less than 0.01 dB.)"""
    n = np.arange(_TP_TAPS) - (_TP_TAPS - 1) / 2
    return np.sinc(n / 4) * np.kaiser(_TP_TAPS, 8.0)


_TP_FILTER = _interpolator()
_TP_GAIN = max(float(np.abs(_TP_FILTER[p::4]).sum()) for p in range(4))
"""No interpolated sample exceeds the largest input sample it is made from times this."""


@dataclass(frozen=True)
class Loudness:
    """One measurement. Levels are None for audio too short or too quiet to be gated
    (shorter than 400 ms, or every block under −70 LUFS)."""

    integrated_lufs: float | None
    true_peak_dbtp: float | None
    """Highest absolute value of the 4× oversampled signal, in dB re full scale."""
    range_lu: float | None
    histogram: bytes
    """The gating blocks, binned (:func:`encode_histogram`)."""

    @property
    def r128_gain_q78(self) -> int | None:
        """RFC 7845's ``R128_TRACK_GAIN``: the gain to −23 LUFS in 1/256 dB (Q7.8)."""
        if self.integrated_lufs is None:
            return None
        return max(-32768, min(32767, round((REFERENCE_LUFS - self.integrated_lufs) * 256)))


def _biquads(rate: int) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The two K-weighting sections ``(b, a)`` at ``rate`` (bilinear transform of the
    analog prototypes; at 48 kHz they equal BS.1770's table)."""
    f0, gain, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (
        ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
        (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0),
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    highpass = ((1.0, -2.0, 1.0), (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0))
    return [shelf, highpass]


@cache
def k_weighting_ir(rate: int) -> npt.NDArray[np.float64]:
    """The impulse response of the K-weighting cascade at ``rate``, cut where it has
    decayed below :data:`_TAIL` of its peak for good."""
    n = 1 << max(12, math.ceil(math.log2(rate)) - 2)
    while True:
        x = np.zeros(n)
        x[0] = 1.0
        for b, a in _biquads(rate):
            y = np.zeros(n)
            x1 = x2 = y1 = y2 = 0.0
            for i, xi in enumerate(x.tolist()):  # once per rate: a plain loop is fine
                yi = b[0] * xi + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
                x2, x1, y2, y1 = x1, xi, y1, yi
                y[i] = yi
            x = y
        big = np.nonzero(np.abs(x) > _TAIL * np.abs(x).max())[0]
        if big[-1] < n // 2:
            return x[: big[-1] + 1]
        n *= 2


@cache
def _spectra(rate: int, nfft: int) -> npt.NDArray[np.complex64]:
    """The spectra (length ``nfft``) of the K-weighting filter and of the interpolator's
    three phases between samples, stacked: ``(4, nfft // 2 + 1)``.

    Phase ``q`` (1 to 3) of the 4× interpolator is an FIR on the input itself, taps
    ``h[4k + q]``: its output at ``m`` is the signal at ``m - 16 + q / 4`` (phase 0 is
    the input, delayed)."""
    filters = [k_weighting_ir(rate), *(_TP_FILTER[q::4] for q in (1, 2, 3))]
    return np.stack([np.fft.rfft(f, nfft) for f in filters]).astype(np.complex64)


def _forward(seg: npt.NDArray[np.float32]) -> npt.NDArray[np.complex64]:
    """The real FFT of each row, two rows at a time as the real and imaginary parts of one
    complex transform, computed as an inverse one (NumPy's inverse complex transform of
    single precision runs about twice as fast as its forward transforms)."""
    channels, n = seg.shape
    half = n // 2 + 1
    out = np.empty((channels, half), np.complex64)
    for c in range(0, channels, 2):
        z = seg[c].astype(np.complex64)
        if c + 1 < channels:
            z.imag = seg[c + 1]
        # fft(z) = n * conj(ifft(conj(z)))
        spec = np.conj(np.fft.ifft(np.conj(z))) * np.float32(n)
        mirrored = np.conj(np.roll(spec[::-1], 1)[:half])  # conj(Z[-k])
        out[c] = (spec[:half] + mirrored) * np.float32(0.5)
        if c + 1 < channels:
            out[c + 1] = (spec[:half] - mirrored) * np.complex64(-0.5j)
    return out


def channel_weights(channels: int) -> npt.NDArray[np.float64]:
    """BS.1770 weights in FFmpeg's channel order: 1 for front channels, 1.41 for the
    surrounds of 5.0/5.1 (FL FR FC [LFE] BL BR), 0 for LFE."""
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    return np.ones(channels)


class LoudnessMeter:
    """Feed decoded audio with :meth:`add` (any number of calls), then read :meth:`result`."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("the audio needs a sample rate and channels")
        self.rate = sample_rate
        self.channels = channels
        self._ir_len = len(k_weighting_ir(sample_rate))
        self._nfft = 1 << max(15, math.ceil(math.log2(8 * self._ir_len)))
        self._hop = self._nfft - self._ir_len + 1
        self._spectra = _spectra(sample_rate, self._nfft)
        self._weights = channel_weights(channels).astype(np.float32)[:, None]
        self._sub = max(1, round(sample_rate * _SUBBLOCK_S))
        # Overlap-save: the last ir_len - 1 input samples of the segment before.
        self._history = np.zeros((channels, self._ir_len - 1), np.float32)
        self._pending: list[npt.NDArray[np.float32]] = []
        self._pending_len = 0
        self._energy_rest = np.zeros(0, np.float64)
        self._subblocks: list[npt.NDArray[np.float64]] = []
        self._peak = 0.0
        self._samples = 0

    def add(self, samples: npt.NDArray[np.floating]) -> None:
        """Audio as floats in [-1, 1], shape ``(channels, n)``."""
        if samples.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {samples.shape[0]}")
        if samples.shape[1] == 0:
            return
        self._pending.append(np.asarray(samples, np.float32))
        self._pending_len += samples.shape[1]
        self._samples += samples.shape[1]
        while self._pending_len >= self._hop:
            block = np.concatenate(self._pending, axis=1)
            self._segment(block[:, : self._hop])
            rest = block[:, self._hop :]
            self._pending = [rest] if rest.shape[1] else []
            self._pending_len = rest.shape[1]

    def add_frame(self, frame: av.AudioFrame) -> None:
        """A frame as PyAV decodes it (any sample format, planar or packed)."""
        self.add(frame_samples(frame, self.channels))

    def _segment(self, new: npt.NDArray[np.float32]) -> None:
        n_new, start = new.shape[1], self._ir_len - 1
        seg = np.concatenate([self._history, new], axis=1)
        if seg.shape[1] < self._nfft:
            seg = np.pad(seg, ((0, 0), (0, self._nfft - seg.shape[1])))
        spectrum = _forward(seg)
        # A segment whose samples cannot reach the peak found so far skips the
        # interpolation (each interpolated value is at most _TP_GAIN times its inputs).
        sample_peak = float(np.abs(seg).max())
        self._peak = max(self._peak, sample_peak)
        filters = self._spectra if sample_peak * _TP_GAIN > self._peak else self._spectra[:1]
        # One inverse transform for all: the K-weighted segment and the three phases.
        out = np.fft.irfft(spectrum[None, :, :] * filters[:, None, :], self._nfft, axis=-1)
        valid = out[0, :, start : start + n_new]
        self._energy((np.square(valid) * self._weights).sum(axis=0, dtype=np.float64))
        if len(filters) > 1:
            # The first outputs of each phase wrap around (circular convolution): they
            # belong to the history, which the segment before interpolated.
            phases = out[1:, :, _TP_TAPS // 4 :]
            self._peak = max(self._peak, float(phases.max()), -float(phases.min()))
        self._history = seg[:, n_new : start + n_new]

    def _energy(self, energy: npt.NDArray[np.float64]) -> None:
        if self._energy_rest.size:
            energy = np.concatenate([self._energy_rest, energy])
        whole = energy.size // self._sub * self._sub
        if whole:
            self._subblocks.append(energy[:whole].reshape(-1, self._sub).mean(axis=1))
        self._energy_rest = energy[whole:]

    def result(self) -> Loudness:
        """The measurement of everything added (the meter is not to be fed after this)."""
        if self._pending_len:
            self._segment(np.concatenate(self._pending, axis=1))
            self._pending, self._pending_len = [], 0
        if self._samples:  # the last samples' interpolation, against the zeros after them
            self._segment(np.zeros((self.channels, 0), np.float32))
        sub = np.concatenate(self._subblocks) if self._subblocks else np.zeros(0)
        return measure_subblocks(sub, self._peak if self._samples else None)


def measure_subblocks(sub: npt.NDArray[np.float64], peak: float | None) -> Loudness:
    """Integrated loudness, range and histogram from 100 ms mean squares (weighted and
    summed over channels), and the true peak (linear) found."""
    true_peak = None
    if peak is not None:
        true_peak = round(20 * math.log10(peak), 2) if peak > 0 else -math.inf
        true_peak = max(true_peak, -200.0)
    if sub.size < 4:
        return Loudness(None, true_peak, None, encode_histogram(np.zeros(HIST_BINS, np.int64)))
    blocks = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / 4
    integrated = gated_loudness(blocks, 10.0)
    levels = _lufs(blocks)
    passed = levels > ABSOLUTE_GATE
    bins = np.clip(((levels[passed] - ABSOLUTE_GATE) / HIST_BIN).astype(np.int64), 0, HIST_BINS - 1)
    histogram = encode_histogram(np.bincount(bins, minlength=HIST_BINS))
    lra = None
    if sub.size >= 30:
        window = np.convolve(sub, np.ones(30) / 30, mode="valid")
        lra = loudness_range(window)
    return Loudness(
        None if integrated is None else round(integrated, 2),
        true_peak,
        None if lra is None else round(lra, 2),
        histogram,
    )


def _lufs(energy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        return _OFFSET + 10 * np.log10(energy)


def gated_loudness(blocks: npt.NDArray[np.float64], relative_lu: float) -> float | None:
    """Loudness of the blocks' mean squares after the absolute and relative gates."""
    gated = blocks[_lufs(blocks) > ABSOLUTE_GATE]
    if gated.size == 0:
        return None
    threshold = _OFFSET + 10 * math.log10(float(gated.mean())) - relative_lu
    kept = gated[_lufs(gated) > threshold]
    return _OFFSET + 10 * math.log10(float(kept.mean()))


def loudness_range(short_term: npt.NDArray[np.float64]) -> float | None:
    """EBU Tech 3342: from short-term mean squares, P95 − P10 of the gated levels."""
    gated = short_term[_lufs(short_term) > ABSOLUTE_GATE]
    if gated.size == 0:
        return None
    threshold = _OFFSET + 10 * math.log10(float(gated.mean())) - 20
    levels = _lufs(gated)
    levels = levels[levels > threshold]
    low, high = np.percentile(levels, [10, 95])
    return float(high - low)


def frame_samples(frame: av.AudioFrame, channels: int) -> npt.NDArray[np.float32]:
    """A decoded frame as float32 ``(channels, samples)`` in [-1, 1]."""
    array = frame.to_ndarray()
    fmt = frame.format
    if not fmt.is_planar:
        array = array.reshape(-1, channels).T
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - np.float32(128)) * np.float32(1 / 128)
    scale = np.float32(1 / (1 << (8 * array.dtype.itemsize - 1)))
    converted: npt.NDArray[np.float32] = array.astype(np.float32) * scale
    return converted


# -- histograms --------------------------------------------------------------------------


def encode_histogram(counts: npt.NDArray[np.integer]) -> bytes:
    """Compact bytes for block counts per bin: the first non-empty bin (uint16 LE), then
    the counts from there to the last non-empty one as uint32 LE, zlib-compressed.
    Empty (no block above the gate): ``b""``."""
    nonzero = np.nonzero(counts)[0]
    if nonzero.size == 0:
        return b""
    first, last = int(nonzero[0]), int(nonzero[-1])
    body = counts[first : last + 1].astype("<u4").tobytes()
    return struct.pack("<H", first) + zlib.compress(body, 6)


def decode_histogram(data: bytes) -> npt.NDArray[np.int64]:
    counts = np.zeros(HIST_BINS, np.int64)
    if not data:
        return counts
    (first,) = struct.unpack_from("<H", data)
    body = np.frombuffer(zlib.decompress(data[2:]), "<u4")
    counts[first : first + body.size] = body
    return counts


def album_loudness(histograms: Iterable[bytes]) -> float | None:
    """Integrated loudness over the blocks of all the given tracks (ReplayGain 2's album
    loudness), each block at its bin's centre; None when no block passes the gate."""
    total = np.zeros(HIST_BINS, np.int64)
    for data in histograms:
        total += decode_histogram(data)
    if not total.any():
        return None
    centres = ABSOLUTE_GATE + (np.arange(HIST_BINS) + 0.5) * HIST_BIN
    energy = 10 ** ((centres - _OFFSET) / 10)
    threshold = _OFFSET + 10 * math.log10(float((total * energy).sum() / total.sum())) - 10
    kept = np.where(centres > threshold, total, 0)
    return round(_OFFSET + 10 * math.log10(float((kept * energy).sum() / kept.sum())), 2)


def measure_file(path: Path) -> Loudness:
    """Decode the file's first audio stream with PyAV and measure it. Raises
    ``av.FFmpegError``/``OSError``/``ValueError`` as decoding does."""
    with av.open(str(path), "r") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        meter: LoudnessMeter | None = None
        for frame in container.decode(stream):
            if meter is None:
                meter = LoudnessMeter(int(frame.sample_rate), int(frame.layout.nb_channels))
            meter.add_frame(frame)
        if meter is None:
            raise ValueError("no audio decoded")
        return meter.result()


def replaygain(lufs: float | None) -> float | None:
    """ReplayGain 2 gain (dB) for a loudness: to −18 LUFS."""
    return None if lufs is None else round(REPLAYGAIN_LUFS - lufs, 2)


def linear_peak(dbtp: float | None) -> float | None:
    """A true peak in dBTP as a linear amplitude (ReplayGain peaks are linear)."""
    return None if dbtp is None else round(10 ** (dbtp / 20), 6)


def album_peak(peaks: Sequence[float | None]) -> float | None:
    known = [p for p in peaks if p is not None]
    return max(known) if known else None
