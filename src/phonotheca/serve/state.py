"""The server's own data: users, their credentials, stars, scrobbles, playlists and what
they are playing now.

``state.sqlite3`` lives beside the catalog and is **never published**: nothing about users
ever goes into ``catalog.sqlite3``. Items (tracks, albums, artists) are referred to by
their catalog *public ids*, which stay the same when the catalog is rebuilt.

Credentials, and why there are two:

- The **web password** is stored only as a scrypt hash (:mod:`phonotheca.serve.passwords`,
  N = 2^17 by default, a random 16-byte salt per user): a stolen ``state.sqlite3`` does
  not reveal it. A hash made at a lower cost is rehashed at the next successful sign-in.
  Changing the password ends the user's web sessions (``session_epoch``, which session
  cookies carry); the Subsonic password and API key are separate secrets, replaced only
  by ``user token``.
- Subsonic's token authentication sends ``md5(password + salt)``; to check it the server
  must know the password itself. So a user gets a separate, server-generated **Subsonic
  password**, stored as it is, and never their web password: a leaked state database
  exposes Subsonic access (revoked by rotating it with ``phonotheca user token``), not a
  password people reuse elsewhere. The OpenSubsonic **API key** is random too, and is kept
  only as its SHA-256 (a 256-bit random key needs no slow hash); it is shown once.

Threads: the server runs handlers on many threads. Each thread gets its own connection
(SQLite connections must not cross threads); the database is in WAL mode so readers never
wait for a writer, and every write is one short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from phonotheca.catalog.schema import apply_migrations, transaction
from phonotheca.serve.passwords import (
    DEFAULT_COST,
    check_password,
    dummy_hash,
    hash_password,
    needs_rehash,
)

STAR_KINDS = ("track", "album", "artist")
_NAME = re.compile(r"[^\s/:][^/:]{0,63}")
MIN_PASSWORD = 8
NOW_PLAYING_KEEP_MS = 60 * 60 * 1000
"""How long a stream stays in ``now_playing`` (what getNowPlaying can show at most)."""
NOW_PLAYING_ROWS = 200
"""Streams :meth:`StateStore.now_playing` returns at most (the most recent)."""
MAX_PLAYER_NAME = 64


class StateError(Exception):
    """A request on the state store a user can get wrong (unknown user, taken name, ...)."""


_V1 = """
    CREATE TABLE users(
        id                 INTEGER PRIMARY KEY,
        name               TEXT NOT NULL UNIQUE,
        admin              INTEGER NOT NULL DEFAULT 0,
        password           TEXT NOT NULL,   -- scrypt$N$r$p$<salt hex>$<hash hex>
        subsonic_password  TEXT,            -- generated; kept as is for token auth
        api_key_sha256     TEXT UNIQUE,     -- OpenSubsonic apiKey, hashed
        api_key_hint       TEXT,            -- its first characters, to tell keys apart
        created_at         TEXT NOT NULL,
        token_rotated_at   TEXT
    );
    CREATE TABLE stars(
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL CHECK(kind IN ('track', 'album', 'artist')),
        item       TEXT NOT NULL,           -- catalog public id
        starred_at TEXT NOT NULL,
        PRIMARY KEY(user_id, kind, item)
    ) WITHOUT ROWID;
    CREATE TABLE scrobbles(
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        track      TEXT NOT NULL,           -- catalog public id
        played_at  INTEGER NOT NULL,        -- milliseconds since the epoch
        submission INTEGER NOT NULL         -- 1: played; 0: "now playing" notice
    );
    CREATE INDEX scrobbles_user ON scrobbles(user_id, played_at);
    CREATE TABLE playlists(
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        comment    TEXT,
        public     INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        changed_at TEXT NOT NULL
    );
    CREATE TABLE playlist_entries(
        playlist_id INTEGER NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,       -- from 0, without gaps
        track       TEXT NOT NULL,          -- catalog public id
        PRIMARY KEY(playlist_id, position)
    ) WITHOUT ROWID;
"""
SIGNIN_FAILURES_SQL = """
    -- Failed sign-ins per client address, shared by the server's processes (security.py).
    CREATE TABLE signin_failures(
        address TEXT NOT NULL,
        at      REAL NOT NULL           -- Unix time
    );
    CREATE INDEX signin_failures_address ON signin_failures(address, at);
    CREATE INDEX signin_failures_at ON signin_failures(at);
"""
NOW_PLAYING_SQL = """
    -- What each user's players began streaming last (getNowPlaying): one row per user and
    -- player, replaced by the next stream; rows older than NOW_PLAYING_KEEP_MS are deleted.
    CREATE TABLE now_playing(
        id      INTEGER PRIMARY KEY,        -- the Subsonic playerId
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        player  TEXT NOT NULL,              -- the client's name (Subsonic 'c'), '' if none
        track   TEXT NOT NULL,              -- catalog public id
        at      INTEGER NOT NULL,           -- when its stream began, ms since the epoch
        UNIQUE(user_id, player)
    );
    CREATE INDEX now_playing_at ON now_playing(at);
"""
SESSION_EPOCH_SQL = """
    -- Raised when the password changes: session cookies carry it, and older ones end.
    ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
"""
MIGRATIONS = [_V1, SIGNIN_FAILURES_SQL, NOW_PLAYING_SQL, SESSION_EPOCH_SQL]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    admin: bool
    created_at: str
    has_subsonic_password: bool = False
    api_key_hint: str | None = None
    session_epoch: int = 0
    """Sessions made before the last password change carry a lower one."""


@dataclass(frozen=True, slots=True)
class SubsonicCredentials:
    """What a user types into a Subsonic app; shown once, when made."""

    user: str
    password: str
    api_key: str


@dataclass(frozen=True, slots=True)
class NowPlaying:
    """A stream a player began: who, which player, which track, when."""

    player_id: int
    username: str
    player: str
    """The client's name (Subsonic ``c``); empty when it gave none."""
    track: str
    """The track's public id."""
    at: int
    """When the stream began, in milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class Playlist:
    id: int
    owner: str
    owner_id: int
    name: str
    comment: str | None
    public: bool
    created_at: str
    changed_at: str
    tracks: list[str]
    """Public ids of the entries, in order (repeats allowed)."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


_USER_COLUMNS = (  # -> User
    "id, name, admin, created_at, subsonic_password IS NOT NULL, api_key_hint, session_epoch"
)


def _user(row: Sequence[object] | None) -> User | None:
    if row is None:
        return None
    return User(
        int(row[0]),  # type: ignore[call-overload]
        str(row[1]),
        bool(row[2]),
        str(row[3]),
        bool(row[4]),
        row[5] if isinstance(row[5], str) else None,
        int(row[6]),  # type: ignore[call-overload]
    )


class StateStore:
    """``state.sqlite3``: opened (created and migrated if needed) by the constructor."""

    def __init__(self, path: Path, *, password_cost: int = DEFAULT_COST) -> None:
        self.path = path
        self.password_cost = password_cost
        """log2 of scrypt's N for new and upgraded hashes (``[serve] password_cost``)."""
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate(self._conn())

    # -- connections -------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0)
            conn.isolation_level = None  # explicit transactions only
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
        return conn

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn())

    # For the tables other modules keep here (security.SignInThrottle's).
    read = _conn
    write = _write

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} has state schema v{version}, newer than this phonotheca"
                f" (v{SCHEMA_VERSION}): upgrade phonotheca"
            )
        apply_migrations(conn, MIGRATIONS, version)

    # -- users -------------------------------------------------------------------------

    def add_user(self, name: str, password: str, *, admin: bool = False) -> User:
        """A new user with a web password (scrypt-hashed); no Subsonic credentials yet."""
        if not _NAME.fullmatch(name) or name != name.strip():
            raise StateError(
                f"user name {name!r} must be 1-64 characters without '/', ':' or"
                " leading/trailing spaces"
            )
        _check_new_password(password)
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO users(name, admin, password, created_at) VALUES(?, ?, ?, ?)",
                    (name, int(admin), hash_password(password, self.password_cost), now_iso()),
                )
        except sqlite3.IntegrityError:
            raise StateError(f"user {name!r} exists already") from None
        user = self.get_user(name)
        assert user is not None
        return user

    def get_user(self, name: str) -> User | None:
        row = self._conn().execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return _user(row.fetchone())

    def user_by_id(self, user_id: int) -> User | None:
        row = self._conn().execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(row.fetchone())

    def list_users(self) -> list[User]:
        rows = self._conn().execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")
        return [u for u in map(_user, rows) if u is not None]

    def _require(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            raise StateError(f"no user {name!r}: see 'phonotheca user list'")
        return user

    def verify_password(self, name: str, password: str) -> User | None:
        """The user if ``password`` is their web password, else None.

        A hash weaker than :attr:`password_cost` is replaced by a new one at that cost
        (the password is known now); this is no password change and ends no session.
        """
        row = (
            self._conn()
            .execute("SELECT id, password FROM users WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            # Spend the same time as for a real user, so that timing does not tell
            # which names exist.
            check_password(password, dummy_hash(self.password_cost))
            return None
        user_id, stored = int(row[0]), str(row[1])
        if not check_password(password, stored):
            return None
        if needs_rehash(stored, self.password_cost):
            upgraded = hash_password(password, self.password_cost)
            with self._write() as conn:  # unless the password changed meanwhile
                conn.execute(
                    "UPDATE users SET password = ? WHERE id = ? AND password = ?",
                    (upgraded, user_id, stored),
                )
        return self.user_by_id(user_id)

    def set_password(self, name: str, password: str) -> None:
        """Change (or reset) the web password; the user's web sessions end."""
        _check_new_password(password)
        self._require(name)
        digest = hash_password(password, self.password_cost)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET password = ?, session_epoch = session_epoch + 1 WHERE name = ?",
                (digest, name),
            )

    def remove_user(self, name: str) -> None:
        """Delete a user with their stars, scrobbles and playlists."""
        user = self._require(name)
        with self._write() as conn:
            conn.execute("DELETE FROM users WHERE id = ?", (user.id,))

    # -- Subsonic credentials ----------------------------------------------------------

    def rotate_subsonic_credentials(self, name: str) -> SubsonicCredentials:
        """New Subsonic password and API key for ``name``; the old ones stop working."""
        self._require(name)
        # 20 characters of a-z 0-9: easy to type into a phone, ~103 bits.
        alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
        password = "".join(secrets.choice(alphabet) for _ in range(20))
        api_key = "pk_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET subsonic_password = ?, api_key_sha256 = ?, api_key_hint = ?,"
                " token_rotated_at = ? WHERE name = ?",
                (password, _key_digest(api_key), api_key[:7], now_iso(), name),
            )
        return SubsonicCredentials(name, password, api_key)

    def subsonic_password(self, name: str) -> tuple[User, str | None] | None:
        """The user and their Subsonic password (None before ``user token``)."""
        row = (
            self._conn()
            .execute(
                f"SELECT {_USER_COLUMNS}, subsonic_password FROM users WHERE name = ?", (name,)
            )
            .fetchone()
        )
        user = _user(row)
        return None if user is None else (user, row[7])

    def user_by_api_key(self, api_key: str) -> User | None:
        row = self._conn().execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE api_key_sha256 = ?", (_key_digest(api_key),)
        )
        return _user(row.fetchone())

    # -- stars -------------------------------------------------------------------------

    def star(self, user_id: int, kind: str, items: Sequence[str]) -> None:
        _check_kind(kind)
        stamp = now_iso()
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO stars(user_id, kind, item, starred_at) VALUES(?, ?, ?, ?)",
                [(user_id, kind, item, stamp) for item in items],
            )

    def unstar(self, user_id: int, kind: str, items: Sequence[str]) -> None:
        _check_kind(kind)
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM stars WHERE user_id = ? AND kind = ? AND item = ?",
                [(user_id, kind, item) for item in items],
            )

    def starred(
        self, user_id: int, kind: str, items: Sequence[str] | None = None
    ) -> dict[str, str]:
        """Public id -> when it was starred, for all of a kind or among ``items``."""
        _check_kind(kind)
        conn = self._conn()
        if items is None:
            rows = conn.execute(
                "SELECT item, starred_at FROM stars WHERE user_id = ? AND kind = ?"
                " ORDER BY starred_at DESC, item",
                (user_id, kind),
            )
            return dict(rows.fetchall())
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(items))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                conn.execute(
                    "SELECT item, starred_at FROM stars WHERE user_id = ? AND kind = ?"
                    f" AND item IN ({marks})",
                    (user_id, kind, *chunk),
                ).fetchall()
            )
        return found

    # -- scrobbles ---------------------------------------------------------------------

    def scrobble(
        self, user_id: int, plays: Sequence[tuple[str, int]], *, submission: bool = True
    ) -> None:
        """Record plays: (track public id, milliseconds since the epoch)."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO scrobbles(user_id, track, played_at, submission) VALUES(?, ?, ?, ?)",
                [(user_id, track, at, int(submission)) for track, at in plays],
            )

    def play_counts(self, user_id: int) -> list[tuple[str, int, int]]:
        """(track, plays, last played in ms) of the user's submitted scrobbles."""
        rows = self._conn().execute(
            "SELECT track, count(*), max(played_at) FROM scrobbles"
            " WHERE user_id = ? AND submission = 1 GROUP BY track",
            (user_id,),
        )
        return [(str(t), int(n), int(at)) for t, n, at in rows]

    # -- now playing -------------------------------------------------------------------

    def record_playing(self, user_id: int, player: str, track: str, at: int | None = None) -> None:
        """Note that ``player`` of the user began streaming ``track`` (at ``at`` ms, or now).

        One row per user and player, replaced by the next stream; rows older than
        :data:`NOW_PLAYING_KEEP_MS` go at the same time, so the table holds no more than the
        streams of the last hour.
        """
        now = int(time.time() * 1000)
        stamp = now if at is None else at
        with self._write() as conn:
            conn.execute(
                "INSERT INTO now_playing(user_id, player, track, at) VALUES(?, ?, ?, ?)"
                " ON CONFLICT(user_id, player) DO UPDATE SET track = excluded.track,"
                " at = excluded.at",
                (user_id, player[:MAX_PLAYER_NAME], track, stamp),
            )
            conn.execute("DELETE FROM now_playing WHERE at < ?", (now - NOW_PLAYING_KEEP_MS,))

    def now_playing(self, since: int, limit: int = NOW_PLAYING_ROWS) -> list[NowPlaying]:
        """Streams that began at ``since`` (ms since the epoch) or later, newest first: a
        range of the ``now_playing_at`` index, at most ``limit`` rows."""
        rows = self._conn().execute(
            "SELECT n.id, u.name, n.player, n.track, n.at FROM now_playing n"
            " JOIN users u ON u.id = n.user_id WHERE n.at >= ? ORDER BY n.at DESC LIMIT ?",
            (since, limit),
        )
        return [NowPlaying(int(i), str(u), str(p), str(t), int(a)) for i, u, p, t, a in rows]

    # -- playlists ---------------------------------------------------------------------

    def create_playlist(
        self, user_id: int, name: str, tracks: Sequence[str] = (), *, public: bool = False
    ) -> Playlist:
        stamp = now_iso()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO playlists(user_id, name, public, created_at, changed_at)"
                " VALUES(?, ?, ?, ?, ?)",
                (user_id, name, int(public), stamp, stamp),
            )
            playlist_id = int(cur.lastrowid or 0)
            _write_entries(conn, playlist_id, tracks)
        found = self.get_playlist(playlist_id)
        assert found is not None
        return found

    def get_playlist(self, playlist_id: int) -> Playlist | None:
        conn = self._conn()
        row = conn.execute(
            "SELECT p.id, u.name, p.user_id, p.name, p.comment, p.public, p.created_at,"
            " p.changed_at FROM playlists p JOIN users u ON u.id = p.user_id WHERE p.id = ?",
            (playlist_id,),
        ).fetchone()
        if row is None:
            return None
        tracks = [
            r[0]
            for r in conn.execute(
                "SELECT track FROM playlist_entries WHERE playlist_id = ? ORDER BY position",
                (playlist_id,),
            )
        ]
        return Playlist(
            row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], tracks
        )

    def playlists(self, user_id: int) -> list[Playlist]:
        """The user's own playlists and everyone's public ones."""
        ids = [
            r[0]
            for r in self._conn().execute(
                "SELECT id FROM playlists WHERE user_id = ? OR public = 1 ORDER BY name, id",
                (user_id,),
            )
        ]
        return [p for p in map(self.get_playlist, ids) if p is not None]

    def update_playlist(
        self,
        playlist_id: int,
        *,
        name: str | None = None,
        comment: str | None = None,
        public: bool | None = None,
        tracks: Sequence[str] | None = None,
        add: Sequence[str] = (),
        remove_positions: Sequence[int] = (),
    ) -> Playlist:
        """Change fields; replace the entries (``tracks``) or remove positions, then add."""
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM playlists WHERE id = ?", (playlist_id,))
            if exists.fetchone() is None:
                raise StateError(f"no playlist {playlist_id}")
            for column, value in (("name", name), ("comment", comment), ("public", public)):
                if value is not None:
                    conn.execute(
                        f"UPDATE playlists SET {column} = ? WHERE id = ?",
                        (int(value) if isinstance(value, bool) else value, playlist_id),
                    )
            if tracks is None:
                current = [
                    r[0]
                    for r in conn.execute(
                        "SELECT track FROM playlist_entries WHERE playlist_id = ?"
                        " ORDER BY position",
                        (playlist_id,),
                    )
                ]
                drop = set(remove_positions)
                tracks = [t for i, t in enumerate(current) if i not in drop]
            _write_entries(conn, playlist_id, [*tracks, *add])
            conn.execute(
                "UPDATE playlists SET changed_at = ? WHERE id = ?", (now_iso(), playlist_id)
            )
        found = self.get_playlist(playlist_id)
        assert found is not None
        return found

    def delete_playlist(self, playlist_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM playlists WHERE id = ?", (playlist_id,))


def _write_entries(conn: sqlite3.Connection, playlist_id: int, tracks: Sequence[str]) -> None:
    conn.execute("DELETE FROM playlist_entries WHERE playlist_id = ?", (playlist_id,))
    conn.executemany(
        "INSERT INTO playlist_entries(playlist_id, position, track) VALUES(?, ?, ?)",
        [(playlist_id, i, t) for i, t in enumerate(tracks)],
    )


def _check_kind(kind: str) -> None:
    if kind not in STAR_KINDS:
        raise ValueError(f"star kind must be one of {STAR_KINDS}, not {kind!r}")


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StateError(f"a password needs at least {MIN_PASSWORD} characters")
