"""Process trees for the signal tests: who a command started, and whether any is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: fields follow the last ')'.
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                parents[int(entry)] = parent
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> bytes:
    """The process's command line (NUL-separated), or b"" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pids: Sequence[int] | set[int]) -> set[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            left.add(pid)
    return left


def stop_all(process: subprocess.Popen[str], others: set[int]) -> None:
    """Clean up after a failed test: kill what is left (by pid, nothing else)."""
    for pid in alive(others):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    if process.poll() is None:
        process.kill()
        process.wait(10)


def sigint_default() -> None:
    """``preexec_fn`` of a process the test stops with SIGINT: a shell that runs the tests
    in the background starts them with SIGINT ignored, which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_in_a_terminal_group(args: Sequence[str], stdout: Any) -> subprocess.Popen[str]:
    """``args`` started as a terminal starts a command: in a process group of its own (so
    :func:`stop_with` can send Ctrl-C to the whole group), SIGINT at its default, stderr
    merged into ``stdout`` (a file, or ``subprocess.PIPE``)."""
    return subprocess.Popen(
        list(args),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_default,
    )


def stop_with(process: subprocess.Popen[str], how: str) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to the process group: start the process
    with ``start_new_session=True``), or ``kill PID`` (SIGTERM to the process alone)."""
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)
