"""Take a current catalog back to an older schema version, to test a migration from it.

Each step undoes what one migration added (docs/FORMAT.md §4); :func:`rewind` applies them
newest first, then sets ``user_version``. A new migration adds its undo step here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from phonotheca.catalog import schema


def _undo_v5(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE ledger DROP COLUMN duration_ms")


def _undo_v6(conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX ledger_position")
    conn.execute("ALTER TABLE ledger DROP COLUMN position")


def _undo_v7(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE track_aliases")


def _undo_v8(conn: sqlite3.Connection) -> None:
    for table in ("ledger", "source_files"):
        for column in ("loudness_lufs", "true_peak_dbtp", "loudness_range_lu", "loudness_blocks"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("DROP TABLE album_loudness")


def _undo_v9(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE imports DROP COLUMN counts")
    conn.execute("DROP TABLE playlist_search")
    conn.execute("DROP TABLE playlist_entries")
    conn.execute("DROP TABLE playlists")


def _undo_v10(conn: sqlite3.Connection) -> None:
    schema.stop_ledger_counts(conn)
    conn.execute("DROP TABLE ledger_counts")


def _undo_v11(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'lib\\_%' ESCAPE '\\'"
    ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE library_changes")
    conn.execute("DROP TABLE library_changes_off")


UNDO: dict[int, Callable[[sqlite3.Connection], None]] = {
    5: _undo_v5,
    6: _undo_v6,
    7: _undo_v7,
    8: _undo_v8,
    9: _undo_v9,
    10: _undo_v10,
    11: _undo_v11,
}


def rewind(conn: sqlite3.Connection, version: int) -> None:
    """Undo every migration after ``version`` (newest first) and set ``user_version``."""
    assert max(UNDO) == schema.SCHEMA_VERSION, "a new migration needs its undo step here"
    for v in range(schema.SCHEMA_VERSION, version, -1):
        UNDO[v](conn)
    conn.execute(f"PRAGMA user_version = {version}")
