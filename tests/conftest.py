"""Shared fixtures: archives in temporary directories, small interchange files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from phonotheca.archive import Archive, init_archive

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


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
