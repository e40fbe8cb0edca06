"""The catalog's public playlists beside the users' own (FORMAT.md §14.2).

Their ids are their public ids (``pl:...``), which cannot be mistaken for a user's
playlist (``pl-<n>``). The calls of :mod:`.playlists` are wrapped: an id of a catalog
playlist is answered here, any other goes on to the user's playlists.

- ``getPlaylists``: the user's playlists, then :data:`CATALOG_LISTED` catalog playlists
  in public-id order (one index range): a catalog may hold millions. Extension
  parameters page through the rest: ``catalogCount`` (0 to 500) and ``catalogAfter`` (the
  public id the page starts after).
- ``getPlaylist id=pl:...``: the entries at positions ``[offset, offset + size)``
  (extension parameters; by default the first 500), one range of the entries' key. Only
  entries matched to a catalog track, and in the call's music folder, are listed: a
  client cannot play the others. ``songCount`` is the number of matched entries,
  ``entryCount`` (extension) that of all entries.
- ``createPlaylist playlistId=pl:...``: copies its matched tracks into a new playlist of
  the user's (``name`` or the catalog playlist's title): one of at most :data:`MAX_COPY`
  entries.
- ``updatePlaylist`` and ``deletePlaylist`` of a catalog playlist: error 50.
"""

from __future__ import annotations

from phonotheca.serve import playlists as catalog
from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic import playlists as own
from phonotheca.serve.subsonic.browsing import catalog_created, song_items
from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import (
    GENERIC,
    NOT_AUTHORIZED,
    NOT_FOUND,
    Payload,
    SubsonicError,
)
from phonotheca.serve.subsonic.folders import (
    MAX_LIST,
    library_of,
    offset_of,
    page_size,
    server_library,
)

PREFIX = "pl:"
CATALOG_LISTED = 50
"""Catalog playlists ``getPlaylists`` lists after the user's by default."""
MAX_COPY = 10_000
"""The most entries of a catalog playlist ``createPlaylist`` copies (a larger one is
refused: a copy cut short would not be the playlist), which bounds what a copy reads."""
OWNER = "catalog"
"""The owner shown for a catalog playlist without a creator."""


def _is_catalog(raw: str | None) -> bool:
    return raw is not None and raw.startswith(PREFIX)


def _find(call: Call, public_id: str) -> catalog.CatalogPlaylist:
    found = catalog.by_public_id(call.conn, public_id)
    if found is None:
        raise SubsonicError(NOT_FOUND, f"no catalog playlist with id {public_id!r}")
    return found


def _public_ids(call: Call, rowids: list[int]) -> dict[int, str]:
    """Public ids of tracks by rowid (a page or a copy: bounded by its caller)."""
    rows = items.rows_in(call.conn, "SELECT id, public_id FROM tracks WHERE id IN ({ids})", rowids)
    return {int(r[0]): str(r[1]) for r in rows}


def _summary(playlist: catalog.CatalogPlaylist, written: str) -> Payload:
    """The playlist's fields; ``written``: when the catalog was (its date when it has none)."""
    created = playlist.created or written
    return {
        "id": playlist.public_id,
        "name": playlist.title,
        "comment": playlist.annotation,
        "owner": playlist.creator or OWNER,
        "public": True,
        "songCount": playlist.matched,
        "duration": ((playlist.duration_ms or 0) + 500) // 1000,
        "created": created,
        "changed": created,
        "readonly": True,
        "entryCount": playlist.entries,
    }


def get_playlists(call: Call) -> Payload:
    listed = own.get_playlists(call)
    count = page_size(call, "catalogCount", CATALOG_LISTED)
    found = catalog.page(call.conn, after=call.get("catalogAfter") or None, size=count)
    written = catalog_created(call)
    listed["playlists"]["playlist"] += [_summary(p, written) for p in found.playlists]
    return listed


def get_playlist(call: Call) -> Payload:
    raw = call.require("id")
    if not _is_catalog(raw):
        return own.get_playlist(call)
    playlist = _find(call, raw)
    offset = offset_of(call)
    size = page_size(call, "size", MAX_LIST)
    page = catalog.entries(call.conn, playlist, offset, size)
    matched = [e.track_id for e in page if e.track_id is not None]
    listed = server_library(call).songs_in(library_of(call), matched)
    # Repeats are allowed: build each song once, list it at every position.
    public = _public_ids(call, listed)
    songs = {s["id"]: s for s in song_items(call, list(dict.fromkeys(listed)))}
    entry = [songs.get(f"tr-{public.get(t)}") for t in listed]
    out = _summary(playlist, catalog_created(call))
    out["offset"] = offset
    out["entry"] = [song for song in entry if song is not None]
    return {"playlist": out}


def create_playlist(call: Call) -> Payload:
    raw = call.get("playlistId")
    if not _is_catalog(raw):
        return own.create_playlist(call)
    assert raw is not None
    if call.getall("songId"):
        raise SubsonicError(
            GENERIC,
            f"'songId' cannot be given with the catalog playlist {raw!r}: copy it first,"
            " then add songs to the copy with updatePlaylist",
        )
    playlist = _find(call, raw)
    if playlist.entries > MAX_COPY:
        raise SubsonicError(
            GENERIC,
            f"catalog playlist {raw!r} has {playlist.entries:,} entries; this server copies"
            f" playlists of at most {MAX_COPY:,}",
        )
    rowids = catalog.track_ids(call.conn, playlist, MAX_COPY)
    public = _public_ids(call, rowids)
    tracks = [public[r] for r in rowids if r in public]
    copy = call.state.create_playlist(call.user_id, call.get("name") or playlist.title, tracks)
    return {"playlist": own.with_entries(call, copy)}


def _read_only(handler: Handler, parameter: str) -> Handler:
    def refuse_catalog(call: Call) -> Payload:
        raw = call.get(parameter)
        if _is_catalog(raw):
            raise SubsonicError(
                NOT_AUTHORIZED,
                f"catalog playlist {raw!r} is read-only: copy it with"
                f" createPlaylist?playlistId={raw} and change the copy",
            )
        result = handler(call)
        assert isinstance(result, dict)
        return result

    return refuse_catalog


ENDPOINTS: dict[str, Handler] = {
    "getPlaylists": get_playlists,
    "getPlaylist": get_playlist,
    "createPlaylist": create_playlist,
    "updatePlaylist": _read_only(own.update_playlist, "playlistId"),
    "deletePlaylist": _read_only(own.delete_playlist, "id"),
}
