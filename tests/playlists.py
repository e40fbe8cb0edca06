"""Catalog playlists for server tests, written straight into the v9 tables (FORMAT.md §4.8).

The tests of the server do not depend on the importer: :func:`add_playlist` writes a
playlist as an import leaves it (its row with its counts, its entries, its words in
``playlist_search``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Given:
    """An entry no catalog track matched: only what the playlist says of it."""

    title: str
    creator: str | None = None
    album: str | None = None
    duration_ms: int | None = None
    identifier: str | None = None


Entry = str | int | Given
"""A matched entry (the track's public id, or its rowid), or an unmatched one."""


def add_playlist(
    conn: sqlite3.Connection,
    public_id: str,
    title: str,
    entries: Sequence[Entry] = (),
    *,
    creator: str | None = None,
    annotation: str | None = None,
    created: str | None = None,
    identifier: str | None = None,
) -> int:
    """Write one playlist (in its own transaction); returns its rowid."""
    rows = []
    for position, entry in enumerate(entries):
        if isinstance(entry, Given):
            rows.append(
                (position, None, None, entry.identifier, entry.title, entry.creator, entry.album,
                 entry.duration_ms)
            )  # fmt: skip
            continue
        key = "public_id" if isinstance(entry, str) else "id"
        found = conn.execute(
            "SELECT t.id, t.title, t.artist_credit, a.title, t.duration_ms FROM tracks t"
            f" LEFT JOIN albums a ON a.id = t.album_id WHERE t.{key} = ?",
            (entry,),
        ).fetchone()
        assert found is not None, f"no track {entry!r} in the catalog"
        rowid, track_title, credit, album, duration = found
        rows.append((position, rowid, "mbid", None, track_title, credit, album, duration))
    durations = [r[7] for r in rows if r[7] is not None]
    conn.execute("BEGIN")
    cur = conn.execute(
        "INSERT INTO playlists(public_id, title, creator, annotation, created, identifier,"
        " entries, matched, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            public_id,
            title,
            creator,
            annotation,
            created,
            identifier,
            len(rows),
            sum(1 for r in rows if r[1] is not None),
            sum(durations) if durations else None,
        ),
    )
    playlist_id = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT INTO playlist_entries(playlist_id, position, track_id, match, identifier,"
        " title, creator, album, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(playlist_id, *r) for r in rows],
    )
    conn.execute(
        "INSERT INTO playlist_search(rowid, title, creator) VALUES (?, ?, ?)",
        (playlist_id, title, creator or ""),
    )
    conn.execute("COMMIT")
    return playlist_id
