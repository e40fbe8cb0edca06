"""Cost of measuring loudness (EBU R128), beside its baselines measured in the same run.

    .venv/bin/python bench/loudness.py                          # 6 inputs of 3 minutes
    .venv/bin/python bench/loudness.py --files 3 --seconds 60   # quick run

Inputs: generated music (``phonotheca synth``'s pieces) at 44.1 kHz stereo, FLAC, Ogg
Vorbis and MP3 (as ``bench/transcode.py`` makes them), read from the page cache. Every
figure is CPU seconds of one process (or of its ffmpeg children), one file at a time, best
of ``--repeat`` runs, so that other jobs on a shared machine disturb it little.

1. **Opus tier**: ``encode_opus`` as the build runs it (it measures the audio it decodes)
   against the same encode with the meter replaced by one that does nothing (the build
   before loudness), the two alternating file by file, ``--repeat`` rounds; the figure is
   the median of the rounds' ratios. Target: loudness adds at most 15 %.
2. **An original alone**: ``measure_file`` (PyAV decode + our meter) against
   ``ffmpeg -nostats -i F -af ebur128=peak=true -f null -`` (Debian's FFmpeg) on the same
   files. Target: ours at least 1.0x ffmpeg's speed.
3. **``import files``**: reading a file (hash, tags, pictures) with and without
   ``--loudness``, to say what the optional flag costs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORKDIR
from transcode import make_inputs

KBPS = 75


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def best(repeat: int, fn: Callable[[], None], clock: Callable[[], float] = cpu_self) -> float:
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


class _NoMeter:
    """The build before loudness: a meter that takes frames and measures nothing."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        pass

    def add_frame(self, frame: object) -> None:
        pass

    def result(self) -> object:
        from phonotheca.audio.loudness import Loudness

        return Loudness(None, None, None, b"")


def opus_tier(inputs: list[Path], repeat: int) -> tuple[float, float, list[float]]:
    """CPU seconds to encode every input with and without measuring it: the two
    alternate file by file, so that a change in the machine's load falls on both alike.
    Returns the best total of each and the ratio of every round (with / without)."""
    import phonotheca.audio.transcode as transcode

    tags = transcode.OpusTags("Title", ["Artist"], "Album", 1, 1, "2001", None, track_id="b:1")
    real = transcode.LoudnessMeter

    def encode(path: Path, meter: type) -> float:
        transcode.LoudnessMeter = meter  # type: ignore[misc]
        try:
            t0 = cpu_self()
            transcode.encode_opus(path, kbps=KBPS, tags=tags)
            return cpu_self() - t0
        finally:
            transcode.LoudnessMeter = real  # type: ignore[misc]

    for path in inputs:  # warm: imports, FFT plans, page cache
        encode(path, real)
    rounds: list[tuple[float, float]] = []
    for r in range(repeat):
        measured = plain = 0.0
        for path in inputs:
            order = [(real, True), (_NoMeter, False)]
            for meter, with_meter in order if r % 2 == 0 else order[::-1]:
                seconds = encode(path, meter)
                if with_meter:
                    measured += seconds
                else:
                    plain += seconds
        rounds.append((measured, plain))
    return (
        min(m for m, _ in rounds),
        min(p for _, p in rounds),
        sorted(m / p for m, p in rounds),
    )


def originals(inputs: list[Path], repeat: int) -> tuple[float, float]:
    """CPU seconds to measure every input: ours, and ffmpeg's ebur128 filter."""
    from phonotheca.audio.loudness import measure_file

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("needs Debian's ffmpeg (scripts/install-debian-packages.sh)")

    def ours() -> None:
        for path in inputs:
            measure_file(path)

    def theirs() -> None:
        for path in inputs:
            cmd = [ffmpeg, "-nostats", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null"]
            subprocess.run([*cmd, "-"], check=True, capture_output=True)

    ours()
    return best(repeat, ours), best(repeat, theirs, cpu_children)


def scan_cost(inputs: list[Path], repeat: int) -> tuple[float, float]:
    """CPU seconds to read every input as ``import files`` does, with and without
    measuring loudness."""
    from phonotheca.sources.file_reading import FoundFile, read_file

    found = [FoundFile(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in inputs]
    with tempfile.TemporaryDirectory() as blobs:

        def scan(loudness: bool) -> None:
            for f in found:
                read_file(f, Path(blobs), loudness)

        scan(True)
        return best(repeat, lambda: scan(True)), best(repeat, lambda: scan(False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    root = args.workdir / f"loudness-inputs-{args.files}x{args.seconds:.0f}"
    inputs = [p for p, _ in make_inputs(root, args.files, args.seconds)]
    audio = args.files * args.seconds
    print(f"{args.files} inputs, {audio:.0f} s of 44.1 kHz stereo audio; CPU seconds, best of"
          f" {args.repeat}")  # fmt: skip
    t0 = time.monotonic()

    measured, plain, ratios = opus_tier(inputs, args.repeat)
    added = statistics.median(ratios) - 1
    print(f"opus tier   with loudness {measured:7.2f} s   baseline (without) {plain:7.2f} s"
          f"   loudness adds {100 * added:5.1f} %  (target <= 15 %)")  # fmt: skip
    print("  median of the rounds (with and without alternating file by file); every"
          f" round: {', '.join(f'{100 * (r - 1):+.1f} %' for r in ratios)}")  # fmt: skip

    ours, ffmpeg = originals(inputs, args.repeat)
    print(f"original    measure_file  {ours:7.2f} s   baseline ffmpeg ebur128 {ffmpeg:7.2f} s"
          f"   speed {ffmpeg / ours:4.2f}x ffmpeg  (target >= 1.0x);"
          f" {audio / ours:.0f}x real time")  # fmt: skip
    print(f"  for scale: ffmpeg's ebur128 (decode included) costs {100 * ffmpeg / plain:.0f} %"
          " of the Opus tier's baseline on the same files")  # fmt: skip

    with_l, without = scan_cost(inputs, args.repeat)
    print(f"import files --loudness   {with_l:7.2f} s   baseline (without)   {without:7.2f} s"
          f"   {with_l / max(without, 1e-9):.0f}x the cost: an option, off by default")  # fmt: skip
    print(f"(took {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
