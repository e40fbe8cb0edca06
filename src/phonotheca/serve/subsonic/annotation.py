"""What users add to the catalog: stars (``star``, ``unstar``, ``getStarred2``) and plays
(``scrobble``). Stored in ``state.sqlite3`` by public id, so they survive catalog rebuilds.
A scrobble with ``submission=false`` also says what the player is playing now
(``getNowPlaying``).
"""

from __future__ import annotations

import time

from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.activity import note_playing
from phonotheca.serve.subsonic.browsing import album_items, artist_items, song_items, starred
from phonotheca.serve.subsonic.call import Call, Handler, expect_id, split_id
from phonotheca.serve.subsonic.envelope import (
    GENERIC,
    MISSING_PARAMETER,
    NOT_FOUND,
    Payload,
    SubsonicError,
)
from phonotheca.serve.subsonic.folders import library_of, server_library

_TABLES = {"track": "tracks", "album": "albums", "artist": "artists"}


def _targets(call: Call) -> dict[str, list[str]]:
    """Public ids per kind from ``id`` (any kind), ``albumId`` and ``artistId``; each must
    exist in the catalog."""
    wanted: dict[str, list[str]] = {"track": [], "album": [], "artist": []}
    for raw in call.getall("id"):
        kind, public_id = split_id(raw)
        wanted[kind].append(public_id)
    for raw in call.getall("albumId"):
        wanted["album"].append(expect_id(raw, "album"))
    for raw in call.getall("artistId"):
        wanted["artist"].append(expect_id(raw, "artist"))
    if not any(wanted.values()):
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'id', 'albumId' or 'artistId'")
    for kind, public_ids in wanted.items():
        known = set(_existing(call, kind, public_ids))
        missing = [p for p in public_ids if p not in known]
        if missing:
            raise SubsonicError(NOT_FOUND, f"no {kind} with id {missing[0]!r} in this catalog")
    return wanted


def _existing(call: Call, kind: str, public_ids: list[str]) -> set[str]:
    return set(items.lookup(call.conn, _TABLES[kind], public_ids))


def star(call: Call) -> Payload:
    for kind, public_ids in _targets(call).items():
        if public_ids:
            call.state.star(call.user_id, kind, public_ids)
    return {}


def unstar(call: Call) -> Payload:
    for kind, public_ids in _targets(call).items():
        if public_ids:
            call.state.unstar(call.user_id, kind, public_ids)
    return {}


def _starred_lists(call: Call) -> tuple[list[Payload], list[Payload], list[Payload]]:
    conn = call.conn
    found = []
    for kind in ("artist", "album", "track"):
        stars = starred(call, kind, None)  # newest first
        found.append(items.rowids(conn, _TABLES[kind], list(stars)))
    if call.get("musicFolderId") is not None:  # else every star, whichever folder it was in
        library, shelf = library_of(call), server_library(call)
        found = [
            shelf.artists_in(library, found[0]),
            shelf.albums_in(library, found[1]),
            shelf.songs_in(library, found[2]),
        ]
    return artist_items(call, found[0]), album_items(call, found[1]), song_items(call, found[2])


def get_starred2(call: Call) -> Payload:
    artists, albums, songs = _starred_lists(call)
    return {"starred2": {"artist": artists, "album": albums, "song": songs}}


def get_starred(call: Call) -> Payload:
    artists, albums, songs = _starred_lists(call)
    return {
        "starred": {
            "artist": [
                {"id": a["id"], "name": a["name"], "starred": a["starred"]} for a in artists
            ],
            "album": [items.album_as_child(a, ("coverArt", "starred")) for a in albums],
            "song": songs,
        }
    }


def scrobble(call: Call) -> Payload:
    ids = [expect_id(raw, "track") for raw in call.getall("id")]
    if not ids:
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'id' is missing")
    known = set(_existing(call, "track", ids))
    missing = [p for p in ids if p not in known]
    if missing:
        raise SubsonicError(NOT_FOUND, f"no song with id {missing[0]!r} in this catalog")
    times = call.getall("time")
    now = int(time.time() * 1000)
    plays = []
    for index, public_id in enumerate(ids):
        try:
            at = int(times[index]) if index < len(times) else now
        except ValueError:
            raise SubsonicError(
                GENERIC, f"'time' must be milliseconds since 1970, not {times[index]!r}"
            ) from None
        plays.append((public_id, at))
    submission = call.flag("submission", True)
    call.state.scrobble(call.user_id, plays, submission=submission)
    if not submission:
        # A "now playing" notice: apps playing from their own cache send only this.
        public_id, at = plays[-1]
        note_playing(call, public_id, at)
    return {}


ENDPOINTS: dict[str, Handler] = {
    "star": star,
    "unstar": unstar,
    "getStarred": get_starred,
    "getStarred2": get_starred2,
    "scrobble": scrobble,
}
