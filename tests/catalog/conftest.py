"""Fixtures of the catalog tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonotheca.synth.catalog import write_catalog


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic catalog of 20,000 tracks (.jsonl.zst), made once per test module."""
    path = tmp_path_factory.mktemp("synth") / "catalog.jsonl.zst"
    write_catalog(path, 20_000, seed=5)
    return path
