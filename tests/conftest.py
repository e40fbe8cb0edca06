"""Shared fixtures: archives in temporary directories, small interchange files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from phonotheca.archive import Archive, init_archive

REPO = Path(__file__).resolve().parent.parent

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on a loaded 2-core
# machine a fast example can take longer, and the test would fail for no bug.
settings.register_profile("phonotheca", deadline=None)
settings.load_profile("phonotheca")
DATA = REPO / "tests" / "data"


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return init_archive(tmp_path / "archive", "test")


def track(n: int, **fields: object) -> dict[str, object]:
    """A valid interchange record with predictable values; ``fields`` override."""
    rec: dict[str, object] = {
        "id": f"test:track:{n}",
        "title": f"Song {n}",
        "artists": [{"id": f"test:artist:{n % 7}", "name": f"Artist {n % 7}"}],
        "album": {
            "id": f"test:album:{n // 10}",
            "title": f"Album {n // 10}",
            "artists": [{"id": f"test:artist:{n % 7}", "name": f"Artist {n % 7}"}],
            "release_date": "2001-02-03",
        },
        "track_number": n % 10 + 1,
        "duration_ms": 180_000 + n,
        "isrc": f"USABC01{n:05d}",
        "popularity": n % 101,
        "listens": n * 10,
    }
    rec.update(fields)
    return rec


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, records: list[object]) -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            for r in records:
                f.write(r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode())
                f.write(b"\n")
        return path

    return write


class SmallDisk:
    """A tmpfs of a chosen size: a real filesystem that runs out of space (ENOSPC)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: int) -> None:
        """Grow (or shrink) it in place, as an operator freeing space would."""
        _mount_tmpfs(self.path, f"remount,size={size}")


def _mount_tmpfs(path: Path, options: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], SmallDisk]]:
    """``small_disk(size)`` mounts a tmpfs of ``size`` bytes; skips where mounting is not
    allowed (it needs root, or CAP_SYS_ADMIN in a container)."""
    mounted: list[Path] = []

    def mount(size: int) -> SmallDisk:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        try:
            _mount_tmpfs(path, f"size={size}")
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        mounted.append(path)
        return SmallDisk(path)

    try:
        yield mount
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
