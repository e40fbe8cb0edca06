"""Durable files: fsync of every payload file before a bitfield may call it verified."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phonotheca.durable import sync_files, write_atomically


def test_sync_files_fsyncs_every_regular_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "collection"
    (root / "data").mkdir(parents=True)
    for rel in ("bagit.txt", "data/a.0001.tar", "data/a.0002.tar"):
        (root / rel).write_bytes(b"x" * 100)
    elsewhere = tmp_path / "other-disk.tar"
    elsewhere.write_bytes(b"y")
    (root / "data" / "a.0003.tar").symlink_to(elsewhere)
    os.mkfifo(root / "fifo")  # would block an open(); must be skipped
    synced: list[str] = []
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    assert sync_files(root) == 4
    assert sorted(synced) == sorted(
        [
            str(root / "bagit.txt"),
            str(root / "data/a.0001.tar"),
            str(root / "data/a.0002.tar"),
            str(elsewhere),
        ]
    )
    assert sync_files(tmp_path / "missing") == 0


def test_write_atomically_leaves_no_partial_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"old")

    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
