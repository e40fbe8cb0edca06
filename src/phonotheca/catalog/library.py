"""The library file: every list the Subsonic API offers, with positions at any depth.

A music app pages through lists of a library of any size: albums by name, by artist, by
year, by genre, newest; songs by genre, every song (an offline sync); artists by their
index letter. Sorting the catalog per request costs O(catalog), an ``OFFSET`` O(offset).
So the lists are kept sorted, set-based, when the catalog or the collections held change
(the end of an import, a build, ``reindex``; the server when it sees a new set of
collections or a new catalog), in ``ARCHIVE/library.sqlite3`` (FORMAT.md §14.1):

- ``song_order`` / ``album_order`` / ``artist_order``: one row per (library, order,
  item), keyed by its sort key, with the tree of counts of
  :mod:`~phonotheca.catalog.library_rank` (``blk``, ``slot``, ``nodes``): the row at any
  position is a few index seeks, and the page from it a range of the primary key;
- ``ranges``: how many items each key (a genre, a year) has in an order: the counts
  ``getGenres`` shows are the lengths of the lists it leads to;
- ``artist_albums``: each artist's albums, so an artist's ``albumCount`` is the length of
  the album list ``getArtist`` returns;
- ``album_stats`` / ``artist_stats``: tracks and playable tracks of each album / artist;
- ``artist_top``: each artist's most popular tracks of the whole catalog (the web artist
  page's), so that a prolific artist's tracks are not sorted per request.

Two libraries are kept: :data:`PLAYABLE` (the tracks of the collections this server
holds) and :data:`CATALOG` (every track). The file is derived: a full build writes it
beside as ``.partial`` and renames it over the old one, so readers keep the file they
opened and a killed build leaves the previous file; deleting it only costs a rebuild.

:func:`update` changes it in place instead, in one transaction, when it can: for what the
catalog's journal says an import changed (:mod:`~phonotheca.catalog.library_delta`,
O(k log n)); and when the collections held changed, the playable counts of the albums
and artists of the k tracks that came or went (``playable`` records each held track's
collection, so the tracks that went are an index range) and their rows in the "In this
mirror" lists, O(k log n) (when most of what is playable changed, those lists are made
again from the playable tracks alone: O(playable)); never a read of the whole catalog.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from phonotheca.catalog import library_delta, schema
from phonotheca.catalog import library_rank as rank

PLAYABLE = 1
CATALOG = 2
LIBRARY_FILE = "library.sqlite3"
FORMAT_VERSION = 4
ARTIST_TOP = 20
"""Most popular tracks kept per artist in ``artist_top``."""
IGNORED_ARTICLES = ("The", "El", "La", "Los", "Las", "Le", "Les", "Die", "Der", "Das")

# Orders (``kind``) of songs and albums. Keyed orders group their items by a key (a genre
# id, a year), each group a contiguous run of positions listed in ``ranges``.
SONGS_ALL, SONGS_BY_GENRE, SONGS_BY_YEAR = 0, 1, 2
ALBUMS_BY_ID, ALBUMS_BY_NAME, ALBUMS_BY_ARTIST, ALBUMS_BY_YEAR, ALBUMS_BY_GENRE = 0, 1, 2, 3, 4
SONG, ALBUM, ARTIST = 0, 1, 2  # ranges.what, blocks.what

_DDL = (
    """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE song_order(
    lib INTEGER NOT NULL, kind INTEGER NOT NULL, key INTEGER NOT NULL,
    track_id INTEGER NOT NULL, blk INTEGER, slot INTEGER,
    PRIMARY KEY(lib, kind, key, track_id)) WITHOUT ROWID;
CREATE INDEX song_order_rank ON song_order(lib, kind, blk, slot);
CREATE INDEX song_order_item ON song_order(track_id);
CREATE TABLE album_order(
    lib INTEGER NOT NULL, kind INTEGER NOT NULL, key INTEGER NOT NULL,
    t1 TEXT NOT NULL COLLATE NOCASE, t2 TEXT NOT NULL COLLATE NOCASE,
    album_id INTEGER NOT NULL, blk INTEGER, slot INTEGER,
    PRIMARY KEY(lib, kind, key, t1, t2, album_id)) WITHOUT ROWID;
CREATE INDEX album_order_rank ON album_order(lib, kind, blk, slot);
CREATE INDEX album_order_item ON album_order(album_id);
CREATE TABLE artist_order(
    lib INTEGER NOT NULL, kind INTEGER NOT NULL, letter TEXT NOT NULL, sortname TEXT NOT NULL,
    public_id TEXT NOT NULL, artist_id INTEGER NOT NULL, albums INTEGER NOT NULL,
    blk INTEGER, slot INTEGER,
    PRIMARY KEY(lib, kind, letter, sortname, public_id, artist_id)) WITHOUT ROWID;
CREATE INDEX artist_order_rank ON artist_order(lib, kind, blk, slot);
CREATE INDEX artist_order_item ON artist_order(artist_id);
CREATE TABLE ranges(
    lib INTEGER NOT NULL, what INTEGER NOT NULL, kind INTEGER NOT NULL, key INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY(lib, what, kind, key)) WITHOUT ROWID;
CREATE TABLE artist_albums(
    lib INTEGER NOT NULL, artist_id INTEGER NOT NULL, rank INTEGER NOT NULL,
    album_id INTEGER NOT NULL,
    PRIMARY KEY(lib, artist_id, rank)) WITHOUT ROWID;
CREATE TABLE album_stats(
    album_id INTEGER PRIMARY KEY, tracks INTEGER NOT NULL, playable INTEGER NOT NULL);
CREATE TABLE artist_stats(
    artist_id INTEGER PRIMARY KEY, tracks INTEGER NOT NULL, playable INTEGER NOT NULL);
CREATE TABLE artist_top(
    artist_id INTEGER NOT NULL, rank INTEGER NOT NULL, track_id INTEGER NOT NULL,
    PRIMARY KEY(artist_id, rank)) WITHOUT ROWID;
CREATE TABLE held(name TEXT PRIMARY KEY, built_at TEXT) WITHOUT ROWID;
CREATE TABLE playable(track_id INTEGER PRIMARY KEY, collection TEXT NOT NULL);
CREATE INDEX playable_collection ON playable(collection);
"""
    + rank.DDL
)
SONGS = rank.Order(SONG, "song_order", "track_id", ("key", "track_id"))
ALBUMS = rank.Order(ALBUM, "album_order", "album_id", ("key", "t1", "t2", "album_id"))
ARTISTS = rank.Order(
    ARTIST, "artist_order", "artist_id", ("letter", "sortname", "public_id", "artist_id")
)
ORDERS = (SONGS, ALBUMS, ARTISTS)
CONTENT = 6
"""The first entries of :func:`catalog_stamp` that name the catalog's content (imports,
largest ids); the others (plans, collections) change only what is playable."""
_LISTS = (
    "song_order",
    "album_order",
    "ranges",
    "artist_order",
    "artist_albums",
    "nodes",
)
"""Tables with rows per library (``lib``)."""

_YEAR = "CASE WHEN {d} GLOB '[0-9][0-9][0-9][0-9]*' THEN CAST(substr({d}, 1, 4) AS INTEGER) END"


def sort_key(name: str, articles: Sequence[str] = IGNORED_ARTICLES) -> str:
    """A name without a leading article ("The Beatles" -> "beatles"), folded for sorting."""
    text = name.strip()
    for article in articles:
        if text.lower().startswith(article.lower() + " "):
            text = text[len(article) + 1 :]
            break
    return text.casefold()


def index_letter(name: str) -> str:
    """The artist index group of a name: its first letter after any article, else ``#``."""
    first = sort_key(name)[:1].upper()
    return first if first.isalpha() else "#"


def catalog_stamp(conn: sqlite3.Connection, prefix: str = "") -> str:
    """What identifies the catalog's content for the lists, from a few index seeks.

    Every import records its progress in ``imports``, a build its collections, a plan its
    row; new tracks, albums and artists raise their tables' largest rowids; any change of
    what the lists show adds to the journal of changes (``library_changes``). The stamp
    changes when any of them does, never by reading the catalog's rows.
    """
    p = prefix
    row = conn.execute(
        f"""SELECT (SELECT max(id) FROM {p}imports),
                   (SELECT lines_done || '/' || coalesce(finished_at, '') FROM {p}imports
                    ORDER BY id DESC LIMIT 1),
                   (SELECT max(id) FROM {p}tracks), (SELECT max(id) FROM {p}albums),
                   (SELECT max(id) FROM {p}artists), (SELECT max(id) FROM {p}genres),
                   (SELECT max(id) FROM {p}plans),
                   (SELECT count(*) || '/' || coalesce(max(built_at), '') FROM {p}collections),
                   (SELECT seq FROM {p}sqlite_sequence WHERE name = 'library_changes')"""
    ).fetchone()
    return json.dumps(list(row))


def importing(conn: sqlite3.Connection) -> bool:
    """Whether the last import has not finished (running, or killed and to be run again):
    its end makes the file, so a server keeps the one it has meanwhile."""
    row = conn.execute(
        "SELECT finished_at IS NULL FROM imports ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return bool(row and row[0])


def held_digest(held: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()


def read_meta(path: Path) -> dict[str, str] | None:
    """The meta rows of a library file; None when it is missing or unreadable."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def is_current(path: Path, stamp: str, held: Sequence[str]) -> bool:
    return matches(read_meta(path), stamp, held)


def matches(meta: dict[str, str] | None, stamp: str | None, held: Sequence[str]) -> bool:
    """Whether a library file's meta rows are for this stamp (any, when None) and held
    collections."""
    return (
        meta is not None
        and meta.get("format") == str(FORMAT_VERSION)
        and (stamp is None or meta.get("stamp") == stamp)
        and meta.get("held") == held_digest(held)
    )


def build(catalog_path: Path, out: Path, held: Sequence[str]) -> str:
    """Write the library file ``out`` for the catalog and the collections ``held``.

    Reads the catalog in one read transaction (a consistent snapshot whatever writers
    do meanwhile) and returns the stamp of that snapshot, which the file records.
    """
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        conn.isolation_level = None
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("ATTACH ? AS c", (f"{catalog_path.resolve().as_uri()}?mode=ro",))
        conn.create_function("phonotheca_sort_key", 1, sort_key, deterministic=True)
        conn.create_function("phonotheca_letter", 1, index_letter, deterministic=True)
        conn.executescript(_DDL)
        with schema.big_sorts(conn):
            conn.execute("BEGIN")
            stamp = catalog_stamp(conn, "c.")
            mark = library_delta.journal_end(conn)
            _fill(conn, held)
            for key, value in (
                ("format", str(FORMAT_VERSION)),
                ("stamp", stamp),
                ("held", held_digest(held)),
                ("catalog", catalog_identity(catalog_path)),
                ("changes", str(mark)),
                ("built_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            ):
                conn.execute("INSERT INTO meta VALUES(?, ?)", (key, value))
            conn.execute("COMMIT")
        conn.execute("DETACH c")
    finally:
        conn.close()
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    _settle(out)
    os.replace(partial, out)
    return stamp


def catalog_identity(catalog_path: Path) -> str:
    """Which catalog file a library file follows: another file (a copy, a catalog a
    mirror unpacked) has another journal, so its library file is made again."""
    st = os.stat(catalog_path)
    return f"{st.st_dev}:{st.st_ino}"


def _settle(path: Path) -> None:
    """Roll back an in-place change that was killed (its hot journal beside ``path``):
    a journal left beside the file that replaces it would be played into that file."""
    if not path.with_name(path.name + "-journal").exists():
        return
    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # rolls it back
    finally:
        conn.close()


def held_collections(conn: sqlite3.Connection, root: Path) -> list[str]:
    """Collections of ``root`` whose audio a server there plays, as the server lists them
    (:func:`phonotheca.serve.playable.present_collections`): a directory with ``data``
    under ``torrents/`` (in a mirror, also a verified-pieces file) and packed tracks."""
    from phonotheca.serve.availability import is_mirror, verified_path

    mirror = is_mirror(root)
    try:
        entries = sorted((root / "torrents").iterdir())
    except OSError:
        return []
    held = []
    for entry in entries:
        name = entry.name
        if not (entry / "data").is_dir() or (mirror and not verified_path(root, name).is_file()):
            continue
        packed = conn.execute(
            "SELECT 1 FROM ledger INDEXED BY ledger_collection"
            " WHERE collection = ? AND status = 'packed' LIMIT 1",
            (name,),
        ).fetchone()
        if packed:
            held.append(name)
    return held


def refresh(
    conn: sqlite3.Connection,
    progress: schema.StepProgress | None = None,
    *,
    force: bool = False,
) -> bool:
    """Make the library file beside the catalog of ``conn`` (a write connection, all
    committed) current, in place when it can (:func:`update`), else in full; True if it
    changed. Called where the lists change: at the end of an import, a build,
    ``reindex``. Then the journal rows it took in are dropped from the catalog."""
    work = refresher(conn, progress, force=force)
    if work is not None:
        work()
    forget_applied(conn)
    return work is not None


def refresher(
    conn: sqlite3.Connection,
    progress: schema.StepProgress | None = None,
    *,
    force: bool = False,
) -> Callable[[], None] | None:
    """What :func:`refresh` does, in halves: the check, here (reporting the step when
    the file is not current), the work, returned (None when there is none to do), and
    :func:`forget_applied`.

    The work opens connections of its own and never touches ``conn``, so it may run in
    another thread while ``conn`` writes something that is not in the lists (the end of
    an import builds the search index meanwhile: :func:`~phonotheca.catalog.importer.
    finish_import`)."""
    catalog_path = _catalog_path(conn)
    out = catalog_path.with_name(LIBRARY_FILE)
    held = held_collections(conn, catalog_path.parent)
    if not force and is_current(out, catalog_stamp(conn), held):
        return None
    if progress is not None:
        progress("library lists", None, None)

    def work() -> None:
        if force or update(catalog_path, out, held) is None:
            build(catalog_path, out, held)

    return work


def _catalog_path(conn: sqlite3.Connection) -> Path:
    """The file of the catalog ``conn`` has open."""
    return Path(next(r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"))


def forget_applied(conn: sqlite3.Connection) -> None:
    """Drop from the catalog's journal the rows the library file took in."""
    catalog_path = _catalog_path(conn)
    meta = read_meta(catalog_path.with_name(LIBRARY_FILE)) or {}
    if meta.get("catalog") == catalog_identity(catalog_path) and "changes" in meta:
        conn.execute("DELETE FROM library_changes WHERE seq <= ?", (int(meta["changes"]),))


def _fill(conn: sqlite3.Connection, held: Sequence[str]) -> None:
    _hold(conn, held)
    album_stats(conn)
    artist_stats(conn)
    artist_top(conn)
    _lists(conn, PLAYABLE)
    _lists(conn, CATALOG)


def _hold(conn: sqlite3.Connection, held: Sequence[str]) -> None:
    """Fill ``held`` (with each collection's build time) and ``playable`` (each packed
    track of a held collection): index ranges of the ledger, O(playable)."""
    conn.execute("CREATE TEMP TABLE names(name TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.executemany("INSERT OR IGNORE INTO names VALUES(?)", [(h,) for h in held])
    conn.execute(
        "INSERT INTO held SELECT n.name, c.built_at FROM names n"
        " LEFT JOIN c.collections c ON c.name = n.name"
    )
    conn.execute("DROP TABLE temp.names")
    conn.execute(
        "INSERT OR IGNORE INTO playable SELECT l.track_id, l.collection FROM held h"
        " JOIN c.ledger l INDEXED BY ledger_collection ON l.collection = h.name"
        " JOIN c.tracks t ON t.id = l.track_id WHERE l.status = 'packed' ORDER BY 1"
    )


def _lists(conn: sqlite3.Connection, lib: int) -> None:
    """The lists of one library, from ``playable`` (and the tracks it names) for
    :data:`PLAYABLE`, from the whole catalog for :data:`CATALOG`: each numbered in its
    sort, in full blocks and groups (:mod:`~phonotheca.catalog.library_rank`)."""
    if lib == PLAYABLE:
        tracks = (
            "SELECT p.track_id AS id, t.album_id FROM playable p"
            " CROSS JOIN c.tracks t ON t.id = p.track_id"
        )
        conn.execute("DROP TABLE IF EXISTS temp.held_albums")
        conn.execute(
            "CREATE TEMP TABLE held_albums AS SELECT DISTINCT t.album_id AS id"
            " FROM playable p CROSS JOIN c.tracks t ON t.id = p.track_id"
            " WHERE t.album_id IS NOT NULL"
        )
        albums = "SELECT a.* FROM temp.held_albums h JOIN c.albums a ON a.id = h.id"
    else:
        tracks = "SELECT id, album_id FROM c.tracks"
        albums = "SELECT * FROM c.albums"
    for order, rows in ((SONGS, song_rows(tracks)), (ALBUMS, album_rows(albums))):
        for kind, source in rows:
            insert_rows(conn, order, lib, kind, source, full=True)
            conn.execute(
                f"INSERT INTO ranges SELECT lib, {order.what}, kind, key, count(*)"
                f" FROM {order.table} WHERE lib = ? AND kind = ? GROUP BY key",
                (lib, kind),
            )
        rank.number(conn, order, lib, [kind for kind, _ in rows])
    artist_albums(conn, lib, _album_credits(tracks, albums))
    insert_rows(conn, ARTISTS, lib, 0, artist_rows(lib), full=True)
    rank.number(conn, ARTISTS, lib, [0])


def insert_rows(
    conn: sqlite3.Connection, order: rank.Order, lib: int, kind: int, source: str, full: bool
) -> None:
    """Rows of ``source`` (the order's sort columns) into an order: numbered in full
    blocks for a full build, else without a block (placed by
    :func:`~phonotheca.catalog.library_rank.place`)."""
    names = ", ".join([*order.sort, *(("albums",) if order is ARTISTS else ())])
    source, tail = (rank.ranked(order, source), "blk, slot") if full else (source, "NULL, NULL")
    conn.execute(
        f"INSERT INTO {order.table}(lib, kind, {names}, blk, slot)"
        f" SELECT {lib}, {kind}, {names}, {tail} FROM ({source})"
    )


def held_now(conn: sqlite3.Connection, held: Sequence[str], prefix: str = "") -> dict[str, str]:
    """Build time (``''`` when unknown) of each collection of ``held``."""
    out = {}
    for name in held:
        row = conn.execute(
            f"SELECT built_at FROM {prefix}collections WHERE name = ?", (name,)
        ).fetchone()
        out[name] = "" if row is None or row[0] is None else str(row[0])
    return out


def update(catalog_path: Path, out: Path, held: Sequence[str]) -> str | None:
    """Bring the library file ``out`` to the catalog and the collections ``held`` in
    place; the stamp it then records, or None when a full :func:`build` is needed (no
    file, another format or catalog file, a new plan, journaling off or too large a
    change: :func:`~phonotheca.catalog.library_delta.pending`).

    The catalog's changes since the file took them in (its journal,
    :mod:`~phonotheca.catalog.library_delta`) cost O(k log n) for k rows; collections
    that came, went or were built again O(k log n) for the k tracks whose playable state
    changed. One transaction: a killed update leaves the file as it was (SQLite's
    journal); the next run does it again.
    """
    if not out.exists():
        return None
    try:
        _settle(out)
    except sqlite3.Error:
        return None
    meta = read_meta(out)
    if (
        meta is None
        or meta.get("format") != str(FORMAT_VERSION)
        or meta.get("catalog") != catalog_identity(catalog_path)
    ):
        return None
    try:
        conn = sqlite3.connect(out, timeout=60)
    except sqlite3.Error:
        return None
    try:
        conn.isolation_level = None
        conn.execute("ATTACH ? AS c", (f"{catalog_path.resolve().as_uri()}?mode=ro",))
        conn.create_function("phonotheca_sort_key", 1, sort_key, deterministic=True)
        conn.create_function("phonotheca_letter", 1, index_letter, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            stamp = catalog_stamp(conn, "c.")
            old = json.loads(meta.get("stamp", "[]"))
            new = json.loads(stamp)
            mark = int(meta.get("changes", "0"))
            # plans: a new plan may change any ledger row, so the whole file is made again
            if old[CONTENT : CONTENT + 1] != new[CONTENT : CONTENT + 1] or (
                library_delta.pending(conn, mark) is None
            ):
                conn.execute("ROLLBACK")
                return None
            end = library_delta.journal_end(conn)
            if end > mark:
                library_delta.apply(conn, mark)
            _apply_held(conn, held)
            for key, value in (
                ("stamp", stamp),
                ("held", held_digest(held)),
                ("changes", str(end)),
                ("built_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            ):
                conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("DETACH c")
        return stamp
    finally:
        conn.close()


def _apply_held(conn: sqlite3.Connection, held: Sequence[str]) -> None:
    """The in-place change of :func:`update`, in the caller's transaction."""
    before = dict(conn.execute("SELECT name, coalesce(built_at, '') FROM held").fetchall())
    after = held_now(conn, held, "c.")
    changed = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    conn.execute("CREATE TEMP TABLE delta(track_id INTEGER PRIMARY KEY, sign INTEGER NOT NULL)")
    try:
        for name in changed:
            # What the collection gave, then what it gives now: the net change per track.
            conn.execute(
                "INSERT INTO delta SELECT track_id, -1 FROM playable WHERE collection = ?"
                " ON CONFLICT(track_id) DO UPDATE SET sign = sign - 1",
                (name,),
            )
            conn.execute("DELETE FROM playable WHERE collection = ?", (name,))
            conn.execute("DELETE FROM held WHERE name = ?", (name,))
            if name not in after:
                continue
            conn.execute("INSERT INTO held VALUES(?, nullif(?, ''))", (name, after[name]))
            conn.execute(
                "INSERT INTO delta SELECT l.track_id, 1 FROM c.ledger l"
                " INDEXED BY ledger_collection JOIN c.tracks t ON t.id = l.track_id"
                " WHERE l.collection = ? AND l.status = 'packed'"
                " ON CONFLICT(track_id) DO UPDATE SET sign = sign + 1",
                (name,),
            )
            conn.execute(
                "INSERT OR IGNORE INTO playable SELECT l.track_id, l.collection FROM c.ledger l"
                " INDEXED BY ledger_collection JOIN c.tracks t ON t.id = l.track_id"
                " WHERE l.collection = ? AND l.status = 'packed'",
                (name,),
            )
        conn.execute("DELETE FROM delta WHERE sign = 0")
        conn.execute(
            """UPDATE album_stats SET playable = playable + d.n
            FROM (SELECT t.album_id, sum(x.sign) AS n FROM delta x
                  CROSS JOIN c.tracks t ON t.id = x.track_id
                  WHERE t.album_id IS NOT NULL GROUP BY t.album_id) d
            WHERE album_stats.album_id = d.album_id"""
        )
        conn.execute(
            """UPDATE artist_stats SET playable = playable + d.n
            FROM (SELECT a.artist_id, sum(a.sign) AS n FROM (
                      SELECT DISTINCT ta.artist_id, x.track_id, x.sign FROM delta x
                      CROSS JOIN c.track_artists ta ON ta.track_id = x.track_id) a
                  GROUP BY a.artist_id) d
            WHERE artist_stats.artist_id = d.artist_id"""
        )
        (k,) = conn.execute("SELECT count(*) FROM delta").fetchone()
        (n,) = conn.execute("SELECT count(*) FROM playable").fetchone()
        if k > max(library_delta.MIN_LIMIT, n // library_delta.MAX_SHARE):
            # Most of what is playable changed: its lists are made again, O(playable).
            for table in _LISTS:
                conn.execute(f"DELETE FROM {table} WHERE lib = ?", (PLAYABLE,))
            _lists(conn, PLAYABLE)
        elif k:
            library_delta.relist_tracks(conn, "SELECT track_id FROM temp.delta", (PLAYABLE,))
    finally:
        conn.execute("DROP TABLE temp.delta")


def song_rows(tracks: str) -> list[tuple[int, str]]:
    """(kind, query of ``key, track_id``) of each song order of the tracks of ``tracks``."""
    # A track's genres are its own, or its album's when it has none.
    genres = f"""
        SELECT s.id, tg.genre_id AS g FROM ({tracks}) s
            CROSS JOIN c.track_genres tg ON tg.track_id = s.id
        UNION ALL
        SELECT s.id, ag.genre_id FROM ({tracks}) s
            CROSS JOIN c.album_genres ag ON ag.album_id = s.album_id
        WHERE NOT EXISTS (SELECT 1 FROM c.track_genres x WHERE x.track_id = s.id)"""
    years = f"""
        SELECT s.id, {_YEAR.format(d="a.release_date")} AS y FROM ({tracks}) s
            CROSS JOIN c.albums a ON a.id = s.album_id"""
    return [
        (SONGS_ALL, f"SELECT 0 AS key, id AS track_id FROM ({tracks})"),
        (SONGS_BY_GENRE, f"SELECT g AS key, id AS track_id FROM ({genres})"),
        (SONGS_BY_YEAR, f"SELECT y AS key, id AS track_id FROM ({years}) WHERE y IS NOT NULL"),
    ]


def album_rows(albums: str) -> list[tuple[int, str]]:
    """(kind, query of ``key, t1, t2, album_id``) of each album order of ``albums``."""
    year = _YEAR.format(d="release_date")
    return [
        (ALBUMS_BY_ID, f"SELECT 0 AS key, '' AS t1, '' AS t2, id AS album_id FROM ({albums})"),
        (ALBUMS_BY_NAME, f"SELECT 0 AS key, title AS t1, '' AS t2, id AS album_id FROM ({albums})"),
        (
            ALBUMS_BY_ARTIST,
            f"SELECT 0 AS key, artist_credit AS t1, title AS t2, id AS album_id FROM ({albums})",
        ),
        (
            ALBUMS_BY_YEAR,
            f"SELECT y AS key, release_date AS t1, '' AS t2, id AS album_id FROM (SELECT id,"
            f" release_date, {year} AS y"
            f" FROM ({albums})) WHERE y IS NOT NULL",
        ),
        (
            ALBUMS_BY_GENRE,
            "SELECT ag.genre_id AS key, a.title AS t1, '' AS t2, a.id AS album_id"
            f" FROM ({albums}) a JOIN c.album_genres ag ON ag.album_id = a.id",
        ),
    ]


def _album_credits(tracks: str, albums: str) -> str:
    """Query of ``artist_id, album_id``: an artist's albums in a library, those it is
    credited on as album artist, or on one of the library's tracks."""
    return f"""SELECT aa.artist_id, aa.album_id FROM c.album_artists aa
                   JOIN ({albums}) x ON x.id = aa.album_id
               UNION
               SELECT ta.artist_id, s.album_id FROM ({tracks}) s
                   CROSS JOIN c.track_artists ta ON ta.track_id = s.id
               WHERE s.album_id IS NOT NULL"""


def artist_albums(conn: sqlite3.Connection, lib: int, credits: str) -> None:
    # By release date, then title.
    conn.execute(
        f"""INSERT INTO artist_albums
        SELECT {lib}, artist_id, row_number() OVER (
                   PARTITION BY artist_id
                   ORDER BY a.release_date IS NULL, a.release_date, a.title, a.id) - 1, a.id
        FROM ({credits}) p JOIN c.albums a ON a.id = p.album_id"""
    )


def artist_rows(lib: int, artists: str | None = None) -> str:
    """Query of the artist index's rows of a library (of the artists of ``artists``, a
    query of ids, when given): those with albums in ``artist_albums``."""
    where = "" if artists is None else f" AND artist_id IN ({artists})"
    return f"""SELECT phonotheca_letter(ar.name) AS letter, phonotheca_sort_key(ar.name)
                   AS sortname, ar.public_id, ar.id AS artist_id, n AS albums
               FROM (SELECT artist_id, count(*) AS n FROM artist_albums
                     WHERE lib = {lib}{where} GROUP BY artist_id) x
               JOIN c.artists ar ON ar.id = x.artist_id"""


def album_stats(conn: sqlite3.Connection, albums: str | None = None) -> None:
    """Tracks and playable tracks of every album, or of the albums of ``albums`` (a query
    of ids: index ranges of ``tracks_album``)."""
    if albums is None:
        source = "c.tracks t"
    else:
        source = f"({albums}) j CROSS JOIN c.tracks t ON t.album_id = j.id"
    conn.execute(
        "INSERT INTO album_stats SELECT t.album_id, count(*), count(p.track_id)"
        f" FROM {source} LEFT JOIN playable p ON p.track_id = t.id"
        " WHERE t.album_id IS NOT NULL GROUP BY t.album_id"
    )


def _credits(artists: str | None) -> str:
    """The credits (``track_artists`` rows) of every artist, or of those of ``artists``."""
    if artists is None:
        return "c.track_artists ta"
    return f"({artists}) r CROSS JOIN c.track_artists ta ON ta.artist_id = r.id"


def artist_stats(conn: sqlite3.Connection, artists: str | None = None) -> None:
    """Tracks and playable tracks crediting every artist, or those of ``artists``."""
    conn.execute(
        "INSERT INTO artist_stats SELECT ta.artist_id, count(DISTINCT ta.track_id),"
        f" count(DISTINCT p.track_id) FROM {_credits(artists)}"
        " LEFT JOIN playable p ON p.track_id = ta.track_id GROUP BY ta.artist_id"
    )


def artist_top(conn: sqlite3.Connection, artists: str | None = None) -> None:
    # Each artist's most popular tracks, as the web artist page shows them: popularity
    # (unknown last), then listens, then id. One sort of the credits, at build time.
    conn.execute(
        f"""INSERT INTO artist_top
        SELECT artist_id, r - 1, track_id FROM (
            SELECT x.artist_id, x.track_id, row_number() OVER (
                       PARTITION BY x.artist_id
                       ORDER BY t.popularity IS NULL, t.popularity DESC, t.listens DESC,
                                t.id) AS r
            FROM (SELECT DISTINCT ta.artist_id, ta.track_id FROM {_credits(artists)}) x
            JOIN c.tracks t ON t.id = x.track_id)
        WHERE r <= {ARTIST_TOP}"""
    )
