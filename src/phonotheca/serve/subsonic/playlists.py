"""Playlists: ``getPlaylists``, ``getPlaylist``, ``createPlaylist``, ``updatePlaylist``,
``deletePlaylist``. Ids are ``pl-<n>``. A user sees their own playlists and public ones,
and changes only their own (error 50 otherwise). Entries whose track left the catalog
are kept in the store but not listed.
"""

from __future__ import annotations

from phonotheca.serve.state import Playlist, StateError
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.browsing import song_items
from phonotheca.serve.subsonic.call import Call, Handler, expect_id
from phonotheca.serve.subsonic.envelope import (
    GENERIC,
    MISSING_PARAMETER,
    NOT_AUTHORIZED,
    NOT_FOUND,
    Payload,
    SubsonicError,
)


def _playlist_id(raw: str) -> int:
    prefix, _, number = raw.partition("-")
    if prefix != "pl" or not number.isdigit():
        raise SubsonicError(NOT_FOUND, f"no playlist with id {raw!r} (playlist ids look like pl-1)")
    return int(number)


def _visible(call: Call, raw: str) -> Playlist:
    playlist = call.state.get_playlist(_playlist_id(raw))
    if playlist is None:
        raise SubsonicError(NOT_FOUND, f"no playlist with id {raw!r}")
    if playlist.owner_id != call.user_id and not playlist.public:
        raise SubsonicError(NOT_AUTHORIZED, f"playlist {raw!r} belongs to another user")
    return playlist


def _owned(call: Call, raw: str) -> Playlist:
    playlist = _visible(call, raw)
    assert call.user is not None
    if playlist.owner_id != call.user_id and not call.user.admin:
        raise SubsonicError(NOT_AUTHORIZED, f"only its owner may change playlist {raw!r}")
    return playlist


def _summary(call: Call, playlist: Playlist, track_ids: list[int]) -> Payload:
    by_id = dict(
        items.rows_in(
            call.conn,
            f"SELECT t.id, coalesce({items.DURATION_MS}, 0) FROM tracks t LEFT JOIN ledger l"
            " ON l.track_id = t.id AND l.status = 'packed' WHERE t.id IN ({ids})",
            track_ids,
        )
    )
    total_ms = sum(by_id.get(t, 0) for t in track_ids)
    return {
        "id": f"pl-{playlist.id}",
        "name": playlist.name,
        "comment": playlist.comment,
        "owner": playlist.owner,
        "public": playlist.public,
        "songCount": len(track_ids),
        "duration": (total_ms + 500) // 1000,
        "created": playlist.created_at,
        "changed": playlist.changed_at,
    }


def get_playlists(call: Call) -> Payload:
    assert call.user is not None
    username = call.get("username")
    if username and username != call.user.name and not call.user.admin:
        raise SubsonicError(NOT_AUTHORIZED, "only an admin may list another user's playlists")
    user = call.user if not username else call.state.get_user(username)
    if user is None:
        raise SubsonicError(NOT_FOUND, f"no user {username!r}")
    listed = []
    for playlist in call.state.playlists(user.id):
        track_ids = items.track_rowids(call.conn, playlist.tracks)
        listed.append(_summary(call, playlist, track_ids))
    return {"playlists": {"playlist": listed}}


def with_entries(call: Call, playlist: Playlist) -> Payload:
    track_ids = items.track_rowids(call.conn, playlist.tracks)
    out = _summary(call, playlist, track_ids)
    # Repeats are allowed in a playlist: build each song once, list it at every position.
    songs = {s["id"]: s for s in song_items(call, list(dict.fromkeys(track_ids)))}
    out["entry"] = [songs[f"tr-{p}"] for p in playlist.tracks if f"tr-{p}" in songs]
    return out


def get_playlist(call: Call) -> Payload:
    return {"playlist": with_entries(call, _visible(call, call.require("id")))}


def _songs(call: Call, name: str) -> list[str]:
    public_ids = [expect_id(raw, "track") for raw in call.getall(name)]
    known = items.lookup(call.conn, "tracks", public_ids)
    for public_id in public_ids:
        if public_id not in known:
            raise SubsonicError(NOT_FOUND, f"no song with id {public_id!r} in this catalog")
    return public_ids


def create_playlist(call: Call) -> Payload:
    """A new playlist (``name``), or replace the songs of one (``playlistId``)."""
    songs = _songs(call, "songId")
    raw = call.get("playlistId")
    if raw:
        playlist = _owned(call, raw)
        name = call.get("name")
        playlist = call.state.update_playlist(playlist.id, name=name or None, tracks=songs)
    else:
        name = call.get("name")
        if not name:
            raise SubsonicError(MISSING_PARAMETER, "required parameter 'name' or 'playlistId'")
        playlist = call.state.create_playlist(call.user_id, name, songs)
    return {"playlist": with_entries(call, playlist)}


def update_playlist(call: Call) -> Payload:
    playlist = _owned(call, call.require("playlistId"))
    public = call.get("public")
    try:
        remove = [int(i) for i in call.getall("songIndexToRemove")]
    except ValueError:
        raise SubsonicError(GENERIC, "'songIndexToRemove' must be integers") from None
    try:
        call.state.update_playlist(
            playlist.id,
            name=call.get("name") or None,
            comment=call.get("comment"),
            public=None if public is None else call.flag("public", False),
            add=_songs(call, "songIdToAdd"),
            remove_positions=remove,
        )
    except StateError as exc:
        raise SubsonicError(NOT_FOUND, str(exc)) from None
    return {}


def delete_playlist(call: Call) -> Payload:
    playlist = _owned(call, call.require("id"))
    call.state.delete_playlist(playlist.id)
    return {}


ENDPOINTS: dict[str, Handler] = {
    "getPlaylists": get_playlists,
    "getPlaylist": get_playlist,
    "createPlaylist": create_playlist,
    "updatePlaylist": update_playlist,
    "deletePlaylist": delete_playlist,
}
