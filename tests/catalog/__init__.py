"""Helpers shared by the import tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from phonotheca.archive import Archive
from phonotheca.catalog.importer import finish_import

S = TypeVar("S")


def import_files(
    archive: Archive,
    import_one: Callable[..., S],
    paths: tuple[Path, ...],
    *,
    strict: bool = False,
    workers: int = 0,
) -> list[S]:
    """Import ``paths`` as the CLI does: ``--strict`` is one transaction around them all
    (rolled back on error), then the postponed indexes are built."""
    conn = archive.connect()
    try:
        if strict:
            conn.execute("BEGIN IMMEDIATE")
        out = [
            import_one(conn, p, archive.rejects_dir, strict=strict, workers=workers) for p in paths
        ]
        if strict:
            conn.execute("COMMIT")
        finish_import(conn)
        return out
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
