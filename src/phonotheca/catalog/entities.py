"""Write a batch's artists and albums (with their credits, aliases, genres, images and
external ids) into the catalog: the half of :mod:`phonotheca.catalog.load` that works
per entity rather than per track.

Artists and albums are about a tenth of an import's rows. Each goes through a bounded
cache of fingerprints: an unchanged entity costs nothing, a changed one is rewritten with
its links, and a new one is inserted. Whatever a change does to the search index (a
retitled album, new artist aliases) is undone first: the tracks concerned leave the
index and wait in ``temp.reindex`` for the loader to add them again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from phonotheca.catalog.batch import AlbumRow, ArtistRow, album_links, album_values
from phonotheca.catalog.search import unindex_tracks

# Caches are cleared when they pass this many entries: memory stays bounded whatever the
# catalog size, and input is usually grouped (an album's tracks are neighbours). A new
# album or artist is looked up in the catalog whether cached or not, so a larger cache
# saves only the lookups of ids seen again after a clear; 400,000 entries cost ~150 MB
# of the writer's memory by 10 M tracks for no measurable speed.
CACHE_LIMIT = 50_000

ALBUM_ID = "(SELECT id FROM albums WHERE public_id = ?)"
ARTIST_ID = "(SELECT id FROM artists WHERE public_id = ?)"
_ALBUM_OF_C1 = "(SELECT id FROM albums WHERE public_id = c1)"
ARTIST_OF_C3 = "(SELECT id FROM artists WHERE public_id = c3)"


def lookup(
    conn: sqlite3.Connection, table: str, columns: str, public_ids: Sequence[str]
) -> list[tuple[object, ...]]:
    """Rows of ``table`` for the given public ids, one query per 20k ids."""
    out: list[tuple[object, ...]] = []
    for i in range(0, len(public_ids), 20_000):
        chunk = json.dumps(public_ids[i : i + 20_000])
        out += conn.execute(
            f"SELECT public_id, {columns} FROM {table}"
            " WHERE public_id IN (SELECT value FROM json_each(?))",
            (chunk,),
        ).fetchall()
    return out


class EntityWriter:
    """Writes artists, albums and genres into one catalog connection; the caller owns
    the transaction."""

    def __init__(self, conn: sqlite3.Connection, *, maintain_search: bool) -> None:
        self.conn = conn
        self.maintain_search = maintain_search
        self._artists: dict[str, int] = {}  # public id -> fingerprint last written
        self._albums: dict[str, int] = {}
        self._genres: dict[str, int] = {}

    def write(
        self,
        artists: dict[str, tuple[int, ArtistRow]],
        albums: dict[str, tuple[int, AlbumRow]],
        stage: str,
    ) -> None:
        """Write a batch's artists, then its albums (which credit them). ``stage``
        prefixes the tables of the batch's attached image (the loader's), whose
        ``albums`` and ``album_*`` tables hold ``albums`` as rows
        (:func:`~phonotheca.catalog.batch.stage_rows`)."""
        for cache in (self._artists, self._albums, self._genres):
            if len(cache) > CACHE_LIMIT:
                cache.clear()
        self._write_artists(artists)
        self._write_albums(albums, stage)

    def _split(
        self, table: str, cache: dict[str, int], rows: dict[str, tuple[int, object]]
    ) -> tuple[list[str], list[str]]:
        """Public ids to (insert, update): unknown ids are looked up first."""
        unknown = [pid for pid in rows if pid not in cache]
        for pid, fp in lookup(self.conn, table, "fingerprint", unknown):
            cache[str(pid)] = int(fp or 0)  # type: ignore[call-overload]
        new: list[str] = []
        changed: list[str] = []
        for pid, (fp, _) in rows.items():
            old = cache.get(pid)
            if old is None:
                new.append(pid)
            elif old != fp:
                changed.append(pid)
            cache[pid] = fp
        return new, changed

    def _write_artists(self, artists: dict[str, tuple[int, ArtistRow]]) -> None:
        if not artists:
            return
        new, changed = self._split("artists", self._artists, artists)  # type: ignore[arg-type]
        if changed and self.maintain_search:
            self._before_artist_change(changed, artists)
        values = [
            (a.name, a.sort_name, a.disambiguation, fp, pid)
            for pid in (*new, *changed)
            for fp, a in (artists[pid],)
        ]
        if new:
            self.conn.executemany(
                "INSERT INTO artists(name, sort_name, disambiguation, fingerprint, public_id)"
                " VALUES (?,?,?,?,?)",
                values[: len(new)],
            )
        if changed:
            self.conn.executemany(
                "UPDATE artists SET name=?, sort_name=?, disambiguation=?, fingerprint=?"
                " WHERE public_id=?",
                values[len(new) :],
            )
            self.conn.executemany(
                f"DELETE FROM artist_aliases WHERE artist_id = {ARTIST_ID}",
                [(p,) for p in changed],
            )
        aliases = [
            (pid, name, sort_name, locale)
            for pid in (*new, *changed)
            for name, sort_name, locale in artists[pid][1].aliases
        ]
        if aliases:
            self.conn.executemany(
                "INSERT OR REPLACE INTO artist_aliases(artist_id, name, sort_name, locale)"
                f" VALUES ({ARTIST_ID},?,?,?)",
                aliases,
            )

    def _before_artist_change(
        self, changed: list[str], artists: dict[str, tuple[int, ArtistRow]]
    ) -> None:
        """Tracks of an artist whose aliases change leave the search index until re-added:
        the index holds the aliases of each track's credited artists."""
        old: dict[str, set[str]] = {pid: set() for pid in changed}
        for i in range(0, len(changed), 20_000):
            for pid, name in self.conn.execute(
                "SELECT ar.public_id, aa.name FROM artists ar"
                " JOIN artist_aliases aa ON aa.artist_id = ar.id"
                " WHERE ar.public_id IN (SELECT value FROM json_each(?))",
                (json.dumps(changed[i : i + 20_000]),),
            ):
                old[pid].add(name)
        realiased = [p for p in changed if old[p] != {a[0] for a in artists[p][1].aliases}]
        if realiased:
            self._set_aside(
                "t.id IN (SELECT ta.track_id FROM track_artists ta"
                " JOIN artists ar ON ar.id = ta.artist_id"
                " WHERE ar.public_id IN (SELECT value FROM json_each(?)))",
                realiased,
            )

    def genre_ids(self, names: Iterable[str]) -> dict[str, int]:
        # In order of first use, not a set's (per-process hash) order: the same records
        # give the same genre ids, so a metadata release need not ship them.
        missing = list(dict.fromkeys(n for n in names if n not in self._genres))
        if missing:
            self.conn.executemany(
                "INSERT OR IGNORE INTO genres(name) VALUES (?)", [(n,) for n in missing]
            )
            # One lookup per new name (genres are few): any text, NUL included, is bound
            # as it is, where a JSON list would stop at the first NUL.
            for name in missing:
                row = self.conn.execute("SELECT id FROM genres WHERE name = ?", (name,)).fetchone()
                self._genres[name] = row[0]
        return self._genres

    def _write_albums(self, albums: dict[str, tuple[int, AlbumRow]], stage: str) -> None:
        if not albums:
            return
        new, changed = self._split("albums", self._albums, albums)  # type: ignore[arg-type]
        if changed and self.maintain_search:
            self._before_album_change(changed, albums)
        # New albums move from the image set-wise; changed ones are rewritten with their
        # links, bound here. Image ids are numbered in this order: new, then changed.
        every = len(new) == len(albums)
        if new:
            self._insert_albums(stage, new, every)
        if changed:
            self.conn.executemany(
                "UPDATE albums SET title=?, artist_credit=?, album_type=?, release_date=?,"
                " release_date_precision=?, label=?, upc=?, total_tracks=?, total_discs=?,"
                " markets=?, status=?, packaging=?, country=?, original_release_date=?,"
                " original_release_date_precision=?, catalog_number=?, disambiguation=?,"
                " cover_art_count=?, fingerprint=? WHERE public_id=?",
                [album_values(pid, *albums[pid]) for pid in changed],
            )
            ids = [(p,) for p in changed]
            for table in ("album_artists", "album_genres"):
                self.conn.executemany(f"DELETE FROM {table} WHERE album_id = {ALBUM_ID}", ids)
            # Cover art found in audio files (blobs) is the archive's, not the record's.
            self.conn.executemany(
                f"DELETE FROM images WHERE album_id = {ALBUM_ID} AND blob_sha256 IS NULL", ids
            )
            self.conn.executemany(
                f"DELETE FROM external_ids WHERE entity='album' AND entity_id = {ALBUM_ID}", ids
            )
        self.genre_ids(g for p in (*new, *changed) for g in albums[p][1].genres)
        if new:
            self._insert_album_links(stage, new, every)
        if changed:
            credits, genres, images, ext = album_links(changed, albums)
            genre_ids = self._genres
            for table, rows, width in (
                ("album_credits", credits, 5),
                ("album_genres", [(p, genre_ids[g]) for p, g in genres], 2),
                ("album_images", images, 6),
                ("album_external_ids", ext, 3),
            ):
                self._insert_staged(_ALBUM_LINKS[table], rows, width)
            self._renumber_blob_images(changed)

    def _insert_albums(self, stage: str, pids: list[str], every: bool) -> None:
        """Insert albums ``pids`` (``every``: all of the image's) from the image, in its
        order."""
        where, params = _only(pids, every, "c20")
        columns = ", ".join(f"c{i}" for i in range(1, 21))
        self.conn.execute(
            f"INSERT INTO albums({_ALBUM_COLUMNS}) SELECT {columns} FROM {stage}albums"
            f" {where} ORDER BY rowid",
            params,
        )

    def _insert_album_links(self, stage: str, pids: list[str], every: bool) -> None:
        """The links of albums ``pids`` from the image, as :meth:`_insert_staged` would
        insert them (genres by name here: their ids exist, see :meth:`genre_ids`)."""
        where, params = _only(pids, every, "c1")
        for table, (insert, select) in _ALBUM_LINKS.items():
            if table == "album_genres":
                select = f"{_ALBUM_OF_C1}, (SELECT id FROM genres WHERE name = c2)"
            self.conn.execute(
                f"{insert} SELECT {select} FROM {stage}{table} {where} ORDER BY rowid", params
            )

    def _renumber_blob_images(self, albums: list[str]) -> None:
        """Put the albums' cover art from files after the record's images again, in the
        order it was linked (by rowid: positions change as the statement runs)."""
        self.conn.execute(
            "UPDATE images SET position ="
            " (SELECT count(*) FROM images s"
            "  WHERE s.album_id = images.album_id AND s.blob_sha256 IS NULL)"
            " + (SELECT count(*) FROM images b WHERE b.album_id = images.album_id"
            "    AND b.blob_sha256 IS NOT NULL AND b.id < images.id)"
            " WHERE blob_sha256 IS NOT NULL AND album_id IN"
            " (SELECT id FROM albums WHERE public_id IN (SELECT value FROM json_each(?)))",
            (json.dumps(albums),),
        )

    def _before_album_change(
        self, changed: list[str], albums: dict[str, tuple[int, AlbumRow]]
    ) -> None:
        """Tracks of an album whose title changes leave the search index until re-added."""
        retitled = [
            str(pid)
            for pid, title in lookup(self.conn, "albums", "title", changed)
            if title != albums[str(pid)][1].title
        ]
        if retitled:
            self._set_aside(
                "t.album_id IN (SELECT id FROM albums WHERE public_id IN"
                " (SELECT value FROM json_each(?)))",
                retitled,
            )

    def _set_aside(self, where: str, public_ids: list[str]) -> None:
        """Take the tracks ``where`` selects (its one parameter: the JSON list of
        ``public_ids``) out of the search index, into ``temp.reindex`` until the loader
        adds them again."""
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS reindex(track_id INTEGER PRIMARY KEY)")
        params = (json.dumps(public_ids),)
        unindex_tracks(self.conn, where, params)
        self.conn.execute(
            f"INSERT OR IGNORE INTO temp.reindex SELECT t.id FROM tracks t WHERE {where}", params
        )

    def _insert_staged(
        self, statement: tuple[str, str], rows: Sequence[tuple[object, ...]], width: int
    ) -> None:
        """``insert SELECT select`` over ``rows``, staged in a temporary table whose
        columns are ``c1`` .. ``c<width>``, in order (so later rows meet earlier ones as
        they would row by row).

        Row by row, every row of a WITHOUT ROWID table is a statement that opens its
        cursors and seeks from the root; an ``executemany`` into a plain temporary table
        and one set-wise insert cost half as much (850k external ids: 2.8 s, 1.4 s).
        """
        if not rows:
            return
        insert, select = statement
        table = f"temp.stage{width}"
        columns = ", ".join(f"c{i}" for i in range(1, width + 1))
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage{width}({columns})")
        self.conn.execute(f"DELETE FROM {table}")
        self.conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
        self.conn.execute(f"{insert} SELECT {select} FROM {table} ORDER BY rowid")


_ALBUM_COLUMNS = (
    "title, artist_credit, album_type, release_date, release_date_precision, label, upc,"
    " total_tracks, total_discs, markets, status, packaging, country, original_release_date,"
    " original_release_date_precision, catalog_number, disambiguation, cover_art_count,"
    " fingerprint, public_id"
)
# The statements that insert an album's links from rows c1..cN of a stage table (the
# batch image's, named here, or a temporary one with the same columns).
_ALBUM_LINKS = {
    "album_credits": (
        "INSERT INTO album_artists(album_id, position, artist_id, credited_as, join_phrase)",
        f"{_ALBUM_OF_C1}, c2, {ARTIST_OF_C3}, c4, c5",
    ),
    "album_genres": (
        "INSERT OR IGNORE INTO album_genres(album_id, genre_id)",
        f"{_ALBUM_OF_C1}, c2",
    ),
    "album_images": (
        "INSERT INTO images(album_id, position, kind, url, width, height)",
        f"{_ALBUM_OF_C1}, c2, c3, c4, c5, c6",
    ),
    "album_external_ids": (
        "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)",
        f"'album', {_ALBUM_OF_C1}, c2, c3",
    ),
}


def _only(pids: list[str], every: bool, column: str) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause keeping the rows of a stage table whose ``column`` is one of
    ``pids`` (none when ``every``), and its parameters."""
    if every:
        return "", ()
    return f"WHERE {column} IN (SELECT value FROM json_each(?))", (json.dumps(pids),)
