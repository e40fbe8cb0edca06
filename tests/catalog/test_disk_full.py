"""An import that runs out of disk stops with one clear line, keeps what it committed, and a
re-run once there is space gives the catalog an uninterrupted import gives.

Two ways to run out, both real: a small tmpfs holding the archive (ENOSPC, SQLite's
"database or disk is full"; needs the right to mount, else that case is skipped), and a
file-size limit on the process (``ulimit -f``: EFBIG, which SQLite reports as a disk
I/O error; works anywhere).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from phonotheca.catalog.export import iter_export_lines
from tests.catalog.test_roundtrip import _import_cmd, logical_dump
from tests.conftest import SmallDisk

ENV = dict(os.environ, PHONOTHECA_TEST_BATCH_LINES="1000")


@pytest.fixture(scope="module")
def reference(synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("reference") / "archive"
    subprocess.run(_import_cmd(archive, synthetic), env=ENV, check=True, capture_output=True)
    return archive


def _assert_same_catalog(victim: Path, reference: Path) -> None:
    assert logical_dump(victim / "catalog.sqlite3") == logical_dump(reference / "catalog.sqlite3")
    ref = sqlite3.connect(reference / "catalog.sqlite3")
    vic = sqlite3.connect(victim / "catalog.sqlite3")
    try:
        assert sorted(iter_export_lines(vic)) == sorted(iter_export_lines(ref))
        assert vic.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        ref.close()
        vic.close()


def _rerun(victim: Path, synthetic: Path) -> dict[str, object]:
    done = subprocess.run(
        _import_cmd(victim, synthetic), env=ENV, check=True, capture_output=True, text=True
    )
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


def test_a_full_disk_stops_the_import_and_a_rerun_completes_it(
    small_disk: Callable[[int], SmallDisk], synthetic: Path, reference: Path
) -> None:
    disk = small_disk(4 << 20)  # the import needs about 15 MB
    victim = disk.path / "archive"
    failed = subprocess.run(_import_cmd(victim, synthetic), env=ENV, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "out of disk space" in failed.stderr
    assert "run the same command again" in failed.stderr
    disk.resize(256 << 20)  # the operator frees space
    summary = _rerun(victim, synthetic)
    assert summary["resumed_at_line"] > 0  # batches committed before the disk filled stay
    _assert_same_catalog(victim, reference)


def _file_size_limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_stops_the_import_and_a_rerun_completes_it(
    tmp_path: Path, synthetic: Path, reference: Path
) -> None:
    victim = tmp_path / "archive"
    limit = (reference / "catalog.sqlite3").stat().st_size // 2
    failed = subprocess.run(
        _import_cmd(victim, synthetic),
        env=ENV,
        capture_output=True,
        text=True,
        preexec_fn=lambda: _file_size_limit(limit),
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "disk I/O error" in failed.stderr or "grew past" in failed.stderr
    assert str(victim) in failed.stderr
    summary = _rerun(victim, synthetic)
    assert summary["resumed_at_line"] > 0
    _assert_same_catalog(victim, reference)
