"""Helpers shared by the build tests: deterministic tracks, packing, the real tar."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
from pathlib import Path

from phonotheca.build import BagInfo, PackedCollection, PackItem, member_name, pack_collection

MTIME = 1_700_000_000
INFO = BagInfo(
    dt.date(2025, 1, 2),
    external_description="Phonotheca test collection",
    external_identifier="urn:phonotheca:test:1",
)
SMALL_VOLUME = 20 * 1024


def audio(seed: int, size: int) -> bytes:
    """Stand-in audio bytes, the same for the same seed on every run."""
    return random.Random(seed).randbytes(size)


def make_items(sizes: list[int], *, prefix: str = "syn:track:") -> list[PackItem]:
    """One track per size, with index metadata, ids ``<prefix><n>``."""
    items = []
    for n, size in enumerate(sizes):
        public_id = f"{prefix}{n}"
        items.append(
            PackItem(
                public_id,
                member_name(public_id, "opus"),
                size,
                audio(n, size),
                {
                    "codec": "opus",
                    "bitrate": 75_000,
                    "duration_ms": 1000 * n,
                    "tier": "opus",
                    "title": f"Sóng {n}",
                    "artists": [f"Artist {n % 3}", "Guest"],
                    "album": f"Album {n // 4}",
                    "isrc": f"USABC01{n:05d}",
                    "popularity": 100 - n,
                },
            )
        )
    return items


SIZES = [5000, 123, 0, 512, 513, 7000, 1, 9000, 2048, 300]


class RecordingSink:
    """A byte sink that keeps what it sees, and checks the start/update/end protocol."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}
        self.order: list[str] = []
        self.current: str | None = None

    def start_file(self, path: str) -> None:
        assert self.current is None, f"{self.current} was not ended"
        assert path not in self.files, f"{path} started twice"
        self.current = path
        self.order.append(path)
        self.files[path] = bytearray()

    def update(self, data: bytes | memoryview, *, stable: bool = False) -> None:
        assert self.current is not None
        self.files[self.current] += data

    def end_file(self) -> None:
        assert self.current is not None
        self.current = None


def pack(
    bag_dir: Path,
    items: list[PackItem] | None = None,
    collection: str = "test",
    **kwargs: object,
) -> PackedCollection:
    kwargs.setdefault("max_volume_size", SMALL_VOLUME)
    return pack_collection(
        bag_dir,
        collection,
        make_items(SIZES) if items is None else items,
        info=INFO,
        mtime=MTIME,
        **kwargs,  # type: ignore[arg-type]
    )


def run_tar(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """GNU tar in a UTF-8 locale, so non-ASCII names list as themselves."""
    env = dict(os.environ, LC_ALL="C.UTF-8")
    return subprocess.run(
        ["tar", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )


def bag_bytes(bag_dir: Path) -> dict[str, bytes]:
    """Every file of a bag by its path relative to the bag."""
    return {
        p.relative_to(bag_dir).as_posix(): p.read_bytes()
        for p in sorted(bag_dir.rglob("*"))
        if p.is_file()
    }
