"""An archive ready to build: a synthetic catalog, short real audio files, a plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SETTINGS = """
[build]
collection_size = "400KB"
volume_size = "160KB"
date = 2026-01-01
"""


def phonotheca(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phonotheca.cli", *args],
        check=check,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def planned_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive with a plan of originals and Opus tracks, not yet built (copy it)."""
    base = tmp_path_factory.mktemp("planned")
    arc = base / "arc"
    phonotheca("init", str(arc), "--name", "demo")
    (arc / "phonotheca.toml").write_text(
        (arc / "phonotheca.toml").read_text() + SETTINGS, encoding="utf-8"
    )
    catalog = base / "catalog.jsonl"
    phonotheca("synth", "catalog", "--tracks", "300", "--seed", "3", str(catalog))
    phonotheca("import", "jsonl", str(catalog), "--archive", str(arc))
    audio = base / "audio"
    phonotheca(
        "synth",
        "audio",
        "--catalog",
        str(catalog),
        "--tracks",
        "80",
        "--min-seconds",
        "0.6",
        "--max-seconds",
        "1.2",
        str(audio),
    )
    phonotheca("import", "files", str(audio), "--archive", str(arc))
    # Popular tracks keep their original, the budget leaves Opus for some of the rest.
    phonotheca(
        "plan",
        "--budget",
        "600KB",
        "--min-original-popularity",
        "55",
        "--opus-kbps",
        "32",
        "--archive",
        str(arc),
    )
    return arc


@pytest.fixture
def archive(planned_archive: Path, tmp_path: Path) -> Path:
    """A private copy of the planned archive (its sources stay where they are)."""
    copy = tmp_path / "arc"
    shutil.copytree(planned_archive, copy)
    return copy


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
