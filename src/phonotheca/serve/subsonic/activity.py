"""What the server and its users are doing: ``getNowPlaying`` and ``getScanStatus``.

Now playing comes from ``state.sqlite3``'s ``now_playing`` table: each user's players
(the ``c`` parameter) and the track each one last began to ``stream`` (from its first
byte) or announced with ``scrobble?submission=false``. An entry is shown while the track
could still be playing: for its length plus :data:`GRACE_MS` after its stream began
(:data:`UNKNOWN_LENGTH_MS` when its length is unknown). The call reads one range of the
table's index over the last hour, at most :data:`~phonotheca.serve.state.NOW_PLAYING_ROWS`
rows, whatever the number of users or plays.

Phonotheca never scans a music folder: its library is what imports and builds made. So
the scan status is never ``scanning``; ``count`` is the number of tracks this server can
play (those of the collections it holds, as :mod:`phonotheca.serve.playable` lists them),
and ``lastScan`` when the last import or build finished.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

from phonotheca.serve.state import NOW_PLAYING_KEEP_MS
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import catalog_created, song_items
from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import Payload, Pruned

GRACE_MS = 2 * 60 * 1000
"""How long after its length a track still shows as playing (pauses, buffering)."""
UNKNOWN_LENGTH_MS = 10 * 60 * 1000
"""How long a track of unknown length shows as playing."""


def note_playing(call: Call, track: str, at: int | None = None) -> None:
    """Record that the caller's player (``c``) began playing ``track`` (its public id) at
    ``at`` (ms since the epoch, or now). Best effort: a busy state database must not cost
    anyone their music."""
    # Locked past the busy timeout, or a full disk: the entry is only informative.
    with contextlib.suppress(sqlite3.OperationalError):
        call.state.record_playing(call.user_id, call.get("c") or "", track, at)


def get_now_playing(call: Call) -> Payload:
    now = int(time.time() * 1000)
    recent = call.state.now_playing(now - NOW_PLAYING_KEEP_MS)
    tracks = list(dict.fromkeys(r.track for r in recent))
    by_pid = {
        song["id"].removeprefix("tr-"): song
        for song in song_items(call, items.track_rowids(call.conn, tracks))
    }
    entries: list[Payload] = []
    for playing in recent:
        song = by_pid.get(playing.track)
        if song is None:
            continue  # no longer in the catalog
        elapsed = max(0, now - playing.at)
        seconds = song.get("duration")
        shown = UNKNOWN_LENGTH_MS if seconds is None else seconds * 1000 + GRACE_MS
        if elapsed > shown:
            continue
        entry = Pruned(song)
        entry["username"] = playing.username
        entry["minutesAgo"] = elapsed // 60_000
        entry["playerId"] = playing.player_id
        if playing.player:
            entry["playerName"] = playing.player
        entries.append(entry)
    return {"nowPlaying": {"entry": entries}}


def last_scan(call: Call) -> str:
    """When the last import or build finished (ISO 8601), else when the catalog was
    written. Both tables have a row per import or per collection, not per track."""
    conn = call.conn
    finished = conn.execute(
        "SELECT finished_at FROM imports WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    built = conn.execute("SELECT max(built_at) FROM collections").fetchone()
    times = [row[0] for row in (finished, built) if row is not None and row[0]]
    return max(times) if times else catalog_created(call)


def get_scan_status(call: Call) -> Payload:
    count = call.ctx.media.sampler.candidates().total
    return {"scanStatus": {"scanning": False, "count": count, "lastScan": last_scan(call)}}


ENDPOINTS: dict[str, Handler] = {
    "getNowPlaying": get_now_playing,
    "getScanStatus": get_scan_status,
}
