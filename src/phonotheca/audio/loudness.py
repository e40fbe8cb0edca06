"""EBU R128 loudness of decoded audio: integrated loudness, true peak, loudness range.

Measured once, while the build (or ``import files --loudness``) decodes a file anyway, so
that players can level tracks without decoding them again (docs/FORMAT.md §9.4):

- **K-weighting** (ITU-R BS.1770-4): the pre-filter (high shelf) and the RLB high-pass,
  their coefficients derived for the stream's sample rate from the analog prototypes,
  run exactly (an IIR, no truncated impulse response) but without a loop over samples:
  each channel is cut into rows of 64 samples and filtered by one matrix product, the
  filter's 4 states at the start of every row coming from a prefix scan over the rows
  (:func:`_block_filter`). The states are those of a balanced realisation, so that
  single precision keeps the energies to 1e-7.
- **Gating**: mean squares of 100 ms sub-blocks; 400 ms blocks every 100 ms (75 %
  overlap); an absolute gate at −70 LUFS and a relative gate 10 LU below the loudness of
  the blocks that pass it. Channels are weighted 1, surround channels 1.41, LFE 0.
- **True peak**: 4× oversampling with a 129-tap windowed-sinc interpolator (see
  :func:`_interpolator`), one matrix product per block of 32 samples; a block whose
  samples cannot reach the peak found so far (its neighbourhood's sample peak × the
  filter's gain bound) is not interpolated. The bound is exact, so is the peak.
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
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

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


def channel_weights(channels: int) -> npt.NDArray[np.float64]:
    """BS.1770 weights in FFmpeg's channel order: 1 for front channels, 1.41 for the
    surrounds of 5.0/5.1 (FL FR FC [LFE] BL BR), 0 for LFE."""
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    return np.ones(channels)


_CHUNK = 64
"""Samples per row of the K-weighting's matrix form (:func:`_block_filter`)."""
_TP_BLOCK = 32
"""Samples per block of the true-peak search."""
_HISTORY = 32
"""Samples kept from the buffer before: 4 for the filter, 31 for the interpolator."""
_BUFFER = 1 << 16
"""Samples per channel measured at a time (a multiple of both blocks)."""
_SAMPLE_FORMATS: dict[str, tuple[type[np.generic], float, float]] = {
    "u8": (np.uint8, 1 / 128, 128.0),
    "s16": (np.int16, 2.0**-15, 0.0),
    "s32": (np.int32, 2.0**-31, 0.0),
    "s64": (np.int64, 2.0**-63, 0.0),
    "flt": (np.float32, 1.0, 0.0),
    "dbl": (np.float64, 1.0, 0.0),
}
"""FFmpeg's sample formats (less the planar ``p``): NumPy type, scale to [-1, 1], offset."""


def _state_space(rate: int) -> tuple[npt.NDArray[np.float64], ...]:
    """The K-weighting cascade as a balanced state-space system ``(A, B, C, D)``:
    ``s[n+1] = A s[n] + B x[n]``, ``y[n] = C s[n] + D x[n]``, 4 states.

    Balanced (both Gramians equal and diagonal), so that no state is much larger than the
    signal: the direct form's states, with the high-pass' double pole next to 1, are
    thousands of times the signal, and single precision would lose the output."""
    Matrix = npt.NDArray[np.floating[Any]]
    parts: list[tuple[Matrix, Matrix, Matrix, float]] = []
    for num, den in _biquads(rate):  # each in controllable canonical form
        parts.append(
            (
                np.array([[-den[1], -den[2]], [1.0, 0.0]]),
                np.array([[1.0], [0.0]]),
                np.array([[num[1] - num[0] * den[1], num[2] - num[0] * den[2]]]),
                num[0],
            )
        )
    (a1, b1, c1, d1), (a2, b2, c2, d2) = parts
    a: Matrix = np.block([[a1, np.zeros((2, 2))], [b2 @ c1, a2]])
    b: Matrix = np.vstack([b1, b2 * d1])
    c: Matrix = np.hstack([d2 * c1, c2])

    def gramian(m: Matrix, q: Matrix) -> Matrix:
        # W = m W m' + q, solved as one linear system (4 states: 16 unknowns)
        w: Matrix = np.linalg.solve(np.eye(16) - np.kron(m, m), q.reshape(-1))
        return w.reshape(4, 4)

    lc: Matrix = np.linalg.cholesky(gramian(a, b @ b.T))
    squares, u = np.linalg.eigh(lc.T @ gramian(a.T, c.T @ c) @ lc)
    t: Matrix = lc @ u / np.sqrt(np.sqrt(squares))
    ti = np.linalg.inv(t)
    return ti @ a @ t, ti @ b, c @ t, np.array(d2 * d1)


@cache
def _block_filter(
    rate: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[npt.NDArray[np.float64]]]:
    """The K-weighting filter as matrices on rows of :data:`_CHUNK` samples.

    For the system of :func:`_state_space`, a row ``x`` of ``_CHUNK`` samples that starts
    in state ``s`` gives ``y = T x + O s`` and ends in state ``M s + R x``
    (``M = A**_CHUNK``). Returns ``[T; R]`` transposed (``_CHUNK`` × ``_CHUNK + 4``, to
    multiply rows of samples by), ``O`` transposed (4 × ``_CHUNK``) and the powers ``M,
    M**2, M**4, …`` transposed, until they vanish below 1e-18: the states that start
    every row are then found for all rows at once, by a prefix scan."""
    a, b, c, d = _state_space(rate)
    n = _CHUNK
    powers = [np.eye(4)]
    for _ in range(n):
        powers.append(a @ powers[-1])
    impulse = np.array([float(d)] + [(c @ powers[k] @ b).item() for k in range(n - 1)])
    lags = np.arange(n)[:, None] - np.arange(n)[None, :]
    t = np.where(lags >= 0, impulse[np.clip(lags, 0, None)], 0.0)
    r = np.hstack([powers[n - 1 - j] @ b for j in range(n)])
    o = np.vstack([c @ powers[k] for k in range(n)])
    scan: list[npt.NDArray[np.float64]] = []
    m = powers[n]
    while np.abs(m).max() > 1e-18 and len(scan) < 40:
        scan.append(m.T)
        m = m @ m
    return np.vstack([t, r]).T.astype(np.float32), o.T.astype(np.float32), scan


@cache
def _tp_matrix() -> npt.NDArray[np.float32]:
    """The interpolator's three phases between samples, for a block of :data:`_TP_BLOCK`
    intervals, as one matrix on the block's window of ``_TP_BLOCK + 31`` samples.

    The value at ``p + q/4`` (phase ``q`` of 1 to 3) is ``Σ h[4k + q] x[p + 16 - k]``
    over the 32 taps ``k``: samples ``p - 15`` to ``p + 16``. Row ``3r + q - 1`` gives it
    for interval ``r`` of the block (``p = p0 + r``), window sample ``s`` being
    ``p0 - 15 + s``."""
    rows = np.zeros((3 * _TP_BLOCK, _TP_BLOCK + 31))
    for r in range(_TP_BLOCK):
        for q in (1, 2, 3):
            for k in range(32):
                rows[3 * r + q - 1, r + 31 - k] = _TP_FILTER[4 * k + q]
    return rows.T.astype(np.float32)


def _scaled(samples: npt.NDArray[Any], scale: float, offset: float) -> npt.NDArray[np.float32]:
    """``(samples - offset) * scale`` in single precision."""
    out = samples.astype(np.float32)
    if offset:
        out -= np.float32(offset)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


@cache
def _blas() -> ThreadpoolController:
    """NumPy's BLAS, to hold to one thread while measuring: its threads would cost more
    CPU time than they save on products of this size, and the build already runs one
    worker process per core."""
    return ThreadpoolController()


class LoudnessMeter:
    """Feed decoded audio with :meth:`add` or :meth:`add_frame` (any number of calls),
    then read :meth:`result`.

    Samples gather in a buffer of :data:`_BUFFER` per channel, measured at once when it is
    full: NumPy's per-call overhead then weighs little against the work."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("the audio needs a sample rate and channels")
        self.rate = sample_rate
        self.channels = channels
        self._filter, self._from_state, self._scan = _block_filter(sample_rate)
        self._weights = channel_weights(channels).astype(np.float32)
        self._ones = np.ones(_CHUNK, np.float32)
        self._sub = max(1, round(sample_rate * _SUBBLOCK_S))
        # One row per channel: the history, then new samples, then room for the zeros
        # that flush the last ones.
        self._buf = np.zeros((channels, _HISTORY + _BUFFER + _CHUNK + _HISTORY), np.float32)
        self._fill = _HISTORY
        self._state = np.zeros((channels, 4))  # the filter's, before the new samples
        # Scratch arrays, reused: fresh ones would cost page faults at every buffer.
        rows = self._buf.shape[1] // _CHUNK
        self._filtered = np.empty((channels, rows, _CHUNK + 4), np.float32)
        self._states = np.empty((channels, rows + 1, 4))
        self._scratch = np.empty((channels, rows, _CHUNK), np.float32)
        self._magnitude = np.empty_like(self._buf)
        self._over = np.empty(self._buf.shape, np.bool_)
        blocks = self._buf.shape[1] // _TP_BLOCK
        self._windows = np.empty((channels * blocks, _TP_BLOCK + 31), np.float32)
        self._between = np.empty((channels * blocks, 3 * _TP_BLOCK), np.float32)
        self._measured = 0  # samples whose energy is counted, from the stream's start
        self._carry = 0.0  # their energy since the last sub-block's end
        self._subblocks: list[npt.NDArray[np.float64]] = []
        self._peak = 0.0
        self._samples = 0
        self._frames: list[av.AudioFrame] = []
        self._held = 0

    def add(self, samples: npt.NDArray[np.floating]) -> None:
        """Audio as floats in [-1, 1], shape ``(channels, n)``."""
        if samples.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {samples.shape[0]}")
        self._drain()
        self._feed(samples)

    def add_frame(self, frame: av.AudioFrame) -> None:
        """A frame as PyAV decodes it (any sample format, planar or packed). Frames are
        held until a buffer's worth is there, then copied one after the other: copied
        as they come, between the codecs' work, the copies cost twice as much CPU time."""
        self._frames.append(frame)
        self._held += frame.samples
        if self._held >= _BUFFER:
            self._drain()

    def _drain(self) -> None:
        """Copy the frames held into the buffer, read from their planes (``to_ndarray``
        would copy them once more). Integers are scaled while contiguous, before the
        copy that deinterleaves packed samples: NumPy converts and scales a strided
        array at half the speed."""
        for frame in self._frames:
            fmt, n = frame.format, frame.samples
            known = _SAMPLE_FORMATS.get(fmt.name.removesuffix("p"))
            if known is None:
                raise ValueError(f"cannot measure samples in the {fmt.name} format")
            dtype, scale, offset = known
            count = n if fmt.is_planar else n * self.channels
            planes = [np.frombuffer(memoryview(p), dtype, count) for p in frame.planes]
            if dtype is not np.float32:
                planes = [_scaled(p, scale, offset) for p in planes]
            self._feed(planes if fmt.is_planar else planes[0].reshape(n, self.channels).T)
        self._frames.clear()
        self._held = 0

    def _feed(self, samples: npt.NDArray[Any] | list[npt.NDArray[Any]]) -> None:
        """Copy new samples (channels × n, or one array per channel) into the buffer,
        measuring it whenever it fills."""
        if len(samples) != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {len(samples)}")
        n, done = samples[0].size, 0
        self._samples += n
        while done < n:
            take = min(n - done, _HISTORY + _BUFFER - self._fill)
            span = slice(self._fill, self._fill + take)
            if isinstance(samples, np.ndarray):
                self._buf[:, span] = samples[:, done : done + take]
            else:
                for row, x in zip(self._buf, samples, strict=True):
                    row[span] = x[done : done + take]
            self._fill += take
            done += take
            if self._fill == _HISTORY + _BUFFER:
                self._measure(_BUFFER, _BUFFER)

    def _measure(self, count: int, real: int) -> None:
        """Measure ``count`` new samples in the buffer (a multiple of :data:`_CHUNK`), the
        first ``real`` of which are audio (the rest are zeros that flush the
        interpolator)."""
        with _blas().limit(limits=1, user_api="blas"):
            self._energy(self._k_weighted(count), real)
            self._true_peak(count)
        self._buf[:, :_HISTORY] = self._buf[:, count : count + _HISTORY]
        self._fill = _HISTORY

    def _k_weighted(self, count: int) -> npt.NDArray[np.float32]:
        """The K-weighted signal of the new samples, per channel in rows of :data:`_CHUNK`.

        Each channel's samples are cut into rows of :data:`_CHUNK`, so that the filter is
        a matrix product (see :func:`_block_filter`) instead of a recursion from sample to
        sample; only the 4 states that start each row are a recursion, from row to row,
        found by a prefix scan in a few steps."""
        rows = count // _CHUNK
        x = self._buf[:, _HISTORY : _HISTORY + count].reshape(self.channels, rows, _CHUNK)
        # (channels, rows, _CHUNK + 4): the outputs from a zero state, then the end states
        y = np.matmul(x, self._filter, out=self._filtered[:, :rows])
        # The state before row j: S[j] = M S[j-1] + R x[j-1], with S[0] carried over.
        states = self._states[:, : rows + 1]
        states[:, 0] = self._state
        states[:, 1:] = y[:, :, _CHUNK:]
        shift = 1
        for power in self._scan:
            if shift > rows:
                break
            states[:, shift:] += states[:, :-shift] @ power
            shift *= 2
        self._state = states[:, rows].copy()
        out = y[:, :, :_CHUNK]
        out += np.matmul(
            states[:, :rows].astype(np.float32), self._from_state, out=self._scratch[:, :rows]
        )
        return out

    def _true_peak(self, count: int) -> None:
        """Raise the peak to the buffer's samples and to the values between them that
        could exceed it: a block whose samples, times the interpolator's gain bound, stay
        under the peak found so far is not interpolated (most blocks of music).

        The intervals measured lag the new samples by 16 (the interpolator's half width):
        those after sample ``p`` for ``p`` from ``_HISTORY - 16``, block by block."""
        buf, b = self._buf[:, : _HISTORY + count], _TP_BLOCK
        magnitude = np.abs(buf, out=self._magnitude[:, : buf.shape[1]])
        self._peak = max(self._peak, float(magnitude.max()))
        # A block is a candidate when one of its samples, times the bound, could exceed
        # the peak (a hair under it: rounding). NumPy reduces rows of 32 slowly: the
        # samples over the threshold are marked in bytes, a block's 32 read as 4 words.
        threshold = self._peak / _TP_GAIN * (1 - 1e-6)
        over = np.greater(magnitude, threshold, out=self._over[:, : buf.shape[1]])
        words = over.view(np.uint64).reshape(self.channels, -1, b // 8)
        hit = (words[:, :, 0] | words[:, :, 1]) | (words[:, :, 2] | words[:, :, 3])
        # Block j's intervals read samples 32 j + 1 to 32 j + 63: blocks j and j + 1. Each
        # channel is judged on its own: the quieter one's blocks are seldom candidates.
        channel, block = np.nonzero(hit[:, :-1] | hit[:, 1:])
        n = block.size
        if n == 0:
            return
        windows = np.lib.stride_tricks.sliding_window_view(buf[:, 1:], b + 31, axis=1)[:, ::b]
        picked = self._windows[:n]
        # Gathered channel by channel straight into the scratch rows (indexing the view
        # with both arrays would first make a temporary copy, a megabyte at times).
        first = 0
        for c in range(self.channels):
            mine = block[channel == c]  # nonzero() lists channel 0's blocks first
            np.take(windows[c], mine, axis=0, out=picked[first : first + mine.size], mode="clip")
            first += mine.size
        values = np.matmul(picked, _tp_matrix(), out=self._between[:n])
        self._peak = max(self._peak, float(values.max()), -float(values.min()))

    def _energy(self, y: npt.NDArray[np.float32], real: int) -> None:
        """Add the mean squares of the 100 ms sub-blocks that end in the first ``real``
        samples of ``y`` (K-weighted, ``channels × rows × _CHUNK``).

        Squares are summed per row of :data:`_CHUNK` samples in one pass; a sub-block's
        sum is the difference of running sums at its ends (in double precision), the rows
        where a sub-block ends being summed again sample by sample up to it."""
        squares = np.square(y, out=y)
        per_row = np.matmul(self._weights, np.matmul(squares, self._ones), dtype=np.float32)
        before = np.zeros(per_row.size + 1)
        np.cumsum(per_row, out=before[1:])
        first = self._sub - self._measured % self._sub
        ends = np.arange(first, real + 1, self._sub)
        points = np.empty(ends.size + 1, np.int64)  # the sub-blocks' ends, then the buffer's
        points[:-1] = ends
        points[-1] = real
        row, within = np.divmod(points, _CHUNK)
        running = before[row]
        cut = np.nonzero(within)[0]
        if cut.size:
            head = squares[:, row[cut]]  # channels × cuts × _CHUNK
            weighted = np.matmul(self._weights, head.reshape(self.channels, -1))
            partial = np.cumsum(weighted.reshape(cut.size, _CHUNK), axis=1, dtype=np.float64)
            running[cut] += partial[np.arange(cut.size), within[cut] - 1]
        if points.size > 1:
            sums = running[:-1].copy()
            sums[1:] -= running[:-2]
            sums[0] += self._carry
            self._subblocks.append(sums / self._sub)
            self._carry = float(running[-1] - running[-2])
        else:
            self._carry += float(running[-1])
        self._measured += real

    def result(self) -> Loudness:
        """The measurement of everything added (the meter is not to be fed after this)."""
        self._drain()
        if self._samples:
            # The last samples, then zeros until the interpolator has passed them all.
            real = self._fill - _HISTORY
            count = -(-(real + 31) // _CHUNK) * _CHUNK
            self._buf[:, self._fill : _HISTORY + count] = 0
            self._measure(count, real)
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
