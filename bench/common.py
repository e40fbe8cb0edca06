"""Helpers shared by the benchmarks: cached synthetic inputs, timing, memory of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = Path(os.environ.get("PHONOTHECA_BENCH_DIR", "/tmp/phonotheca-bench"))


def synthetic_catalog(workdir: Path, tracks: int, seed: int = 1) -> Path:
    """A synthetic ``.jsonl.zst`` of ``tracks`` tracks, generated once and reused."""
    from phonotheca.synth.catalog import write_catalog

    path = workdir / f"synth-{tracks}-{seed}.jsonl.zst"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        write_catalog(path, tracks, seed)
        print(f"  generated {path.name} in {time.monotonic() - t0:.1f} s", flush=True)
    return path


def _tree(pid: int) -> dict[int, tuple[int, float]]:
    """(resident bytes, CPU seconds so far) of a process and each descendant, by pid,
    from /proc."""
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        stats[p] = (int(fields[21]) * page, (int(fields[11]) + int(fields[12])) / tick)
    out: dict[int, tuple[int, float]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        out[p] = stats.get(p, (0, 0.0))
        todo += children.get(p, [])
    return out


@dataclass
class Run:
    seconds: float
    peak_rss: int
    """Peak of the summed RSS of the command and its children, sampled every 50 ms."""
    stdout: str
    cpu_seconds: float = 0.0
    """CPU seconds (user + system) of the command and its children, as last sampled."""


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``, returning its wall time, the peak memory and the CPU time of its
    process tree."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            tree = _tree(proc.pid)
            peak = max(peak, sum(rss for rss, _ in tree.values()))
            for p, (_, seconds) in tree.items():
                cpu[p] = max(cpu.get(p, 0.0), seconds)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return Run(seconds, peak, out, sum(cpu.values()))


def phonotheca_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "phonotheca.cli", *args]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
