"""EBU R128 loudness against an independent meter: FFmpeg's ``ebur128`` filter.

Synthetic signals at known levels (sines, noise, a quiet passage that the relative gate
must drop, inter-sample peaks), at several sample rates and channel counts, written as
real files and measured by both. Our integrated loudness must agree within 0.1 LU and
our true peak within 0.2 dB; a stereo 997 Hz sine at −23 dBFS must read −23.0 ± 0.1.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from phonotheca.audio.loudness import (
    LoudnessMeter,
    _biquads,
    _interpolator,
    album_loudness,
    decode_histogram,
    linear_peak,
    measure_file,
    measure_subblocks,
    replaygain,
)
from tests.audio.makers import ALL_FORMATS, make_audio

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="Debian's ffmpeg is not installed")


def ffmpeg_ebur128(path: Path) -> tuple[float, float, float]:
    """(integrated LUFS, true peak dBTP, LRA LU) as ``ffmpeg -af ebur128=peak=true`` says."""
    assert FFMPEG is not None
    run = [FFMPEG, "-nostats", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stderr
    summary = out[out.rindex("Summary:") :]
    i = float(re.findall(r"I:\s+(-?[\d.]+) LUFS", summary)[0])
    peak = float(re.findall(r"Peak:\s+(-?[\d.]+) dBFS", summary)[0])
    lra = float(re.findall(r"LRA:\s+(-?[\d.]+) LU", summary)[0])
    return i, peak, lra


def sine(freq: float, dbfs: float, seconds: float, rate: int, phase: float = 0.0) -> npt.NDArray:
    t = np.arange(int(seconds * rate)) / rate
    return 10 ** (dbfs / 20) * np.sin(2 * math.pi * freq * t + phase)


def noise(db: float, seconds: float, rate: int, seed: int) -> npt.NDArray:
    """Noise low-passed below 8 kHz (a moving average), scaled to ``db`` RMS."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(int(seconds * rate)), np.ones(4) / 4, mode="same")
    return x / np.sqrt(np.mean(x**2)) * 10 ** (db / 20)


def write(path: Path, channels: list[npt.NDArray], rate: int) -> Path:
    soundfile.write(path, np.stack(channels, axis=1), rate, subtype="FLOAT")
    return path


def test_stereo_sine_at_minus_23_reads_minus_23(tmp_path: Path) -> None:
    for rate in (48000, 44100):
        s = sine(997, -23.0, 10, rate)
        result = measure_file(write(tmp_path / f"s{rate}.wav", [s, s], rate))
        assert result.integrated_lufs is not None
        assert abs(result.integrated_lufs - (-23.0)) <= 0.1, (rate, result)
        assert result.true_peak_dbtp is not None and abs(result.true_peak_dbtp + 23.0) <= 0.1
        assert result.range_lu is not None and result.range_lu < 0.1  # a steady tone
        assert result.r128_gain_q78 is not None and abs(result.r128_gain_q78) <= 26  # ≤ 0.1 dB


SIGNALS = {
    # name: (rate, channels as a function of the rate)
    "sine-1k-48k": (48000, lambda r: [sine(1000, -12, 8, r), sine(1000, -12, 8, r)]),
    "sine-100Hz-mono-44k": (44100, lambda r: [sine(100, -20, 8, r)]),
    "noise-loud-44k": (44100, lambda r: [noise(-14, 12, r, 1), noise(-14, 12, r, 2)]),
    "noise-quiet-96k": (96000, lambda r: [noise(-40, 6, r, 3), noise(-42, 6, r, 4)]),
    "gated-passage-48k": (
        48000,
        lambda r: [
            np.concatenate([noise(-20, 8, r, 5), noise(-45, 8, r, 6)]),
            np.concatenate([noise(-21, 8, r, 7), noise(-46, 8, r, 8)]),
        ],
    ),
    # 4 kHz at 48 kHz, 15° phase: no sample on the crest (true peak −6 dBTP).
    "intersample-48k": (
        48000,
        lambda r: [sine(4000, -6, 6, r, math.pi / 12), sine(4000, -6, 6, r, math.pi / 12)],
    ),
    "sine-22k-stereo-22k": (22050, lambda r: [sine(440, -18, 6, r), sine(660, -24, 6, r)]),
}


@needs_ffmpeg
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_agrees_with_ffmpeg_ebur128(tmp_path: Path, name: str) -> None:
    rate, make = SIGNALS[name]
    path = write(tmp_path / f"{name}.wav", make(rate), rate)
    ours = measure_file(path)
    integrated, peak, lra = ffmpeg_ebur128(path)
    assert ours.integrated_lufs is not None and ours.true_peak_dbtp is not None
    assert abs(ours.integrated_lufs - integrated) <= 0.1, (ours, integrated)
    assert abs(ours.true_peak_dbtp - peak) <= 0.2, (ours, peak)
    assert ours.range_lu is not None and abs(ours.range_lu - lra) <= 0.5, (ours, lra)


@pytest.mark.parametrize(("freq", "phase", "sample_peak"), [(12000, 45, -9.03), (8000, 0, -7.27)])
def test_true_peak_finds_the_crest_between_samples(
    freq: int, phase: int, sample_peak: float
) -> None:
    """High tones whose samples all miss the crest (−6 dBFS) by 1.25 to 3 dB. (FFmpeg's
    meter, which upsamples with its resampler, reads −5.4 and −5.2 dBTP here: above the
    crest; so these are checked against the analytic value.)"""
    rate = 48000
    x = sine(freq, -6.0, 4, rate, math.radians(phase))
    fade = np.sin(np.linspace(0, math.pi / 2, rate // 10)) ** 2  # no clicks: they ring
    x[: fade.size] *= fade
    x[-fade.size :] *= fade[::-1]
    x = x.astype(np.float32)
    meter = LoudnessMeter(rate, 1)
    meter.add(x[None, :])
    result = meter.result()
    assert 20 * math.log10(np.abs(x).max()) == pytest.approx(sample_peak, abs=0.05)
    assert result.true_peak_dbtp is not None and abs(result.true_peak_dbtp + 6.02) <= 0.05


def test_relative_gate_drops_the_quiet_passage(tmp_path: Path) -> None:
    rate = 48000
    loud = [noise(-20, 8, rate, 5), noise(-20, 8, rate, 6)]
    both = [np.concatenate([x, 10 ** (-15 / 20) * x]) for x in loud]
    alone = measure_file(write(tmp_path / "loud.wav", loud, rate))
    gated = measure_file(write(tmp_path / "both.wav", both, rate))
    assert alone.integrated_lufs is not None and gated.integrated_lufs is not None
    # 15 LU below, under the -10 LU relative gate: the loudness is the loud part's (an
    # ungated mean would be 2.9 LU lower), but the range (-20 LU gate) spans both parts.
    assert abs(alone.integrated_lufs - gated.integrated_lufs) < 0.1
    assert gated.range_lu is not None and 13 < gated.range_lu < 16


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_corpus_formats_agree_with_ffmpeg(tmp_path: Path, fmt: str) -> None:
    """The test corpus (generated music in every format the archive meets)."""
    path = make_audio(tmp_path / "piece", fmt, seconds=6.0, piece=3)
    ours = measure_file(path)
    integrated, peak, _ = ffmpeg_ebur128(path)
    assert ours.integrated_lufs is not None and ours.true_peak_dbtp is not None
    assert abs(ours.integrated_lufs - integrated) <= 0.1, (fmt, ours, integrated)
    assert abs(ours.true_peak_dbtp - peak) <= 0.2, (fmt, ours, peak)


def test_chunking_does_not_change_the_measurement() -> None:
    rate = 44100
    x = np.stack([noise(-18, 5, rate, 9), noise(-19, 5, rate, 10)]).astype(np.float32)
    whole = LoudnessMeter(rate, 2)
    whole.add(x)
    pieces = LoudnessMeter(rate, 2)
    for start in range(0, x.shape[1], 1153):  # an odd frame size
        pieces.add(x[:, start : start + 1153])
    a, b = whole.result(), pieces.result()
    assert a.integrated_lufs == b.integrated_lufs and a.true_peak_dbtp == b.true_peak_dbtp
    assert a.range_lu == b.range_lu and a.histogram == b.histogram


def reference_k_weighting(x: npt.NDArray, rate: int) -> npt.NDArray:
    """The two biquads run sample by sample in double precision, as BS.1770 writes them."""
    for (b0, b1, b2), (_, a1, a2) in _biquads(rate):
        y = np.zeros_like(x)
        x1 = x2 = y1 = y2 = 0.0
        for i, xi in enumerate(x.tolist()):
            yi = b0 * xi + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
            x2, x1, y2, y1 = x1, xi, y1, yi
            y[i] = yi
        x = y
    return x


@pytest.mark.parametrize("rate", [48000, 40960])
def test_block_filter_equals_the_recursion_across_buffers(rate: int) -> None:
    """The K-weighting by matrix products on rows of samples and a scan of the states
    between them gives what the recursion gives, sample by sample, over several buffers
    (the meter measures 65536 samples at a time) and through a loud-to-quiet step that a
    single-precision direct form would lose under its rounding. At 40,960 Hz a 100 ms
    sub-block (4096 samples) ends exactly where a buffer does."""
    left = np.concatenate([noise(-12, 2, rate, 15), noise(-60, 2, rate, 16)])
    right = np.concatenate([sine(50, -20, 2, rate), noise(-65, 2, rate, 17)])
    x = np.stack([left, right]).astype(np.float32)
    meter = LoudnessMeter(rate, 2)
    for start in range(0, x.shape[1], 10000):
        meter.add(x[:, start : start + 10000])
    ours = meter.result()
    energy = sum(reference_k_weighting(c.astype(np.float64), rate) ** 2 for c in x)
    n = rate // 10
    sub = energy[: energy.size // n * n].reshape(-1, n).mean(axis=1)
    expected = measure_subblocks(sub, None)
    assert ours.integrated_lufs == expected.integrated_lufs and ours.integrated_lufs is not None
    assert ours.range_lu == expected.range_lu and ours.histogram == expected.histogram
    assert decode_histogram(ours.histogram)[: 100 * 10].sum() > 0  # the quiet part counted


def brute_force_true_peak(x: npt.NDArray) -> float:
    """The whole signal oversampled 4× by zero stuffing and the interpolator, in dBTP."""
    stuffed = np.zeros(4 * x.size)
    stuffed[::4] = x
    return 20 * math.log10(float(np.abs(np.convolve(stuffed, _interpolator())).max()))


def test_true_peak_finds_the_worst_case_overshoot() -> None:
    """Samples chosen so that one value between them reaches the interpolator's gain
    bound (each sample ±0.25 with the sign of its tap: +7.6 dB over the sample peak),
    amid louder plain noise found first: the blocks skipped are only those that cannot
    reach the peak, so the measurement is the brute-force one."""
    rate = 44100
    taps = _interpolator()[2::4]  # the phase halfway between samples
    x = noise(-12, 4, rate, 18) * 0.4
    x[3 * rate : 3 * rate + taps.size] = 0.25 * np.sign(taps[::-1])
    meter = LoudnessMeter(rate, 1)
    meter.add(x[None, :].astype(np.float32))
    peak = meter.result().true_peak_dbtp
    assert peak is not None
    assert peak == pytest.approx(brute_force_true_peak(x.astype(np.float32)), abs=0.01)
    assert peak > 20 * math.log10(np.abs(x).max()) + 1.0  # the overshoot wins


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_sample_format_reads_the_same(tmp_path: Path, subtype: str) -> None:
    """Frames in each sample format FFmpeg decodes WAV to (unsigned 8-bit, 16 and 32-bit
    integers, float, double) are scaled to the same signal."""
    rate = 44100
    x = [noise(-20, 3, rate, 19), sine(440, -14, 3, rate)]
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(path, np.stack(x, axis=1), rate, subtype=subtype)
    reference = LoudnessMeter(rate, 2)
    reference.add(np.stack(x).astype(np.float32))
    expected, ours = reference.result(), measure_file(path)
    tolerance = 0.05 if subtype == "PCM_U8" else 0.01  # 8 bits: quantisation noise
    assert ours.integrated_lufs is not None and expected.integrated_lufs is not None
    assert abs(ours.integrated_lufs - expected.integrated_lufs) <= tolerance
    assert ours.true_peak_dbtp is not None and expected.true_peak_dbtp is not None
    assert abs(ours.true_peak_dbtp - expected.true_peak_dbtp) <= 5 * tolerance


def test_short_and_silent_audio_have_no_loudness() -> None:
    meter = LoudnessMeter(48000, 2)
    meter.add(np.zeros((2, 48000), np.float32))
    silent = meter.result()
    assert silent.integrated_lufs is None and silent.range_lu is None
    assert silent.r128_gain_q78 is None and silent.histogram == b""
    short = LoudnessMeter(48000, 1)
    short.add(np.full((1, 9600), 0.1, np.float32))  # 200 ms: no 400 ms block
    assert short.result().integrated_lufs is None


def test_album_loudness_gates_over_all_blocks(tmp_path: Path) -> None:
    """Two tracks: the album's loudness is the gated loudness of both tracks' blocks
    together, as measuring them one after the other gives (within the bins' 0.05 LU)."""
    rate = 48000
    a = [noise(-16, 10, rate, 11), noise(-16, 10, rate, 12)]
    b = [noise(-24, 20, rate, 13), noise(-24, 20, rate, 14)]
    ta = measure_file(write(tmp_path / "a.wav", a, rate))
    tb = measure_file(write(tmp_path / "b.wav", b, rate))
    joined = [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]
    both = measure_file(write(tmp_path / "ab.wav", joined, rate))
    album = album_loudness([ta.histogram, tb.histogram])
    assert album is not None and both.integrated_lufs is not None
    assert abs(album - both.integrated_lufs) <= 0.06
    assert decode_histogram(ta.histogram).sum() == 10 * 10 - 3  # 400 ms blocks every 100 ms


def test_replaygain_values() -> None:
    assert replaygain(-23.0) == 5.0 and replaygain(-8.5) == -9.5 and replaygain(None) is None
    assert linear_peak(0.0) == 1.0 and linear_peak(-6.02) == pytest.approx(0.5, abs=1e-3)
