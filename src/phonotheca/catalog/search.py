"""Full-text search ordered by popularity, and true shuffle.

The FTS5 index's rowids are *rank keys*: ``key = bucket << 40 | n`` where ``bucket``
is ``100 - popularity`` (101 for tracks without one) and ``n`` orders tracks inside a
bucket by listens. "Most popular matches first" is then ``ORDER BY rowid LIMIT n``,
which FTS5 answers by walking doclists in rowid order and stopping early, instead of
ranking every match (DESIGN.md: 0.05 ms instead of 775 ms for a common word).

The index is contentless with ``detail='none'`` (rowids only: we never run phrase or
NEAR queries, because user text is always taken as plain words) and has prefix
indexes for 1-3 characters, so search-as-you-type answers ``l*`` from a prefix doclist
instead of merging the doclists of every word that starts with "l". With
``detail='none'`` the prefix indexes cost about what the positions of a default FTS5
table would: the build stays as fast as a plain FTS5 build.
"""

from __future__ import annotations

import random
import re
import sqlite3
import unicodedata
from dataclasses import dataclass, field

from phonotheca.catalog import schema

BUCKET_SHIFT = 40
FTS_TABLE = "track_search"
FTS_DDL = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, artists, album,"
    " content='', columnsize=0, detail='none', prefix='1 2 3',"
    " tokenize='unicode61 remove_diacritics 2')"
)
MAX_QUERY_TOKENS = 16
MAX_LIMIT = 1000
# Words as the unicode61 tokenizer sees them: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")


@dataclass
class TrackHit:
    """A track as search and shuffle return it (the ``--json`` shape)."""

    id: str
    title: str
    artists: list[str]
    album: str | None
    album_id: str | None
    isrc: str | None
    duration_ms: int | None
    popularity: int | None
    listens: int | None
    track_number: int | None = None
    disc_number: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


# -- the index -----------------------------------------------------------------------------


def mark_search_stale(conn: sqlite3.Connection) -> None:
    """Record (in the caller's transaction) that the search index must be rebuilt."""
    schema.set_meta(conn, "search_stale", "1")


def _has_index(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone() is not None


def search_is_stale(conn: sqlite3.Connection) -> bool:
    return not _has_index(conn) or schema.get_meta(conn, "search_stale") == "1"


def refresh_search(conn: sqlite3.Connection, *, force: bool = False) -> bool:
    """Rebuild the search index if an import changed the catalog; True if it did."""
    if not force and not search_is_stale(conn):
        return False
    rebuild_search(conn)
    return True


def rebuild_search(conn: sqlite3.Connection) -> None:
    """Rebuild rank keys and the FTS5 index in one transaction (safe to kill)."""
    has_aliases = conn.execute("SELECT 1 FROM artist_aliases LIMIT 1").fetchone() is not None
    # Aliases (other scripts, old names) are searchable through the artists column.
    artists_sql = (
        "t.artist_credit || coalesce(' ' || (SELECT group_concat(aa.name, ' ')"
        " FROM track_artists ta JOIN artist_aliases aa ON aa.artist_id = ta.artist_id"
        " WHERE ta.track_id = t.id), '')"
        if has_aliases
        else "t.artist_credit"
    )
    with schema.transaction(conn):
        conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
        conn.execute("DELETE FROM search_rank")
        conn.execute(FTS_DDL)
        conn.execute(
            f"""INSERT INTO search_rank(key, track_id)
            SELECT ((100 - coalesce(popularity, -1)) << {BUCKET_SHIFT})
                   + row_number() OVER (PARTITION BY popularity
                                        ORDER BY coalesce(listens, -1) DESC, id),
                   id
            FROM tracks ORDER BY 1"""
        )
        conn.execute(
            f"""INSERT INTO {FTS_TABLE}(rowid, title, artists, album)
            SELECT r.key, t.title, {artists_sql}, coalesce(a.title, '')
            FROM search_rank r JOIN tracks t ON t.id = r.track_id
            LEFT JOIN albums a ON a.id = t.album_id
            ORDER BY r.key"""
        )
        conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
        schema.set_meta(conn, "search_stale", None)


# -- queries -------------------------------------------------------------------------------


def fts_query(text: str) -> str | None:
    """Turn any user text into a safe FTS5 query: every word must match, the last as a prefix.

    Words are quoted, so FTS5 syntax in the input (``"``, ``*``, ``-``, ``NEAR``, ``OR``,
    parentheses, column filters) is searched as text and never parsed. Returns None
    when the text has no word at all.
    """
    normal = unicodedata.normalize("NFC", text)
    tokens = _TOKEN.findall(normal)[:MAX_QUERY_TOKENS]
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
    # Typing "love so" means "love" and a word starting with "so"; "love so " means both whole.
    ends_in_word = _TOKEN.fullmatch(normal[-1]) is not None if normal else False
    if ends_in_word and len(tokens) <= MAX_QUERY_TOKENS:
        quoted[-1] += "*"
    return " ".join(quoted)


_HIT_SQL = """
    SELECT t.id, t.public_id, t.title, a.title, a.public_id, t.isrc, t.duration_ms,
           t.popularity, t.listens, t.track_number, t.disc_number, t.artist_credit
    FROM tracks t LEFT JOIN albums a ON a.id = t.album_id
"""


def _hits(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[TrackHit]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    names: dict[int, list[str]] = {}
    marks = ",".join("?" * len(ids))
    for tid, name in conn.execute(
        "SELECT ta.track_id, coalesce(ta.credited_as, ar.name) FROM track_artists ta"
        f" JOIN artists ar ON ar.id = ta.artist_id WHERE ta.track_id IN ({marks})"
        " ORDER BY ta.track_id, ta.position",
        ids,
    ):
        names.setdefault(tid, []).append(name)
    return [
        TrackHit(
            id=str(r[1]),
            title=str(r[2]),
            artists=names.get(r[0], []),  # type: ignore[call-overload]
            album=r[3],  # type: ignore[arg-type]
            album_id=r[4],  # type: ignore[arg-type]
            isrc=r[5],  # type: ignore[arg-type]
            duration_ms=r[6],  # type: ignore[arg-type]
            popularity=r[7],  # type: ignore[arg-type]
            listens=r[8],  # type: ignore[arg-type]
            track_number=r[9],  # type: ignore[arg-type]
            disc_number=r[10],  # type: ignore[arg-type]
        )
        for r in rows
    ]


def search_keys(conn: sqlite3.Connection, text: str, limit: int = 20, offset: int = 0) -> list[int]:
    """Rank keys of the matching tracks, most popular first."""
    query = fts_query(text)
    if query is None or not _has_index(conn):
        return []
    limit = max(0, min(limit, MAX_LIMIT))
    return [
        r[0]
        for r in conn.execute(
            f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? ORDER BY rowid"
            " LIMIT ? OFFSET ?",
            (query, limit, max(0, offset)),
        )
    ]


def search(conn: sqlite3.Connection, text: str, limit: int = 20, offset: int = 0) -> list[TrackHit]:
    """Tracks whose title, artists or album contain every word of ``text``.

    Case- and diacritics-insensitive; the last word matches as a prefix; most popular
    first. Any text is accepted.
    """
    keys = search_keys(conn, text, limit, offset)
    if not keys:
        return []
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT r.key, t.id FROM search_rank r JOIN tracks t ON t.id = r.track_id"
        f" WHERE r.key IN ({marks})",
        keys,
    ).fetchall()
    by_key = {k: tid for k, tid in rows}
    ordered = [by_key[k] for k in keys if k in by_key]
    return _fetch(conn, ordered)


def _fetch(conn: sqlite3.Connection, track_ids: list[int]) -> list[TrackHit]:
    if not track_ids:
        return []
    marks = ",".join("?" * len(track_ids))
    rows = {r[0]: r for r in conn.execute(f"{_HIT_SQL} WHERE t.id IN ({marks})", track_ids)}
    return _hits(conn, [rows[t] for t in track_ids if t in rows])


def get_tracks(conn: sqlite3.Connection, public_ids: list[str]) -> list[TrackHit]:
    """Tracks by public id, in the order asked (unknown ids are left out)."""
    marks = ",".join("?" * len(public_ids))
    found = dict(
        conn.execute(f"SELECT public_id, id FROM tracks WHERE public_id IN ({marks})", public_ids)
    )
    return _fetch(conn, [found[p] for p in public_ids if p in found])


def shuffle(conn: sqlite3.Connection, n: int = 1, rng: random.Random | None = None) -> list[TrackHit]:
    """``n`` tracks, each drawn uniformly over the whole catalog (with replacement).

    Track rowids are dense (assigned max+1, never reused), so a pick is one random
    integer and one primary-key lookup: O(1) whatever the catalog size. Holes, if any,
    are skipped by drawing again, which keeps every track equally likely.
    """
    rng = rng or random.Random()
    row = conn.execute("SELECT min(id), max(id) FROM tracks").fetchone()
    if row[0] is None:
        return []
    lo, hi = int(row[0]), int(row[1])
    picked: list[int] = []
    tries = 0
    while len(picked) < n and tries < 100 * n + 100:
        tries += 1
        tid = rng.randint(lo, hi)
        if conn.execute("SELECT 1 FROM tracks WHERE id = ?", (tid,)).fetchone():
            picked.append(tid)
    return _fetch_many(conn, picked)


def _fetch_many(conn: sqlite3.Connection, track_ids: list[int]) -> list[TrackHit]:
    """Like :func:`_fetch` but keeps repeats (shuffle draws with replacement)."""
    unique = list(dict.fromkeys(track_ids))
    by_id = {h_id: h for h_id, h in zip(unique, _fetch(conn, unique), strict=True)}
    return [by_id[t] for t in track_ids]
