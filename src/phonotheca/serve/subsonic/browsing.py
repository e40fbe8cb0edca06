"""Browsing: music folders, indexes, directories (folder style) and ID3 artists/albums/songs.

Two music folders (:mod:`.folders`): the tracks this server plays and the whole catalog.
The folder-style calls (``getIndexes``, ``getMusicDirectory``) present the same tree as
the ID3 ones: artist -> albums -> songs. Artist indexes, an artist's albums and genre
counts come from the library file (:mod:`phonotheca.serve.library`): an artist's
``albumCount`` is the length of the list ``getArtist`` returns, a genre's counts those of
``getSongsByGenre`` and ``getAlbumList2?type=byGenre``, in the same music folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence

from starlette.responses import Response

from phonotheca.catalog import library as lib
from phonotheca.catalog.library import CATALOG, IGNORED_ARTICLES, PLAYABLE
from phonotheca.serve.budget import renew as renew_budget
from phonotheca.serve.library import FOLDERS
from phonotheca.serve.subsonic import items, prepared
from phonotheca.serve.subsonic.call import Call, Handler, expect_id, split_id
from phonotheca.serve.subsonic.envelope import NOT_FOUND, Payload, SubsonicError
from phonotheca.serve.subsonic.folders import library_of, server_library

PREPARED_ALBUMS = 100
"""An artist with this many albums or more: its ``getArtist`` answer is prepared."""
BATCH = 100
"""Albums read per query budget when an answer lists many."""


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
    """Artists, each with the number of albums ``getArtist`` lists for it (the call's
    music folder; see :func:`artist_library`)."""
    if not artist_ids:
        return []
    shelf = server_library(call)
    counts = shelf.album_counts(library_of(call), artist_ids)
    if call.get("musicFolderId") is None and library_of(call) == PLAYABLE:
        missing = [a for a in artist_ids if not counts.get(a)]
        counts.update(shelf.album_counts(CATALOG, missing))
    return items.artists(call.conn, artist_ids, counts, lambda pids: starred(call, "artist", pids))


def _rowid(call: Call, table: str, public_id: str, what: str) -> int:
    rowid = items.rowid_of(call.conn, table, public_id)
    if rowid is None:
        raise SubsonicError(NOT_FOUND, f"no {what} with id {public_id!r} in this catalog")
    return rowid


# -- folders and indexes --------------------------------------------------------------------


def get_music_folders(call: Call) -> Payload:
    return {"musicFolders": {"musicFolder": [{"id": i, "name": name} for i, name in FOLDERS]}}


def _index(call: Call) -> list[Payload]:
    """The artist index of the call's music folder, read in index order (one range)."""
    stars = starred(call, "artist", None)
    groups: dict[str, list[Payload]] = {}
    rows = (
        server_library(call)
        .reader()
        .execute(
            "SELECT ar.public_id, ar.name, o.letter, o.albums FROM artist_order o"
            " JOIN c.artists ar ON ar.id = o.artist_id WHERE o.lib = ? AND o.kind = 0"
            " ORDER BY o.letter, o.sortname, o.public_id, o.artist_id",
            (library_of(call),),
        )
    )
    for pid, name, letter, count in rows:
        groups.setdefault(letter, []).append(
            {"id": f"ar-{pid}", "name": name, "albumCount": count, "starred": stars.get(pid)}
        )
    return [{"name": letter, "artist": artist} for letter, artist in groups.items()]


def _stars_digest(call: Call) -> str:
    stars = starred(call, "artist", None)
    return hashlib.sha256(json.dumps(sorted(stars.items())).encode()).hexdigest()


def get_indexes(call: Call) -> Response:
    """Artists by letter; nothing new (no ``index``) when ``ifModifiedSince`` is recent.
    Prepared like :func:`get_artists`."""
    try:
        modified = int(call.ctx.catalog_path.stat().st_mtime * 1000)
    except OSError:
        modified = 0
    since = call.integer("ifModifiedSince", 0) or 0
    fresh = since < modified
    return prepared.respond(
        call,
        "getIndexes",
        f"{_stars_digest(call)}:{modified}:{fresh}",
        lambda: {
            "indexes": {
                "lastModified": modified,
                "ignoredArticles": " ".join(IGNORED_ARTICLES),
                "index": _index(call) if fresh else [],
            }
        },
    )


def get_artists(call: Call) -> Response:
    """The artist index, prepared once per library file, music folder, format and the
    caller's starred artists, sent compressed with an ETag (a repeat answers 304)."""
    return prepared.respond(
        call,
        "getArtists",
        _stars_digest(call),
        lambda: {"artists": {"ignoredArticles": " ".join(IGNORED_ARTICLES), "index": _index(call)}},
    )


def artist_library(call: Call, artist_id: int) -> int:
    """The music folder an artist's albums are listed from: the call's; without
    ``musicFolderId`` (``getArtist`` has none) the default one, or the whole catalog for
    an artist with no album there (an app browsing the whole catalog opened it)."""
    library = library_of(call)
    if (
        call.get("musicFolderId") is None
        and library == PLAYABLE
        and not server_library(call).album_counts(PLAYABLE, [artist_id])[artist_id]
    ):
        return CATALOG
    return library


def _artist_answer(
    call: Call, method: str, artist_id: int, payload: Callable[[int], Payload]
) -> Payload | Response:
    """``payload(library)`` of an artist's albums in its music folder
    (:func:`artist_library`); for an artist with :data:`PREPARED_ALBUMS` albums or more,
    prepared like :func:`get_artists` (compressed, with an ETag)."""
    library = artist_library(call, artist_id)
    if server_library(call).album_counts(library, [artist_id])[artist_id] < PREPARED_ALBUMS:
        return payload(library)
    # The answer shows the caller's stars of the artist and of its albums.
    stars = hashlib.sha256(
        json.dumps(
            [sorted(starred(call, kind, None).items()) for kind in ("artist", "album")]
        ).encode()
    ).hexdigest()
    return prepared.respond(
        call,
        method,
        f"{artist_id}:{library}:{catalog_created(call)}:{stars}",
        lambda: payload(library),
    )


def get_music_directory(call: Call) -> Payload | Response:
    kind, public_id = split_id(call.require("id"))
    conn = call.conn
    if kind == "artist":
        artist_id = _rowid(call, "artists", public_id, "artist")

        def directory(library: int) -> Payload:
            name = conn.execute("SELECT name FROM artists WHERE id = ?", (artist_id,)).fetchone()
            children = []
            keys = ("year", "genre", "coverArt", "duration", "starred")
            ids = server_library(call).artist_albums(library, artist_id)
            for album in albums_in_batches(call, ids):
                child = items.album_as_child(album, keys, parent=f"ar-{public_id}")
                child.update(albumId=album["id"], artistId=album["artistId"])
                children.append(child)
            return {"directory": {"id": f"ar-{public_id}", "name": name[0], "child": children}}

        return _artist_answer(call, "getMusicDirectory", artist_id, directory)
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


def albums_in_batches(call: Call, album_ids: Sequence[int]) -> list[Payload]:
    """:func:`album_items` of a list of any length, :data:`BATCH` albums at a time, each
    batch with a fresh query budget: the cost of the answer is in proportion to its
    length (which the API leaves unbounded), while a runaway query is still stopped."""
    out: list[Payload] = []
    for start in range(0, len(album_ids), BATCH):
        renew_budget()
        out.extend(album_items(call, album_ids[start : start + BATCH]))
    return out


def get_artist(call: Call) -> Payload | Response:
    """An artist and all its albums, read in batches (:func:`albums_in_batches`); an
    artist with many albums is prepared (:func:`_artist_answer`)."""
    public_id = expect_id(call.require("id"), "artist")
    artist_id = _rowid(call, "artists", public_id, "artist")

    def payload(library: int) -> Payload:
        artist = artist_items(call, [artist_id])[0]
        ids = server_library(call).artist_albums(library, artist_id)
        album_list = albums_in_batches(call, ids)
        artist["albumCount"] = len(album_list)
        artist["album"] = album_list
        return {"artist": artist}

    return _artist_answer(call, "getArtist", artist_id, payload)


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
    """Every genre with the lengths of its song and album lists in the music folder."""
    reader = server_library(call).reader()
    library = library_of(call)
    counts = {
        (what, key): n
        for what, key, n in reader.execute(
            "SELECT what, key, n FROM ranges WHERE lib = ? AND what = ? AND kind = ?"
            " UNION ALL SELECT what, key, n FROM ranges WHERE lib = ? AND what = ? AND kind = ?",
            (library, lib.SONG, lib.SONGS_BY_GENRE, library, lib.ALBUM, lib.ALBUMS_BY_GENRE),
        )
    }
    genres = call.conn.execute("SELECT id, name FROM genres ORDER BY name").fetchall()
    return {
        "genres": {
            "genre": [
                {
                    "songCount": counts.get((lib.SONG, gid), 0),
                    "albumCount": counts.get((lib.ALBUM, gid), 0),
                    "value": name,
                }
                for gid, name in genres
            ]
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
