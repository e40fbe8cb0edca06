"""Album loudness in the catalog: gated over the blocks of every packed track of an album.

ReplayGain 2 defines an album's loudness as the integrated loudness of all its tracks'
gating blocks taken together (not an average of track loudnesses): a quiet interlude
counts for its length, not as much as a whole song. Each packed track keeps its blocks as
a histogram (``ledger.loudness_blocks``), so an album is computed again from the catalog
alone whenever a build packs one of its tracks, whichever build packed the others.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from phonotheca.audio.loudness import album_loudness


def update_album_loudness(conn: sqlite3.Connection, track_ids: Sequence[int]) -> int:
    """Recompute ``album_loudness`` for the albums of these tracks, inside the caller's
    transaction; returns how many albums were written."""
    albums = [
        int(r[0])
        for r in conn.execute(
            "SELECT DISTINCT album_id FROM tracks WHERE album_id IS NOT NULL"
            " AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(track_ids)),),
        )
    ]
    for album_id in albums:
        rows = conn.execute(
            "SELECT l.loudness_blocks, l.true_peak_dbtp FROM ledger l"
            " JOIN tracks t ON t.id = l.track_id"
            " WHERE t.album_id = ? AND l.status = 'packed' AND l.loudness_blocks IS NOT NULL",
            (album_id,),
        ).fetchall()
        if not rows:
            conn.execute("DELETE FROM album_loudness WHERE album_id = ?", (album_id,))
            continue
        peaks = [float(r[1]) for r in rows if r[1] is not None]
        conn.execute(
            "INSERT OR REPLACE INTO album_loudness(album_id, loudness_lufs, true_peak_dbtp,"
            " tracks) VALUES (?, ?, ?, ?)",
            (
                album_id,
                album_loudness(bytes(r[0]) for r in rows),
                max(peaks) if peaks else None,
                len(rows),
            ),
        )
    return len(albums)
