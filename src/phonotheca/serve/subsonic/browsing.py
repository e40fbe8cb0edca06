"""Browsing: music folders, indexes, directories (folder style) and ID3 artists/albums/songs.

The archive is one music folder. The folder-style calls (``getIndexes``,
``getMusicDirectory``) present the same tree as the ID3 ones: artist -> albums -> songs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from phonotheca.serve.subsonic import items
from phonotheca.serve.subsonic.call import Call, Handler, expect_id, split_id
from phonotheca.serve.subsonic.envelope import NOT_FOUND, Payload, SubsonicError

IGNORED_ARTICLES = ("The", "El", "La", "Los", "Las", "Le", "Les", "Die", "Der", "Das")
MUSIC_FOLDER_ID = 1


def catalog_created(call: Call) -> str:
    """When the catalog was last written (ISO 8601): stands in for albums' ``created``."""
    try:
        mtime = call.ctx.catalog_path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def starred(call: Call, kind: str, public_ids: Sequence[str] | None) -> dict[str, str]:
    """The caller's stars of a kind: among ``public_ids``, or all of them (None)."""
    if call.user is None or (public_ids is not None and not public_ids):
        return {}
    return call.state.starred(call.user.id, kind, public_ids)


def song_items(call: Call, track_ids: Sequence[int]) -> list[Payload]:
    """Songs with the caller's stars (looked up by the public ids of the songs found)."""
    return items.songs(call.conn, track_ids, lambda pids: starred(call, "track", pids))


def album_items(call: Call, album_ids: Sequence[int]) -> list[Payload]:
    if not album_ids:
        return []  # without the catalog's stat: searches for songs only ask for none
    return items.albums(
        call.conn, album_ids, catalog_created(call), lambda pids: starred(call, "album", pids)
    )


def artist_items(call: Call, artist_ids: Sequence[int]) -> list[Payload]:
    if not artist_ids:
        return []
    return items.artists(call.conn, artist_ids, lambda pids: starred(call, "artist", pids))


def _rowid(call: Call, table: str, public_id: str, what: str) -> int:
    rowid = items.rowid_of(call.conn, table, public_id)
    if rowid is None:
        raise SubsonicError(NOT_FOUND, f"no {what} with id {public_id!r} in this catalog")
    return rowid


# -- folders and indexes --------------------------------------------------------------------


def get_music_folders(call: Call) -> Payload:
    return {
        "musicFolders": {"musicFolder": [{"id": MUSIC_FOLDER_ID, "name": call.ctx.settings.name}]}
    }


def _album_artists(call: Call) -> list[tuple[str, str, int]]:
    """(public id, name, album count) of every artist credited on an album, sorted."""
    rows = call.conn.execute(
        "SELECT ar.public_id, ar.name, count(*) FROM album_artists aa"
        " JOIN artists ar ON ar.id = aa.artist_id GROUP BY ar.id"
    ).fetchall()
    rows.sort(key=lambda r: (items.sort_key(r[1], IGNORED_ARTICLES), r[0]))
    return rows


def _index(call: Call) -> list[Payload]:
    stars = starred(call, "artist", None)
    groups: dict[str, list[Payload]] = {}
    for pid, name, count in _album_artists(call):
        key = items.sort_key(name, IGNORED_ARTICLES)[:1].upper()
        letter = key if key.isalpha() else "#"
        groups.setdefault(letter, []).append(
            {"id": f"ar-{pid}", "name": name, "albumCount": count, "starred": stars.get(pid)}
        )
    return [{"name": letter, "artist": groups[letter]} for letter in sorted(groups)]


def get_indexes(call: Call) -> Payload:
    """Artists by letter; nothing new (no ``index``) when ``ifModifiedSince`` is recent."""
    try:
        modified = int(call.ctx.catalog_path.stat().st_mtime * 1000)
    except OSError:
        modified = 0
    since = call.integer("ifModifiedSince", 0) or 0
    return {
        "indexes": {
            "lastModified": modified,
            "ignoredArticles": " ".join(IGNORED_ARTICLES),
            "index": _index(call) if since < modified else [],
        }
    }


def get_artists(call: Call) -> Payload:
    return {"artists": {"ignoredArticles": " ".join(IGNORED_ARTICLES), "index": _index(call)}}


def get_music_directory(call: Call) -> Payload:
    kind, public_id = split_id(call.require("id"))
    conn = call.conn
    if kind == "artist":
        artist_id = _rowid(call, "artists", public_id, "artist")
        name = conn.execute("SELECT name FROM artists WHERE id = ?", (artist_id,)).fetchone()[0]
        children = []
        keys = ("year", "genre", "coverArt", "duration", "starred")
        for album in album_items(call, items.artist_album_ids(conn, artist_id)):
            child = items.album_as_child(album, keys, parent=f"ar-{public_id}")
            child.update(albumId=album["id"], artistId=album["artistId"])
            children.append(child)
        return {"directory": {"id": f"ar-{public_id}", "name": name, "child": children}}
    if kind == "album":
        album_id = _rowid(call, "albums", public_id, "album")
        album = album_items(call, [album_id])[0]
        return {
            "directory": {
                "id": album["id"],
                "parent": album["artistId"],
                "name": album["name"],
                "starred": album["starred"],
                "child": song_items(call, items.album_track_ids(conn, album_id)),
            }
        }
    raise SubsonicError(NOT_FOUND, f"{call.require('id')!r} is a song, not a directory")


# -- ID3 --------------------------------------------------------------------------------------


def get_artist(call: Call) -> Payload:
    public_id = expect_id(call.require("id"), "artist")
    artist_id = _rowid(call, "artists", public_id, "artist")
    artist = artist_items(call, [artist_id])[0]
    album_list = album_items(call, items.artist_album_ids(call.conn, artist_id))
    artist["albumCount"] = len(album_list)
    artist["album"] = album_list
    return {"artist": artist}


def get_album(call: Call) -> Payload:
    public_id = expect_id(call.require("id"), "album")
    album_id = _rowid(call, "albums", public_id, "album")
    album = album_items(call, [album_id])[0]
    album["song"] = song_items(call, items.album_track_ids(call.conn, album_id))
    return {"album": album}


def get_song(call: Call) -> Payload:
    public_id = expect_id(call.require("id"), "track")
    return {"song": song_items(call, [_rowid(call, "tracks", public_id, "song")])[0]}


def get_genres(call: Call) -> Payload:
    # A track's genres are its own, or its album's when it has none.
    rows = call.conn.execute(
        """SELECT g.name,
                  (SELECT count(*) FROM track_genres tg WHERE tg.genre_id = g.id)
                  + (SELECT count(*) FROM album_genres ag JOIN tracks t ON t.album_id = ag.album_id
                     WHERE ag.genre_id = g.id
                       AND NOT EXISTS (SELECT 1 FROM track_genres x WHERE x.track_id = t.id)),
                  (SELECT count(*) FROM album_genres ag WHERE ag.genre_id = g.id)
           FROM genres g ORDER BY g.name"""
    ).fetchall()
    return {
        "genres": {
            "genre": [{"songCount": s, "albumCount": a, "value": name} for name, s, a in rows]
        }
    }


ENDPOINTS: dict[str, Handler] = {
    "getMusicFolders": get_music_folders,
    "getIndexes": get_indexes,
    "getArtists": get_artists,
    "getMusicDirectory": get_music_directory,
    "getArtist": get_artist,
    "getAlbum": get_album,
    "getSong": get_song,
    "getGenres": get_genres,
}
