"""Write :class:`~phonotheca.catalog.batch.Batch` rows into the catalog, set-wise.

The loader resolves public ids to integer rowids with bounded caches backed by the
unique indexes, inserts optimistically (a batch of new tracks is one ``executemany``),
and falls back to per-id upserts only for the ids that already exist. Callers own
the transaction, so a batch and the import's progress commit together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from phonotheca.catalog.batch import AlbumRow, ArtistRow, Batch, Credit, ExternalId, TrackRow
from phonotheca.catalog.batch import fingerprint as row_fingerprint

# Caches are cleared when they pass this many entries: memory stays bounded whatever the
# catalog size, and input is usually grouped (an album's tracks are neighbours).
CACHE_LIMIT = 400_000


@dataclass
class WriteResult:
    loaded: int = 0
    """Records written or merged into the catalog."""
    superseded: int = 0
    """Records loaded but older (``updated_at``) than what the catalog holds for their id."""


def _lookup(
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


def _newer_or_same(new: str | None, old: str | None) -> bool:
    """The replacement rule: a record replaces the stored one unless both are dated
    and the stored one is newer. Dates are RFC 3339 UTC strings, which sort as text."""
    return new is None or old is None or new >= old


class Loader:
    """Writes batches into one catalog connection."""

    def __init__(self, conn: sqlite3.Connection, dict_id: int | None = None) -> None:
        self.conn = conn
        self.dict_id = dict_id
        self._artists: dict[str, tuple[int, int]] = {}  # public id -> (rowid, fingerprint)
        self._albums: dict[str, tuple[int, int]] = {}
        self._genres: dict[str, int] = {}

    # -- public -------------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
        """Write one batch; the caller commits."""
        for cache in (self._artists, self._albums):
            if len(cache) > CACHE_LIMIT:
                cache.clear()
        if len(self._genres) > CACHE_LIMIT:
            self._genres.clear()
        self._write_artists(batch.artists)
        self._write_albums(batch.albums)
        return self._write_tracks(batch.tracks, batch.records)

    # -- artists and albums ------------------------------------------------------------

    def _resolve(
        self, table: str, cache: dict[str, tuple[int, int]], rows: dict[str, int]
    ) -> tuple[list[str], list[str]]:
        """Split public ids (with their fingerprints) into (new, changed); fill the cache."""
        unknown = [pid for pid in rows if pid not in cache]
        for pid, rowid, fp in _lookup(self.conn, table, "id, fingerprint", unknown):
            cache[str(pid)] = (int(rowid), int(fp or 0))  # type: ignore[call-overload]
        new: list[str] = []
        changed: list[str] = []
        for pid, fp in rows.items():
            hit = cache.get(pid)
            if hit is None:
                new.append(pid)
            elif hit[1] != fp:
                changed.append(pid)
        return new, changed

    def _next_id(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])

    def _write_artists(self, artists: dict[str, ArtistRow]) -> None:
        if not artists:
            return
        fps = {pid: row_fingerprint(row) for pid, row in artists.items()}
        new, changed = self._resolve("artists", self._artists, fps)
        next_id = self._next_id("artists")
        for pid in new:
            self._artists[pid] = (next_id, fps[pid])
            next_id += 1
        ids = self._artists
        if new:
            self.conn.executemany(
                "INSERT INTO artists(id, public_id, name, sort_name, disambiguation, fingerprint)"
                " VALUES (?,?,?,?,?,?)",
                [
                    (ids[p][0], p, a.name, a.sort_name, a.disambiguation, fps[p])
                    for p in new
                    for a in (artists[p],)
                ],
            )
        if changed:
            self.conn.executemany(
                "UPDATE artists SET name=?, sort_name=?, disambiguation=?, fingerprint=?"
                " WHERE id=?",
                [
                    (a.name, a.sort_name, a.disambiguation, fps[p], ids[p][0])
                    for p in changed
                    for a in (artists[p],)
                ],
            )
            for p in changed:
                ids[p] = (ids[p][0], fps[p])
            self.conn.executemany(
                "DELETE FROM artist_aliases WHERE artist_id=?", [(ids[p][0],) for p in changed]
            )
        aliases = [
            (ids[p][0], name, sort_name, locale)
            for p in (*new, *changed)
            for name, sort_name, locale in artists[p].aliases
        ]
        if aliases:
            self.conn.executemany(
                "INSERT OR REPLACE INTO artist_aliases(artist_id, name, sort_name, locale)"
                " VALUES (?,?,?,?)",
                aliases,
            )

    def _genre_ids(self, names: Iterable[str]) -> dict[str, int]:
        missing = [n for n in set(names) if n not in self._genres]
        if missing:
            self.conn.executemany(
                "INSERT OR IGNORE INTO genres(name) VALUES (?)", [(n,) for n in missing]
            )
            for i in range(0, len(missing), 20_000):
                for name, gid in self.conn.execute(
                    "SELECT name, id FROM genres WHERE name IN (SELECT value FROM json_each(?))",
                    (json.dumps(missing[i : i + 20_000]),),
                ):
                    self._genres[name] = gid
        return self._genres

    def _credit_rows(self, owner: int, credits: tuple[Credit, ...]) -> list[tuple[object, ...]]:
        return [
            (owner, pos, self._artists[aid][0], credited_as, join)
            for pos, (aid, credited_as, join) in enumerate(credits)
        ]

    def _write_albums(self, albums: dict[str, AlbumRow]) -> None:
        if not albums:
            return
        fps = {pid: row_fingerprint(row) for pid, row in albums.items()}
        new, changed = self._resolve("albums", self._albums, fps)
        next_id = self._next_id("albums")
        for pid in new:
            self._albums[pid] = (next_id, fps[pid])
            next_id += 1
        ids = self._albums
        for pid in changed:
            ids[pid] = (ids[pid][0], fps[pid])
        touched = [*new, *changed]
        if not touched:
            return
        values = [
            (
                a.title,
                a.artist_credit,
                a.album_type,
                a.release_date,
                a.release_date_precision,
                a.label,
                a.upc,
                a.total_tracks,
                a.total_discs,
                a.markets,
                fps[p],
                ids[p][0],
            )
            for p in touched
            for a in (albums[p],)
        ]
        n_new = len(new)
        if new:
            self.conn.executemany(
                "INSERT INTO albums(title, artist_credit, album_type, release_date,"
                " release_date_precision, label, upc, total_tracks, total_discs, markets,"
                " fingerprint, id, public_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(*v, p) for v, p in zip(values[:n_new], new, strict=True)],
            )
        if changed:
            self.conn.executemany(
                "UPDATE albums SET title=?, artist_credit=?, album_type=?, release_date=?,"
                " release_date_precision=?, label=?, upc=?, total_tracks=?, total_discs=?,"
                " markets=?, fingerprint=? WHERE id=?",
                values[n_new:],
            )
            changed_ids = [(ids[p][0],) for p in changed]
            for table in ("album_artists", "album_genres", "images"):
                self.conn.executemany(f"DELETE FROM {table} WHERE album_id=?", changed_ids)
            self.conn.executemany(
                "DELETE FROM external_ids WHERE entity='album' AND entity_id=?", changed_ids
            )
        credit_rows: list[tuple[object, ...]] = []
        genre_rows: list[tuple[int, int]] = []
        image_rows: list[tuple[object, ...]] = []
        ext_rows: list[tuple[object, ...]] = []
        genre_ids = self._genre_ids(g for p in touched for g in albums[p].genres)
        for p in touched:
            a = albums[p]
            rowid = ids[p][0]
            credit_rows += self._credit_rows(rowid, a.credits)
            genre_rows += [(rowid, genre_ids[g]) for g in dict.fromkeys(a.genres)]
            image_rows += [(rowid, pos, *img) for pos, img in enumerate(a.images)]
            ext_rows += [("album", rowid, s, v) for s, v in a.external_ids]
        self.conn.executemany(
            "INSERT INTO album_artists(album_id, position, artist_id, credited_as, join_phrase)"
            " VALUES (?,?,?,?,?)",
            credit_rows,
        )
        self.conn.executemany(
            "INSERT INTO album_genres(album_id, genre_id) VALUES (?,?)", genre_rows
        )
        self.conn.executemany(
            "INSERT INTO images(album_id, position, kind, url, width, height)"
            " VALUES (?,?,?,?,?,?)",
            image_rows,
        )
        self._insert_external_ids(ext_rows)

    def _insert_external_ids(self, rows: list[tuple[object, ...]]) -> None:
        if rows:
            self.conn.executemany(
                "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
                " VALUES (?,?,?,?)",
                rows,
            )

    # -- tracks -------------------------------------------------------------------------

    def _write_tracks(self, tracks: list[TrackRow], records: list[bytes]) -> WriteResult:
        result = WriteResult()
        if not tracks:
            return result
        # Within a batch the last record of an id wins (unless dated older).
        winner: dict[str, int] = {}
        for i, t in enumerate(tracks):
            prev = winner.get(t.public_id)
            if prev is not None:
                result.superseded += 1
                if not _newer_or_same(t.updated_at, tracks[prev].updated_at):
                    continue
            winner[t.public_id] = i
        order = sorted(winner.values())
        result.loaded = len(tracks)
        have_records = bool(records)
        next_id = self._next_id("tracks")
        assigned = [(next_id + k, i) for k, i in enumerate(order)]
        self.conn.execute("SAVEPOINT tracks")
        try:
            self._insert_tracks(tracks, assigned)
        except sqlite3.IntegrityError:
            # Some ids exist already: the rare path, done per id.
            self.conn.execute("ROLLBACK TO tracks")
            self.conn.execute("RELEASE tracks")
            return self._upsert_tracks(tracks, records, order, result)
        self.conn.execute("RELEASE tracks")
        self._insert_track_links(tracks, assigned)
        if have_records:
            self._put_records([(tid, records[i]) for tid, i in assigned])
        return result

    def _track_values(self, t: TrackRow) -> tuple[object, ...]:
        album = self._albums[t.album_id][0] if t.album_id is not None else None
        return (
            t.title,
            t.artist_credit,
            album,
            t.disc_number,
            t.track_number,
            t.duration_ms,
            t.isrc,
            t.isrc_valid,
            t.explicit,
            t.popularity,
            t.listens,
            t.markets,
            t.updated_at,
        )

    def _insert_tracks(self, tracks: list[TrackRow], assigned: list[tuple[int, int]]) -> None:
        self.conn.executemany(
            "INSERT INTO tracks(id, public_id, title, artist_credit, album_id, disc_number,"
            " track_number, duration_ms, isrc, isrc_valid, explicit, popularity, listens,"
            " markets, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(tid, tracks[i].public_id, *self._track_values(tracks[i])) for tid, i in assigned],
        )

    def _insert_track_links(self, tracks: list[TrackRow], assigned: list[tuple[int, int]]) -> None:
        credit_rows: list[tuple[object, ...]] = []
        genre_rows: list[tuple[int, int]] = []
        ext_rows: list[tuple[object, ...]] = []
        genre_ids = self._genre_ids(g for _, i in assigned for g in tracks[i].genres)
        for tid, i in assigned:
            t = tracks[i]
            credit_rows += self._credit_rows(tid, t.credits)
            if t.genres:
                genre_rows += [(tid, genre_ids[g]) for g in dict.fromkeys(t.genres)]
            if t.external_ids:
                ext_rows += [("track", tid, s, v) for s, v in t.external_ids]
        self.conn.executemany(
            "INSERT INTO track_artists(track_id, position, artist_id, credited_as, join_phrase)"
            " VALUES (?,?,?,?,?)",
            credit_rows,
        )
        if genre_rows:
            self.conn.executemany(
                "INSERT INTO track_genres(track_id, genre_id) VALUES (?,?)", genre_rows
            )
        self._insert_external_ids(ext_rows)

    def _put_records(self, rows: list[tuple[int, bytes]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO track_records(track_id, dict_id, data) VALUES (?,?,?)",
            [(tid, self.dict_id, data) for tid, data in rows],
        )

    def _upsert_tracks(
        self, tracks: list[TrackRow], records: list[bytes], order: list[int], result: WriteResult
    ) -> WriteResult:
        found = {
            str(pid): (int(tid), ua)  # type: ignore[call-overload]
            for pid, tid, ua in _lookup(
                self.conn, "tracks", "id, updated_at", [tracks[i].public_id for i in order]
            )
        }
        next_id = self._next_id("tracks")
        new: list[tuple[int, int]] = []
        replace: list[tuple[int, int]] = []
        for i in order:
            t = tracks[i]
            hit = found.get(t.public_id)
            if hit is None:
                new.append((next_id, i))
                next_id += 1
            elif _newer_or_same(t.updated_at, hit[1]):  # type: ignore[arg-type]
                replace.append((hit[0], i))
            else:
                result.superseded += 1
        if new:
            self._insert_tracks(tracks, new)
        if replace:
            self.conn.executemany(
                "UPDATE tracks SET title=?, artist_credit=?, album_id=?, disc_number=?,"
                " track_number=?, duration_ms=?, isrc=?, isrc_valid=?, explicit=?,"
                " popularity=?, listens=?, markets=?, updated_at=? WHERE id=?",
                [(*self._track_values(tracks[i]), tid) for tid, i in replace],
            )
            ids = [(tid,) for tid, _ in replace]
            self.conn.executemany("DELETE FROM track_artists WHERE track_id=?", ids)
            self.conn.executemany("DELETE FROM track_genres WHERE track_id=?", ids)
            self.conn.executemany(
                "DELETE FROM external_ids WHERE entity='track' AND entity_id=?", ids
            )
        done = new + replace
        self._insert_track_links(tracks, done)
        if records:
            self._put_records([(tid, records[i]) for tid, i in done])
        return result


def catalog_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Row counts of the main tables (cheap: max(rowid) is not used, counts are exact)."""
    return {
        t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        for t in ("tracks", "albums", "artists")
    }
